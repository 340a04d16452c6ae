// Every input the CNI plugin rejects (root only): the spec's error JSON with the documented code, exit 1, no
// stack trace, and BOTH namespaces (and the tap node) exactly as before, per the iproute2 oracle.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import t from 'tap';
import { rootOnly } from '../support/kernel';
import { addMacvtap, cni, CniCall, conf, ip, ipLink, linkOf, makeScene, noStack, stateEntries, world, writeAllocation } from './harness';

t.test('every validation error: its code, and nothing changed', { skip: rootOnly }, (t) => {
  const s = makeScene(t, { indexes: 4 });
  const [idx, idxClash, idxGone] = s.indexes;
  addMacvtap(s, 'mvtval', idx);
  addMacvtap(s, 'mvtclash', idxClash);
  // The pod already has an interface named net9, and a link holding ifindex idxClash.
  ip('-n', s.pod, 'link', 'add', 'net9', 'type', 'veth', 'peer', 'name', 'peer9');
  ip('-n', s.pod, 'link', 'add', 'holder', 'index', String(idxClash), 'type', 'veth', 'peer', 'name', 'holderpeer');
  // An allocation whose link and lower device are both gone.
  writeAllocation(s, { deviceID: 'goneMvp0', ifindex: idxGone, lowerDevice: 'nosuch0' });
  const lowerMac = linkOf(s.host, s.lower).address as string;
  const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'mvt-notns-')), 'file');
  fs.writeFileSync(file, '');
  t.teardown(() => fs.rmSync(path.dirname(file), { recursive: true, force: true }));

  const good = conf(s, { deviceID: 'mvtval' });
  const withConf = (extra: Record<string, unknown>): Record<string, unknown> => ({ ...good, ...extra });
  const cases: [string, number, CniCall][] = [
    // Environment: code 4 (3 for a namespace that does not exist).
    ['CNI_COMMAND unset', 4, { command: 'ADD', config: good, env: { CNI_COMMAND: undefined } }],
    ['CNI_COMMAND unknown', 4, { command: 'ATTACH', config: good }],
    ['CNI_CONTAINERID unset', 4, { command: 'ADD', config: good, env: { CNI_CONTAINERID: undefined } }],
    ['CNI_CONTAINERID starts with -', 4, { command: 'ADD', config: good, containerId: '-abc' }],
    ['CNI_CONTAINERID with /', 4, { command: 'ADD', config: good, containerId: 'a/b' }],
    ['CNI_CONTAINERID with space', 4, { command: 'ADD', config: good, containerId: 'a b' }],
    ['CNI_IFNAME unset', 4, { command: 'ADD', config: good, env: { CNI_IFNAME: undefined } }],
    ['CNI_IFNAME empty', 4, { command: 'ADD', config: good, ifname: '' }],
    ['CNI_IFNAME 16 bytes', 4, { command: 'ADD', config: good, ifname: 'abcdefghijklmnop' }],
    ['CNI_IFNAME .', 4, { command: 'ADD', config: good, ifname: '.' }],
    ['CNI_IFNAME ..', 4, { command: 'ADD', config: good, ifname: '..' }],
    ['CNI_IFNAME with /', 4, { command: 'ADD', config: good, ifname: 'a/b' }],
    ['CNI_IFNAME with :', 4, { command: 'ADD', config: good, ifname: 'a:b' }],
    ['CNI_IFNAME with space', 4, { command: 'ADD', config: good, ifname: 'a b' }],
    ['CNI_IFNAME with tab', 4, { command: 'ADD', config: good, ifname: 'a\tb' }],
    ['CNI_NETNS unset', 4, { command: 'ADD', config: good, netns: null }],
    ['CNI_NETNS missing', 3, { command: 'ADD', config: good, netns: '/var/run/netns/no-such-namespace' }],
    ['CNI_NETNS a regular file', 4, { command: 'ADD', config: good, netns: file }],
    ['CNI_NETNS a mount namespace', 4, { command: 'ADD', config: good, netns: '/proc/self/ns/mnt' }],
    ['CNI_NETNS a directory', 4, { command: 'ADD', config: good, netns: '/var/run' }],
    ['CNI_ARGS pair without =', 6, { command: 'ADD', config: good, args: 'IgnoreUnknown=true;oops' }],
    ['CNI_ARGS pair with two =', 6, { command: 'ADD', config: good, args: 'A=b=c;IgnoreUnknown=1' }],
    ['CNI_ARGS unknown key', 4, { command: 'ADD', config: good, args: 'K8S_POD_NAME=x;FOO=bar' }],
    ['CNI_ARGS IgnoreUnknown not a bool', 4, { command: 'ADD', config: good, args: 'IgnoreUnknown=maybe' }],
    ['CNI_ARGS MAC invalid', 4, { command: 'ADD', config: good, args: 'IgnoreUnknown=true;MAC=02:00:00:00:00' }],
    ['CNI_ARGS MAC multicast', 4, { command: 'ADD', config: good, args: 'IgnoreUnknown=true;MAC=01:00:5e:00:00:01' }],
    // Undecodable input: code 6.
    ['stdin empty', 6, { command: 'ADD', stdin: '' }],
    ['stdin not JSON', 6, { command: 'ADD', stdin: '{"cniVersion":' }],
    ['stdin a JSON array', 6, { command: 'ADD', stdin: '[]' }],
    ['stdin a JSON string', 6, { command: 'ADD', stdin: '"x"' }],
    ['cniVersion a number', 6, { command: 'ADD', config: withConf({ cniVersion: 1 }) }],
    // Configuration values: code 7.
    ['name missing', 7, { command: 'ADD', config: withConf({ name: undefined }) }],
    ['name empty', 7, { command: 'ADD', config: withConf({ name: '' }) }],
    ['type missing', 7, { command: 'ADD', config: withConf({ type: undefined }) }],
    ['deviceID missing', 7, { command: 'ADD', config: withConf({ deviceID: undefined }) }],
    ['deviceID empty', 7, { command: 'ADD', config: withConf({ deviceID: '' }) }],
    ['deviceID a number', 7, { command: 'ADD', config: withConf({ deviceID: 3 }) }],
    ['deviceID with a slash', 7, { command: 'ADD', config: withConf({ deviceID: 'dev/0' }) }],
    ['deviceID starting with a dot', 7, { command: 'ADD', config: withConf({ deviceID: '.hidden' }) }],
    ['deviceID of 91 characters', 7, { command: 'ADD', config: withConf({ deviceID: 'd'.repeat(91) }) }],
    ['runtimeConfig.deviceID a number', 7, { command: 'ADD', config: withConf({ runtimeConfig: { deviceID: 3 } }) }],
    ['runtimeConfig not an object', 7, { command: 'ADD', config: withConf({ runtimeConfig: 'x' }) }],
    ['args not an object', 7, { command: 'ADD', config: withConf({ args: [] }) }],
    ['args.cni not an object', 7, { command: 'ADD', config: withConf({ args: { cni: 5 } }) }],
    ['mac malformed', 7, { command: 'ADD', config: withConf({ mac: '02:00:00:00:00:0g' }) }],
    ['mac too short', 7, { command: 'ADD', config: withConf({ mac: '02:00:00:00:00' }) }],
    ['mac a number', 7, { command: 'ADD', config: withConf({ mac: 2 }) }],
    ['mac multicast', 7, { command: 'ADD', config: withConf({ mac: '03:00:00:00:00:01' }) }],
    ['mac broadcast', 7, { command: 'ADD', config: withConf({ mac: 'ff:ff:ff:ff:ff:ff' }) }],
    ['mac all zero', 7, { command: 'ADD', config: withConf({ mac: '00:00:00:00:00:00' }) }],
    ['mac of the lower device', 7, { command: 'ADD', config: withConf({ mac: lowerMac }) }],
    ['runtimeConfig.mac invalid', 7, { command: 'ADD', config: withConf({ runtimeConfig: { mac: 'nope' } }) }],
    ['args.cni.mac invalid', 7, { command: 'ADD', config: withConf({ args: { cni: { mac: 'nope' } } }) }],
    ['mtu a string', 7, { command: 'ADD', config: withConf({ mtu: '1500' }) }],
    ['mtu fractional', 7, { command: 'ADD', config: withConf({ mtu: 1400.5 }) }],
    ['mtu 67', 7, { command: 'ADD', config: withConf({ mtu: 67 }) }],
    ['mtu 0', 7, { command: 'ADD', config: withConf({ mtu: 0 }) }],
    ['mtu above the lower device', 7, { command: 'ADD', config: withConf({ mtu: 1501 }) }],
    ['mtu 65536', 7, { command: 'ADD', config: withConf({ mtu: 65536 }) }],
    ['promiscMode a string', 7, { command: 'ADD', config: withConf({ promiscMode: 'yes' }) }],
    ['owner negative', 7, { command: 'ADD', config: withConf({ owner: -1 }) }],
    ['owner a string', 7, { command: 'ADD', config: withConf({ owner: '107' }) }],
    ['owner fractional', 7, { command: 'ADD', config: withConf({ owner: 1.5 }) }],
    ['group negative', 7, { command: 'ADD', config: withConf({ group: -5 }) }],
    ['group too large', 7, { command: 'ADD', config: withConf({ group: 2 ** 32 }) }],
    ['logLevel (a host setting)', 7, { command: 'ADD', config: withConf({ logLevel: 'verbose' }) }],
    ['logFile (a host setting)', 7, { command: 'ADD', config: withConf({ logFile: 'x.log' }) }],
    ['stateDir (a host setting)', 7, { command: 'ADD', config: withConf({ stateDir: 'state' }) }],
    ['prevResult not an object', 7, { command: 'ADD', config: withConf({ prevResult: [] }) }],
    ['prevResult.interfaces not a list', 7, { command: 'ADD', config: withConf({ prevResult: { interfaces: {} } }) }],
    // What the kernel state says: plugin codes.
    ['deviceID unknown', 100, { command: 'ADD', config: withConf({ deviceID: 'nosuchMvp7' }) }],
    ['deviceID names a veth', 101, { command: 'ADD', config: withConf({ deviceID: s.lower }) }],
    ['CNI_IFNAME exists in the pod', 102, { command: 'ADD', config: good, ifname: 'net9' }],
    ['ifindex taken in the pod', 102, { command: 'ADD', config: withConf({ deviceID: 'mvtclash' }) }],
    ['lower device of the record missing', 103, { command: 'ADD', config: withConf({ deviceID: 'goneMvp0' }) }],
  ];
  const before = world(s, s.indexes);
  for (const [label, code, call] of cases) {
    const r = cni(s, call);
    t.equal(r.status, 1, `${label}: exit 1`);
    t.equal(r.json?.code, code, `${label}: code ${code} (${r.json?.msg})`);
    t.ok(typeof r.json?.msg === 'string' && r.json.msg.length > 0, `${label}: msg`);
    t.type(r.json?.details, 'string', `${label}: details`);
    t.equal(
      r.json?.cniVersion,
      typeof call.config === 'object' && call.config && typeof (call.config as { cniVersion?: unknown }).cniVersion === 'string'
        ? (call.config as { cniVersion: string }).cniVersion
        : '1.1.0',
      `${label}: cniVersion`,
    );
    t.ok(noStack(r), `${label}: no stack trace`);
    t.same(world(s, s.indexes), before, `${label}: both namespaces and tap nodes unchanged`);
  }
  t.ok(ipLink(s.pod, 'net9'), 'the clashing interface is still there');
  t.same(stateEntries(s, 'attachments'), [], 'no attachment recorded');
  t.same(stateEntries(s, 'locks'), [], 'no lock left');
  t.end();
});

t.test('CNI_ARGS as the kubelet and Multus send them are accepted; IgnoreUnknown=1 too', { skip: rootOnly }, (t) => {
  const s = makeScene(t, { indexes: 1 });
  addMacvtap(s, 'mvtargs', s.indexes[0]);
  const config = conf(s, { deviceID: 'mvtargs' });
  for (const args of [
    'IgnoreUnknown=1;K8S_POD_NAMESPACE=ns;K8S_POD_NAME=p;K8S_POD_INFRA_CONTAINER_ID=c0ffee01',
    'IgnoreUnknown=true;K8S_POD_NAMESPACE=ns;K8S_POD_NAME=p;K8S_POD_INFRA_CONTAINER_ID=c0ffee01;K8S_POD_UID=u;SOMETHING=else',
    'K8S_POD_NAMESPACE=ns;K8S_POD_NAME=p',
    '',
  ]) {
    const r = cni(s, { command: 'ADD', config, args });
    t.equal(r.status, 0, `ADD with CNI_ARGS ${JSON.stringify(args)} (${r.stdout})`);
    t.equal(cni(s, { command: 'DEL', config, args }).status, 0, 'DEL');
  }
  t.end();
});
