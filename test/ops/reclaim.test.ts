/**
 * Reclamation (root only): the real daemon, the kubelet stand-in with its device-manager checkpoint, and the
 * pod-resources stand-in serving the same assignments over a real unix socket. iproute2 is the oracle for the
 * links, the state directory for the records.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import t from 'tap';
import { hostLinkName } from '../../lib/naming';
import { type AllocationStore, NodeState } from '../../lib/state';
import { Logger } from '../../lib/util/log';
import { KubeletCheckpoint } from '../support/checkpoint';
import { ip, ipLink, makeNetns, rootOnly } from '../support/kernel';
import { PodResourcesStandIn } from '../support/podresources';
import { conf, RES, startWithEndpoint, type OpsStarted } from './helpers';

type T = Parameters<typeof startWithEndpoint>[0];

interface Setup extends OpsStarted {
  checkpoint: KubeletCheckpoint;
  podResources: PodResourcesStandIn | undefined;
  store: AllocationStore;
}

/** The daemon with reclamation on; `podResources: false` serves no pod-resources API. */
async function setup(t: T, opts: { args: string[]; podResources?: boolean }): Promise<Setup> {
  const s = await startWithEndpoint(t, { env: conf(), extraArgs: opts.args });
  const checkpoint = new KubeletCheckpoint(s.pluginDir);
  s.kubelet.checkpoint = checkpoint;
  let podResources: PodResourcesStandIn | undefined;
  if (opts.podResources !== false) {
    podResources = await PodResourcesStandIn.start(path.dirname(s.pluginDir), checkpoint);
    const pr = podResources;
    t.teardown(() => pr.stop());
  }
  await s.kubelet.waitForDevices(RES, (l) => l.length === 4, 60000);
  const state = NodeState.open(s.stateDir, { log: new Logger({ level: 'warn' }) });
  t.teardown(() => state.close());
  return { ...s, checkpoint, podResources, store: state.allocations };
}

/** The host link and its ifindex of a device, per iproute2 in the daemon's namespace. */
function hostLink(ns: string, id: string): { name: string; ifindex: number | undefined } {
  const name = hostLinkName(id);
  return { name, ifindex: ipLink(ns, name)?.ifindex };
}

t.test('an abandoned device is reclaimed after the grace period; held devices and pod links are not', { skip: rootOnly }, async (t) => {
  const s = await setup(t, { args: ['--reclaim', 'on', '--reclaim-grace', '2', '--reclaim-interval', '1'] });
  await s.kubelet.allocate(RES, [['dataplaneMvp0']], { podUID: 'pod-a' });
  await s.kubelet.allocate(RES, [['dataplaneMvp1']], { podUID: 'pod-b' });
  await s.kubelet.allocate(RES, [['dataplaneMvp3']], { podUID: 'pod-d' });
  const held = hostLink(s.ns, 'dataplaneMvp0');
  const abandoned = hostLink(s.ns, 'dataplaneMvp1');
  t.ok(abandoned.ifindex, 'the abandoned device has its host link');
  t.ok(fs.existsSync(`/dev/tap${abandoned.ifindex}`), 'and its tap node');
  // pod-d's CNI moved its link into the pod; then the kubelet forgets both pods.
  const podNs = makeNetns(t);
  const moved = hostLink(s.ns, 'dataplaneMvp3');
  ip('-n', s.ns, 'link', 'set', moved.name, 'netns', podNs);
  s.checkpoint.removePod('pod-b');
  s.checkpoint.removePod('pod-d');
  s.checkpoint.write();

  const line = await s.daemon.waitForLog((l) => l.msg === 'reclaimed device' && l.device === 'dataplaneMvp1', 20000);
  t.equal(line.level, 'info');
  t.equal(line.link, abandoned.name, 'the log names the link');
  t.equal(line.resource, RES, 'the resource');
  t.ok(typeof line.ageSeconds === 'number' && line.ageSeconds >= 2, `its age (${String(line.ageSeconds)} s) is past the grace period`);
  t.match(line.why, /no pod holds it \(per the kubelet's pod-resources API\)/, 'and why');
  t.equal(ipLink(s.ns, abandoned.name), undefined, 'its host link is gone (iproute2)');
  t.notOk(s.store.read('dataplaneMvp1'), 'its record is removed');
  t.notOk(fs.existsSync(`/dev/tap${abandoned.ifindex}`), 'its tap node is removed');

  await s.daemon.waitForLog((l) => l.msg === 'reclaimed device' && l.device === 'dataplaneMvp3', 20000);
  t.ok(ipLink(podNs, 'dataplaneMvp3') ?? ipLink(podNs, moved.name), "the link in the pod's namespace is untouched");
  t.notOk(s.store.read('dataplaneMvp3'), 'the record of the device no pod holds is removed');

  t.equal(ipLink(s.ns, held.name)?.ifindex, held.ifindex, 'the held device keeps its link');
  t.ok(s.store.read('dataplaneMvp0'), 'and its record');
  t.ok((s.podResources?.calls ?? 0) >= 1, 'the pod-resources API was asked');
  const m = await s.scrape();
  t.equal(m.get(`macvtap_reclaimed_devices_total{resource="${RES}",reason="unassigned",mode="delete"}`), 2, 'two reclamations counted');
  t.ok((m.get('macvtap_reclaim_runs_total{source="pod-resources"}') ?? 0) >= 1, 'passes counted by source');
  t.equal(m.get(`macvtap_resource_allocated{resource="${RES}"}`), 1, 'one device still allocated');
});

t.test('a device whose pod is still starting (inside the grace period) is kept', { skip: rootOnly }, async (t) => {
  const s = await setup(t, { args: ['--reclaim', 'on', '--reclaim-grace', '300', '--reclaim-interval', '1'] });
  // Allocate answered; the kubelet has not recorded the pod's devices yet.
  await s.kubelet.allocate(RES, [['dataplaneMvp2']]);
  const link = hostLink(s.ns, 'dataplaneMvp2');
  const calls = s.podResources?.calls ?? 0;
  await s.daemon.waitForLog(
    (l) => l.msg === 'unassigned device within the grace period; keeping it' && l.device === 'dataplaneMvp2',
    20000,
  );
  while ((s.podResources?.calls ?? 0) < calls + 2) await new Promise((r) => setTimeout(r, 100));
  t.equal(ipLink(s.ns, link.name)?.ifindex, link.ifindex, 'the link stays');
  t.ok(s.store.read('dataplaneMvp2'), 'the record stays');
  t.notOk(
    s.daemon.logs.some((l) => l.msg === 'reclaimed device'),
    'nothing reclaimed',
  );
});

t.test('pod-resources and checkpoint unavailable: nothing reclaimed, a warning says why', { skip: rootOnly }, async (t) => {
  const s = await setup(t, { podResources: false, args: ['--reclaim', 'on', '--reclaim-grace', '1', '--reclaim-interval', '1'] });
  s.kubelet.checkpoint = undefined;
  await s.kubelet.allocate(RES, [['dataplaneMvp1']]);
  const link = hostLink(s.ns, 'dataplaneMvp1');
  await new Promise((r) => setTimeout(r, 1500));
  const warn = await s.daemon.waitForLog(
    (l) => l.msg === 'cannot tell which devices pods hold; reclaiming nothing' && Date.parse(String(l.time)) > Date.now() - 1200,
    20000,
  );
  t.equal(warn.level, 'warn');
  t.match(
    warn.podResources,
    /^no pod-resources socket at .*pod-resources\/kubelet\.sock \(ENOENT\)$/,
    'why the pod-resources API cannot be used',
  );
  t.match(warn.checkpoint, /kubelet checkpoint .*kubelet_internal_checkpoint does not exist/, 'why the checkpoint cannot be used');
  t.equal(ipLink(s.ns, link.name)?.ifindex, link.ifindex, 'the link stays');
  t.ok(s.store.read('dataplaneMvp1'), 'the record stays');
  t.equal(
    (await s.scrape()).get(`macvtap_reclaimed_devices_total{resource="${RES}",reason="unassigned",mode="delete"}`),
    undefined,
    'nothing counted',
  );
});

t.test('pod-resources down: the checkpoint is the fallback', { skip: rootOnly }, async (t) => {
  const s = await setup(t, { podResources: false, args: ['--reclaim', 'on', '--reclaim-grace', '1', '--reclaim-interval', '1'] });
  await s.kubelet.allocate(RES, [['dataplaneMvp0']], { podUID: 'pod-a' });
  await s.kubelet.allocate(RES, [['dataplaneMvp1']], { podUID: 'pod-b' });
  s.checkpoint.removePod('pod-b');
  s.checkpoint.write();
  const held = hostLink(s.ns, 'dataplaneMvp0');
  const line = await s.daemon.waitForLog((l) => l.msg === 'reclaimed device' && l.device === 'dataplaneMvp1', 20000);
  t.match(line.why, /per the kubelet's device-manager checkpoint/, 'the log says the checkpoint decided');
  t.ok(
    s.daemon.logs.some((l) => l.msg === 'pod-resources API unavailable; using the kubelet checkpoint' && l.level === 'warn'),
    'a warning says why',
  );
  t.equal(ipLink(s.ns, held.name)?.ifindex, held.ifindex, 'the held device keeps its link');
});

t.test('malformed pod-resources answers and a corrupt checkpoint reclaim nothing', { skip: rootOnly }, async (t) => {
  const s = await setup(t, { args: ['--reclaim', 'on', '--reclaim-grace', '1', '--reclaim-interval', '1'] });
  s.kubelet.checkpoint = undefined;
  const pr = s.podResources as PodResourcesStandIn;
  await s.kubelet.allocate(RES, [['dataplaneMvp1']]);
  const link = hostLink(s.ns, 'dataplaneMvp1');
  // Let the device age past the grace period while every answer is bad.
  const answers: [string, PodResourcesStandIn['behaviour'], RegExp][] = [
    ['undecodable bytes', 'garbage', /cannot be decoded/],
    ['a pod without a name', { podResources: [{ name: '', namespace: 'default', containers: [] }] }, /pod_resources\[0\]\.name is empty/],
    [
      'an empty device ID',
      { podResources: [{ name: 'p', namespace: 'n', containers: [{ name: 'c', devices: [{ resourceName: RES, deviceIds: [''] }] }] }] },
      /device_ids holds an empty/,
    ],
  ];
  for (const [what, behaviour, expect] of answers) {
    pr.behaviour = behaviour;
    const since = Date.now();
    const line = await s.daemon.waitForLog(
      (l) =>
        l.msg === 'the pod-resources answer is malformed; reclaiming nothing' &&
        Date.parse(String(l.time)) >= since &&
        expect.test(String(l.err)),
      20000,
    );
    t.equal(line.level, 'error', `${what}: logged as an error`);
  }
  // pod-resources failing (not malformed) with a corrupt checkpoint behind it.
  pr.behaviour = { error: grpc.status.UNAVAILABLE, details: 'kubelet restarting' };
  fs.writeFileSync(path.join(s.pluginDir, 'kubelet_internal_checkpoint'), '{"Data": {"PodDeviceEntries": 7}, "Checksum": 1}', {
    mode: 0o600,
  });
  const since = Date.now();
  const corrupt = await s.daemon.waitForLog(
    (l) => l.msg === 'cannot tell which devices pods hold; reclaiming nothing' && Date.parse(String(l.time)) >= since,
    20000,
  );
  t.equal(corrupt.level, 'error', 'a corrupt checkpoint is an error');
  t.match(corrupt.podResources, /UNAVAILABLE: kubelet restarting/);
  t.match(corrupt.checkpoint, /corrupt: Data\.PodDeviceEntries is number 7, not a list/);
  t.equal(ipLink(s.ns, link.name)?.ifindex, link.ifindex, 'the link stays through all of it');
  t.ok(s.store.read('dataplaneMvp1'), 'and the record');
  t.notOk(
    s.daemon.logs.some((l) => l.msg === 'reclaimed device'),
    'nothing reclaimed',
  );
});

t.test('dry run: logged and counted, nothing removed', { skip: rootOnly }, async (t) => {
  const s = await setup(t, { args: ['--reclaim', 'dry-run', '--reclaim-grace', '1', '--reclaim-interval', '1'] });
  await s.kubelet.allocate(RES, [['dataplaneMvp1']]);
  const link = hostLink(s.ns, 'dataplaneMvp1');
  const line = await s.daemon.waitForLog((l) => l.msg === 'would reclaim device (dry run)' && l.device === 'dataplaneMvp1', 20000);
  t.equal(line.link, link.name);
  t.equal(ipLink(s.ns, link.name)?.ifindex, link.ifindex, 'the link stays');
  t.ok(s.store.read('dataplaneMvp1'), 'the record stays');
  const m = await s.scrape();
  t.ok((m.get(`macvtap_reclaimed_devices_total{resource="${RES}",reason="unassigned",mode="dry-run"}`) ?? 0) >= 1, 'counted as dry-run');
});

t.test('a device whose lock is held (a CNI verb at work) waits; it is reclaimed once the lock is free', { skip: rootOnly }, async (t) => {
  const s = await setup(t, { args: ['--reclaim', 'on', '--reclaim-grace', '1', '--reclaim-interval', '1'] });
  await s.kubelet.allocate(RES, [['dataplaneMvp2']], { podUID: 'pod-c' });
  s.checkpoint.removePod('pod-c');
  s.checkpoint.write();
  const link = hostLink(s.ns, 'dataplaneMvp2');
  const state = NodeState.open(s.stateDir, { log: new Logger({ level: 'error' }) });
  t.teardown(() => state.close());
  const lock = state.tryLock('dataplaneMvp2', { program: 'test', verb: 'ADD' });
  if (!lock) throw new Error('the test could not take the lock');
  await s.daemon.waitForLog((l) => l.msg === 'device is locked by another operation; next pass' && l.device === 'dataplaneMvp2', 20000);
  t.equal(ipLink(s.ns, link.name)?.ifindex, link.ifindex, 'the link stays while the lock is held');
  t.ok(s.store.read('dataplaneMvp2'), 'and the record');
  lock.release();
  await s.daemon.waitForLog((l) => l.msg === 'reclaimed device' && l.device === 'dataplaneMvp2', 20000);
  t.equal(ipLink(s.ns, link.name), undefined, 'reclaimed after the release');
});
