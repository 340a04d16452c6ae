/**
 * The real daemon process, in a namespace that plays the node, driven over its real sockets by the kubelet
 * stand-in. iproute2 and sysfs are the oracles for what Allocate made.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import t from 'tap';
import { hostLinkName } from '../../lib/naming';
import { NodeState } from '../../lib/state';
import { Logger } from '../../lib/util/log';
import { claimIfindexes, ip, ipLink, ipLinkNames, makeLowerNetns, makeNetns, rootOnly, sysfsTapDev } from '../support/kernel';
import { PREFIX, requireLink, startDaemon } from './helpers';

const RES = `${PREFIX}/dataplane`;
const conf = (extra: object = {}): string => JSON.stringify([{ name: 'dataplane', lowerDevice: 'lower0', capacity: 4, ...extra }]);
const rangeOf = (idx: number[]): string => `${idx[0]}-${idx[idx.length - 1]}`;

/** major:minor of a device node per coreutils stat (decimal), independent of the library. */
function nodeDev(file: string): string | undefined {
  try {
    return execFileSync('stat', ['-c', '%F %Hr:%Lr', file], { encoding: 'utf8' })
      .trim()
      .replace(/^character special file /, '');
  } catch {
    return undefined;
  }
}

function macvtapNames(ns: string): string[] {
  return ipLinkNames(ns).filter((n) => n.startsWith('mvt'));
}

t.test('registers, serves the device list and answers the kubelet', { skip: rootOnly }, async (t) => {
  const { ns } = makeLowerNetns(t);
  const { daemon, kubelet, pluginDir } = await startDaemon(t, { ns, env: conf() });
  const reg = await kubelet.waitForRegistration(RES);
  t.equal(reg.version, 'v1beta1');
  t.equal(reg.endpoint, 'macvtap.network.kubevirt.io_dataplane', 'endpoint is the socket file name, as kubevirt names it');
  t.equal(reg.resourceName, RES);
  t.same(reg.options, { preStartRequired: false, getPreferredAllocationAvailable: false }, 'options are sent');
  t.ok(fs.lstatSync(path.join(pluginDir, reg.endpoint)).isSocket(), 'the socket exists where the endpoint says');
  t.ok(
    fs.readdirSync(pluginDir).some((f) => f.startsWith('macvtap.network.kubevirt.io')),
    'kubevirt DaemonSet probe (ls dir/macvtap.network.kubevirt.io*) matches',
  );

  const devices = await kubelet.waitForDevices(RES, (l) => l.length === 4);
  t.same(
    devices,
    ['dataplaneMvp0', 'dataplaneMvp1', 'dataplaneMvp2', 'dataplaneMvp3'].map((ID) => ({ ID, health: 'Healthy' })),
  );

  t.same(await kubelet.getDevicePluginOptions(RES), { preStartRequired: false, getPreferredAllocationAvailable: false });
  t.same(await kubelet.preStartContainer(RES, ['dataplaneMvp0']), {}, 'PreStartContainer answers an empty response');
  const pref = await kubelet.getPreferredAllocation(RES, [
    { availableDeviceIDs: ['dataplaneMvp3', 'dataplaneMvp2', 'dataplaneMvp1'], mustIncludeDeviceIDs: ['dataplaneMvp3'], allocationSize: 2 },
  ]);
  t.same(pref.containerResponses, [{ deviceIDs: ['dataplaneMvp3', 'dataplaneMvp1'] }], 'must-include first, then the lowest-numbered');

  t.same(daemon.garbage, [], 'stdout holds only JSON lines');
  t.ok(daemon.logs.every((l) => typeof l.level === 'string' && typeof l.msg === 'string' && typeof l.time === 'string'));
  t.ok(
    daemon.logs.some((l) => l.resource === RES && l.msg === 'registered with the kubelet'),
    'resource logs carry the resource',
  );
});

t.test('Allocate makes a macvtap per device on the lower device, its tap node and a record', { skip: rootOnly }, async (t) => {
  const { ns } = makeLowerNetns(t);
  ip('-n', ns, 'link', 'set', 'lower0', 'txqueuelen', '777');
  const idx = claimIfindexes(t, 16);
  const { kubelet, stateDir } = await startDaemon(t, { ns, env: conf({ mode: 'vepa' }), args: ['--ifindex-range', rangeOf(idx)] });
  await kubelet.waitForDevices(RES, (l) => l.length === 4);

  const response = await kubelet.allocate(RES, [['dataplaneMvp0', 'dataplaneMvp2'], ['dataplaneMvp1']]);
  t.equal(response.containerResponses.length, 2, 'one response per container');
  t.same(
    response.containerResponses.map((c) => c.devices.length),
    [2, 1],
  );
  const state = NodeState.open(stateDir, { log: new Logger({ level: 'warn' }) });
  t.teardown(() => state.close());
  const store = state.allocations;
  const ids = [['dataplaneMvp0', 'dataplaneMvp2'], ['dataplaneMvp1']];
  for (const [c, container] of response.containerResponses.entries()) {
    for (const [i, spec] of container.devices.entries()) {
      const id = ids[c][i];
      const name = hostLinkName(id);
      const link = requireLink(ns, name);
      t.equal(link.linkinfo?.info_kind, 'macvtap', `${id}: ${name} is a macvtap`);
      t.equal(link.linkinfo?.info_data?.mode, 'vepa', 'mode of the resource');
      t.ok(link.flags.includes('UP'), 'up, as kubevirt leaves it');
      t.equal(link.link, 'lower0', 'on the lower device');
      t.equal(link.txqlen, 777, "the lower device's txqueuelen");
      t.ok(idx.includes(link.ifindex), 'ifindex from --ifindex-range');
      t.same(spec, { containerPath: `/dev/tap${link.ifindex}`, hostPath: `/dev/tap${link.ifindex}`, permissions: 'rw' });
      t.equal(nodeDev(spec.hostPath), sysfsTapDev(ns, name, link.ifindex), 'the node is exactly this macvtap');
      const rec = store.read(id);
      t.match(rec, {
        version: 1,
        deviceID: id,
        resource: RES,
        linkName: name,
        lowerDevice: 'lower0',
        mode: 'vepa',
        ifindex: link.ifindex,
        txqueuelen: 777,
      });
    }
  }
  t.equal(macvtapNames(ns).length, 3, 'nothing else was made');
});

t.test('a stale link of the same name is replaced; a foreign /dev/tapN node is replaced', { skip: rootOnly }, async (t) => {
  const { ns } = makeLowerNetns(t);
  const idx = claimIfindexes(t, 16);
  const name = hostLinkName('dataplaneMvp3');
  ip('-n', ns, 'link', 'add', 'link', 'lower0', 'name', name, 'index', String(idx[15]), 'type', 'macvtap', 'mode', 'private');
  // A link retired by an earlier run that crashed before deleting it.
  ip('-n', ns, 'link', 'add', 'link', 'lower0', 'name', `mvr${idx[14]}`, 'index', String(idx[14]), 'type', 'macvtap');
  // Only idx[0] is allowed, and its node name holds another device (1:3 is /dev/null's).
  const node = `/dev/tap${idx[0]}`;
  execFileSync('mknod', [node, 'c', '1', '3']);
  const { kubelet } = await startDaemon(t, { ns, env: conf(), args: ['--ifindex-range', `${idx[0]}-${idx[0]}`] });
  await kubelet.waitForDevices(RES, (l) => l.length === 4);
  const res = await kubelet.allocate(RES, [['dataplaneMvp3']]);
  const link = requireLink(ns, name);
  t.equal(link.ifindex, idx[0], 'recreated (the stale one had another ifindex)');
  t.equal(link.linkinfo?.info_data?.mode, 'bridge', "with the resource's mode");
  t.equal(res.containerResponses[0].devices[0].hostPath, node);
  t.equal(nodeDev(node), sysfsTapDev(ns, name, idx[0]), 'the foreign node now points at our macvtap');
  // The stale link was retired (renamed mvr<ifindex>) and is deleted in the background, as is the old one.
  const deadline = Date.now() + 3000;
  while (ipLinkNames(ns).some((n) => n.startsWith('mvr')) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  t.same(
    ipLinkNames(ns).filter((n) => n.startsWith('mv')),
    [name],
    'retired links are deleted',
  );
});

t.test('a failed Allocate leaves nothing behind and says what failed', { skip: rootOnly }, async (t) => {
  const { ns } = makeLowerNetns(t);
  const idx = claimIfindexes(t, 16);
  const { kubelet, stateDir } = await startDaemon(t, { ns, env: conf(), args: ['--ifindex-range', `${idx[0]}-${idx[1]}`] });
  await kubelet.waitForDevices(RES, (l) => l.length === 4);
  const state = NodeState.open(stateDir, { log: new Logger({ level: 'warn' }) });
  t.teardown(() => state.close());
  const store = state.allocations;
  const before = ipLinkNames(ns);

  await t.rejects(kubelet.allocate(RES, [['dataplaneMvp0', 'dataplaneMvp1'], ['dataplaneMvp2']]), {
    code: 13,
    details: /dataplaneMvp2: create macvtap \(mode bridge\) on lower0 as mvt[0-9a-f]{12}: no free ifindex left in --ifindex-range/,
  });
  t.same(ipLinkNames(ns), before, 'the two links made before the failure are gone');
  t.same(store.list(), [], 'no records');
  t.notOk(fs.existsSync(`/dev/tap${idx[0]}`) || fs.existsSync(`/dev/tap${idx[1]}`), 'no tap nodes');

  // A link of the name of the second device that is not a macvtap: refused, and left alone.
  const blocker = hostLinkName('dataplaneMvp1');
  ip('-n', ns, 'link', 'add', blocker, 'type', 'veth', 'peer', 'name', 'blockpeer');
  const withBlocker = ipLinkNames(ns);
  await t.rejects(kubelet.allocate(RES, [['dataplaneMvp0', 'dataplaneMvp1']]), {
    code: 13,
    details: new RegExp(
      `dataplaneMvp1: remove stale link ${blocker}: link ${blocker} exists and is not a macvtap \\(kind veth\\); refusing to delete it`,
    ),
  });
  t.same(ipLinkNames(ns), withBlocker, 'first link rolled back, the veth untouched');
  t.same(store.list(), []);

  await t.rejects(kubelet.allocate(RES, [['dataplaneMvp9']]), {
    code: 3,
    details: /unknown device ID "dataplaneMvp9" for macvtap.network.kubevirt.io\/dataplane/,
  });
  await t.rejects(kubelet.allocate(RES, [['dataplaneMvp0'], ['dataplaneMvp0']]), { code: 3, details: /requested twice/ });
  t.same(ipLinkNames(ns), withBlocker, 'bad requests change nothing');
});

t.test('health follows the lower device: down, up, removed, back', { skip: rootOnly }, async (t) => {
  const { ns } = makeLowerNetns(t);
  const idx = claimIfindexes(t, 16);
  const { kubelet } = await startDaemon(t, { ns, env: conf({ capacity: 2 }), args: ['--ifindex-range', rangeOf(idx)] });
  const all = (h: string) => (l: { health: string }[]) => l.length === 2 && l.every((d) => d.health === h);
  await kubelet.waitForDevices(RES, all('Healthy'));

  ip('-n', ns, 'link', 'set', 'lower0', 'down');
  await kubelet.waitForDevices(RES, all('Unhealthy'), 2000);
  t.pass('down: Unhealthy');
  ip('-n', ns, 'link', 'set', 'lower0', 'up');
  await kubelet.waitForDevices(RES, all('Healthy'), 2000);
  t.pass('up: Healthy');

  ip('-n', ns, 'link', 'del', 'lower0');
  await kubelet.waitForDevices(RES, all('Unhealthy'), 2000);
  t.pass('removed: Unhealthy (the devices stay listed)');
  await t.rejects(kubelet.allocate(RES, [['dataplaneMvp0']]), {
    code: 9,
    details: /lower device lower0 of macvtap.network.kubevirt.io\/dataplane does not exist/,
  });
  t.same(macvtapNames(ns), [], 'nothing made without a lower device');

  ip('-n', ns, 'link', 'add', 'lower0', 'type', 'veth', 'peer', 'name', 'peer0');
  ip('-n', ns, 'link', 'set', 'lower0', 'up');
  await kubelet.waitForDevices(RES, all('Healthy'), 2000);
  t.pass('back: Healthy');
  const res = await kubelet.allocate(RES, [['dataplaneMvp1']]);
  t.equal(ipLink(ns, hostLinkName('dataplaneMvp1'))?.link, 'lower0', 'Allocate works on the new lower device');
  t.equal(res.containerResponses[0].devices.length, 1);

  // Renaming the lower device away and back is a removal and a return.
  ip('-n', ns, 'link', 'set', 'lower0', 'down');
  ip('-n', ns, 'link', 'set', 'lower0', 'name', 'other0');
  ip('-n', ns, 'link', 'set', 'other0', 'up');
  await kubelet.waitForDevices(RES, all('Unhealthy'), 2000);
  ip('-n', ns, 'link', 'set', 'other0', 'down');
  ip('-n', ns, 'link', 'set', 'other0', 'name', 'lower0');
  ip('-n', ns, 'link', 'set', 'lower0', 'up');
  await kubelet.waitForDevices(RES, all('Healthy'), 2000);
  t.pass('rename away and back');
});

for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  t.test(`${signal}: empty device list, sockets removed, exit 0`, { skip: rootOnly }, async (t) => {
    const { ns } = makeLowerNetns(t);
    const env = JSON.stringify([
      { name: 'dataplane', lowerDevice: 'lower0', capacity: 2 },
      { name: 'second', lowerDevice: 'peer0', capacity: 1 },
    ]);
    const { daemon, kubelet, pluginDir } = await startDaemon(t, { ns, env });
    await kubelet.waitForDevices(RES, (l) => l.length === 2);
    await kubelet.waitForDevices(`${PREFIX}/second`, (l) => l.length === 1);
    daemon.child.kill(signal);
    const exit = await daemon.exited;
    t.same(exit, { code: 0, signal: null }, 'exit 0');
    t.same(kubelet.devices(RES), [], 'the kubelet was told there are no devices');
    t.same(kubelet.devices(`${PREFIX}/second`), []);
    await kubelet.waitForStreamEnd(RES, 2000);
    t.ok(kubelet.streamEnded(`${PREFIX}/second`), 'streams ended');
    t.same(fs.readdirSync(pluginDir), ['kubelet.sock'], "our sockets are gone, the kubelet's is not");
    t.equal(daemon.stderr, '', 'nothing on stderr');
  });
}

t.test('Allocate, then the CNI executable consumes the device ID as Multus would', { skip: rootOnly }, async (t) => {
  const cni = path.resolve(__dirname, '../../dist/bin/macvtap.js');
  if (!fs.existsSync(cni)) throw new Error(`${cni} is not built: run npm run build first`);
  const { ns } = makeLowerNetns(t);
  const pod = makeNetns(t, 'mvtpod');
  const idx = claimIfindexes(t, 16);
  const { kubelet, stateDir } = await startDaemon(t, { ns, env: conf(), args: ['--ifindex-range', rangeOf(idx)] });
  await kubelet.waitForDevices(RES, (l) => l.length === 4);
  const res = await kubelet.allocate(RES, [['dataplaneMvp2']]);
  const tap = res.containerResponses[0].devices[0].hostPath;
  const ifindex = Number(tap.replace('/dev/tap', ''));

  const run = (command: string): { status: number | null; stdout: string; stderr: string } => {
    const r = spawnSync('ip', ['netns', 'exec', ns, process.execPath, cni], {
      input: JSON.stringify({ cniVersion: '1.0.0', name: 'dataplane', type: 'macvtap', deviceID: 'dataplaneMvp2' }),
      env: {
        PATH: process.env.PATH,
        CNI_COMMAND: command,
        CNI_CONTAINERID: 'c0ffee00dp',
        CNI_NETNS: `/var/run/netns/${pod}`,
        CNI_IFNAME: 'net1',
        CNI_PATH: '/opt/cni/bin',
        MACVTAP_CNI_STATE_DIR: stateDir,
        CNI_ARGS: 'IgnoreUnknown=true;K8S_POD_NAMESPACE=default;K8S_POD_NAME=vm;MAC=02:00:00:00:42:01',
      },
      encoding: 'utf8',
    });
    return { status: r.status, stdout: r.stdout, stderr: r.stderr };
  };
  const add = run('ADD');
  t.equal(add.status, 0, `ADD succeeds: ${add.stdout} ${add.stderr}`);
  const podLink = ipLink(pod, 'net1');
  t.equal(podLink?.ifindex, ifindex, 'the pod got the allocated macvtap (same ifindex)');
  t.equal(podLink?.linkinfo?.info_kind, 'macvtap');
  t.equal(podLink?.address, '02:00:00:00:42:01');
  t.equal(nodeDev(tap), sysfsTapDev(pod, 'net1', ifindex), 'the DeviceSpec path is still exactly that macvtap');
  const del = run('DEL');
  t.equal(del.status, 0, `DEL succeeds: ${del.stdout} ${del.stderr}`);
});
