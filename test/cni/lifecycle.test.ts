// DEL idempotency, CHECK drift, GC and STATUS of the CNI plugin (root only), against the real kernel.
import * as fs from 'node:fs';
import * as path from 'node:path';
import t from 'tap';
import { makeNetns, removeNetns, rootOnly } from '../support/kernel';
import { addMacvtap, attachmentFile, cni, conf, ip, ipLink, makeScene, noStack, stateEntries, world, writeAllocation } from './harness';

t.test('DEL is idempotent: twice, without CNI_NETNS, with the namespace gone', { skip: rootOnly }, (t) => {
  const s = makeScene(t, { indexes: 2 });
  const [idx, idx2] = s.indexes;
  addMacvtap(s, 'mvtdel', idx);
  const config = conf(s, { deviceID: 'mvtdel', mac: '02:00:00:00:02:01', mtu: 1300 });
  const pristine = world(s, [idx]);

  t.equal(cni(s, { command: 'ADD', config }).status, 0, 'ADD');
  let r = cni(s, { command: 'DEL', config });
  t.equal(r.status, 0, 'first DEL');
  t.same(world(s, [idx]), pristine, 'first DEL: host link back with its settings, pod empty, tap node as before');
  r = cni(s, { command: 'DEL', config });
  t.equal(r.status, 0, 'second DEL succeeds');
  t.equal(r.stdout, '', 'and prints nothing');
  t.same(world(s, [idx]), pristine, 'second DEL changed nothing');

  // Without CNI_NETNS: the attachment record knows the namespace, so the link still comes back.
  t.equal(cni(s, { command: 'ADD', config }).status, 0, 'ADD again');
  r = cni(s, { command: 'DEL', config, netns: null });
  t.equal(r.status, 0, 'DEL without CNI_NETNS');
  t.same(world(s, [idx]), pristine, 'DEL without CNI_NETNS returned the link');
  t.equal(cni(s, { command: 'DEL', config, netns: null }).status, 0, 'and again, with nothing recorded');
  // Nor a deviceID: nothing recorded, nothing to do.
  const noDevice = conf(s);
  t.equal(cni(s, { command: 'DEL', config: noDevice, netns: null }).status, 0, 'DEL without deviceID nor CNI_NETNS');

  // The namespace is gone (the kernel destroyed the macvtap with it).
  const pod2 = makeNetns(t, 'mvcp');
  const netns2 = `/var/run/netns/${pod2}`;
  addMacvtap(s, 'mvtdel2', idx2);
  const config2 = conf(s, { deviceID: 'mvtdel2' });
  t.equal(cni(s, { command: 'ADD', config: config2, netns: netns2, containerId: 'gone01' }).status, 0, 'ADD into a second pod');
  removeNetns(pod2);
  t.notOk(ipLink(s.host, 'mvtdel2'), 'the macvtap died with its namespace');
  r = cni(s, { command: 'DEL', config: config2, netns: netns2, containerId: 'gone01' });
  t.equal(r.status, 0, 'DEL with the namespace gone succeeds');
  t.notOk(fs.existsSync(attachmentFile(s, 'mvtdel2', 'gone01')), 'and drops the attachment record');
  t.equal(cni(s, { command: 'DEL', config: config2, netns: netns2, containerId: 'gone01' }).status, 0, 'and again');

  // Lenient DEL: values that made ADD fail do not block the cleanup.
  r = cni(s, { command: 'DEL', config: { ...config, mac: 'bogus', mtu: 'x', owner: -1 }, args: 'UNKNOWN=1;junk' });
  t.equal(r.status, 0, 'DEL with invalid mac/mtu/owner/CNI_ARGS still succeeds');
  t.ok(noStack(r));
  t.end();
});

t.test('a late DEL of an old sandbox leaves the device of the new one alone', { skip: rootOnly }, (t) => {
  const s = makeScene(t, { indexes: 1 });
  addMacvtap(s, 'mvtlate', s.indexes[0]);
  const config = conf(s, { deviceID: 'mvtlate' });
  t.equal(cni(s, { command: 'ADD', config, containerId: 'old01' }).status, 0);
  t.equal(cni(s, { command: 'DEL', config, containerId: 'old01' }).status, 0);
  const pod2 = makeNetns(t, 'mvcp');
  t.equal(cni(s, { command: 'ADD', config, containerId: 'new01', netns: `/var/run/netns/${pod2}` }).status, 0, 'new sandbox');
  const held = world(s, s.indexes);
  const heldPod2 = ip('-n', pod2, '-j', '-d', 'link', 'show');
  t.equal(cni(s, { command: 'DEL', config, containerId: 'old01' }).status, 0, 'late DEL of the old sandbox');
  t.equal(cni(s, { command: 'DEL', config, containerId: 'old01', netns: null }).status, 0, 'late DEL without CNI_NETNS');
  t.same(world(s, s.indexes), held, 'nothing moved');
  t.equal(ip('-n', pod2, '-j', '-d', 'link', 'show'), heldPod2, 'the new sandbox keeps its interface');
  t.ok(fs.existsSync(attachmentFile(s, 'mvtlate', 'new01')), "the new sandbox's record is kept");
  t.equal(cni(s, { command: 'DEL', config, containerId: 'new01', netns: `/var/run/netns/${pod2}` }).status, 0);
  t.end();
});

t.test('CHECK passes after ADD and reports every drift', { skip: rootOnly }, (t) => {
  const s = makeScene(t, { indexes: 1 });
  const idx = s.indexes[0];
  addMacvtap(s, 'mvtchk', idx);
  const base = conf(s, { cniVersion: '1.0.0', deviceID: 'mvtchk', mac: '02:00:00:00:03:01', mtu: 1400 });
  const add = cni(s, { command: 'ADD', config: base });
  t.equal(add.status, 0);
  const config = { ...base, prevResult: add.json };
  const check = (): ReturnType<typeof cni> => cni(s, { command: 'CHECK', config });
  let r = check();
  t.equal(r.status, 0, `CHECK right after ADD (${r.stdout})`);
  t.equal(r.stdout, '', 'CHECK prints nothing on success');

  const drifts: [string, () => void, () => void, RegExp][] = [
    [
      'MTU',
      () => ip('-n', s.pod, 'link', 'set', 'net1', 'mtu', '1300'),
      () => ip('-n', s.pod, 'link', 'set', 'net1', 'mtu', '1400'),
      /mtu is 1300, expected 1400/,
    ],
    [
      'MAC',
      () => ip('-n', s.pod, 'link', 'set', 'net1', 'address', '02:00:00:00:03:99'),
      () => ip('-n', s.pod, 'link', 'set', 'net1', 'address', '02:00:00:00:03:01'),
      /mac is 02:00:00:00:03:99/,
    ],
    [
      'promisc',
      () => ip('-n', s.pod, 'link', 'set', 'net1', 'promisc', 'on'),
      () => ip('-n', s.pod, 'link', 'set', 'net1', 'promisc', 'off'),
      /promisc is on/,
    ],
    ['down', () => ip('-n', s.pod, 'link', 'set', 'net1', 'down'), () => ip('-n', s.pod, 'link', 'set', 'net1', 'up'), /it is down/],
    [
      'tap owner',
      () => fs.chownSync(`/dev/tap${idx}`, 0, 0),
      () => fs.chownSync(`/dev/tap${idx}`, 107, 107),
      /owned by 0:0, expected 107:107/,
    ],
    [
      'tap node missing',
      () => fs.renameSync(`/dev/tap${idx}`, `/dev/tap${idx}.away`),
      () => fs.renameSync(`/dev/tap${idx}.away`, `/dev/tap${idx}`),
      /missing or not a character device/,
    ],
  ];
  for (const [label, drift, fix, why] of drifts) {
    drift();
    r = check();
    t.equal(r.status, 1, `${label} drift: CHECK fails`);
    t.equal(r.json?.code, 107, `${label} drift: code 107`);
    t.match(r.json?.details, why, `${label} drift: details say what`);
    fix();
    t.equal(check().status, 0, `${label} fixed: CHECK passes again`);
  }
  // The config and prevResult disagree.
  r = cni(s, { command: 'CHECK', config: { ...config, mtu: 1500 } });
  t.equal(r.json?.code, 107, 'config mtu differs from the interface');
  // prevResult does not list the interface / no prevResult.
  r = cni(s, { command: 'CHECK', config: { ...config, prevResult: { cniVersion: '1.0.0', interfaces: [] } } });
  t.equal(r.json?.code, 107, 'prevResult without the interface');
  r = cni(s, { command: 'CHECK', config: base });
  t.equal(r.json?.code, 7, 'no prevResult: code 7');
  // Gone entirely.
  ip('-n', s.pod, 'link', 'set', 'net1', 'netns', s.host, 'name', 'mvtchk');
  r = check();
  t.equal(r.json?.code, 107, 'interface missing: code 107');
  t.match(r.json?.msg, /missing/);
  // A namespace that does not exist.
  r = cni(s, { command: 'CHECK', config, netns: '/var/run/netns/no-such-ns' });
  t.equal(r.json?.code, 3, 'CHECK in a namespace that does not exist: code 3');
  t.equal(cni(s, { command: 'DEL', config }).status, 0);
  t.end();
});

t.test('GC drops the attachments that are not valid and whose pod is gone, only for its network', { skip: rootOnly }, (t) => {
  const s = makeScene(t, { indexes: 4 });
  const names = ['mvtgc0', 'mvtgc1', 'mvtgc2', 'mvtgc3'];
  names.forEach((n, i) => addMacvtap(s, n, s.indexes[i]));
  const pods = names.map(() => makeNetns(t, 'mvcp'));
  // gc0, gc1 on network "dataplane"; gc2 on network "other"; gc3 on "dataplane" with its namespace gone.
  const add = (i: number, network: string): void => {
    const r = cni(s, {
      command: 'ADD',
      config: conf(s, { name: network, deviceID: names[i] }),
      containerId: `gc${i}`,
      netns: `/var/run/netns/${pods[i]}`,
    });
    t.equal(r.status, 0, `ADD ${names[i]} (${r.stdout})`);
  };
  add(0, 'dataplane');
  add(1, 'dataplane');
  add(2, 'other');
  add(3, 'dataplane');
  removeNetns(pods[3]);
  // The lock file of an invocation that died holding it (the kernel released the lock; the file stays).
  fs.mkdirSync(path.join(s.stateDir, 'locks'), { recursive: true, mode: 0o700 });
  fs.writeFileSync(path.join(s.stateDir, 'locks', 'crashed.lock'), '{"pid":4194305,"program":"macvtap","verb":"ADD"}\n', { mode: 0o600 });

  const gc = (config: Record<string, unknown>): ReturnType<typeof cni> =>
    cni(s, { command: 'GC', config, env: { CNI_CONTAINERID: undefined, CNI_IFNAME: undefined }, netns: null });
  const r = gc(conf(s, { 'cni.dev/valid-attachments': [{ containerID: 'gc0', ifname: 'net1' }] }));
  t.equal(r.status, 0, `GC (${r.stdout})`);
  t.equal(r.stdout, '', 'GC prints nothing');
  t.ok(ipLink(pods[0], 'net1'), 'valid attachment untouched');
  // Not in the list, but its pod namespace still has the link: GC never takes it (test/security has the attack).
  t.equal(ipLink(pods[1], 'net1')?.ifindex, s.indexes[1], 'an invalid attachment whose pod still has the link: kept');
  t.ok(ipLink(pods[2], 'net1'), "another network's attachment untouched");
  t.same(
    stateEntries(s, 'attachments'),
    ['mvtgc0+gc0+net1.json', 'mvtgc1+gc1+net1.json', 'mvtgc2+gc2+net1.json'],
    'the record of the attachment whose namespace is gone dropped',
  );
  t.same(stateEntries(s, 'locks'), [], "the dead holder's lock file removed");
  removeNetns(pods[1]);
  t.equal(gc(conf(s, { 'cni.dev/valid-attachments': [{ containerID: 'gc0', ifname: 'net1' }] })).status, 0, 'GC once its pod is gone');
  t.same(stateEntries(s, 'attachments'), ['mvtgc0+gc0+net1.json', 'mvtgc2+gc2+net1.json'], 'its record dropped too');

  // The older spelling libcni also sends; an empty list collects every attachment of the network.
  removeNetns(pods[2]);
  t.equal(gc(conf(s, { name: 'other', 'cni.dev/attachments': [] })).status, 0, 'GC of "other" with an empty list');
  t.same(stateEntries(s, 'attachments'), ['mvtgc0+gc0+net1.json'], 'its attachment released');
  t.equal(gc(conf(s, { 'cni.dev/valid-attachments': [{ containerID: 'gc0', ifname: 'net1' }] })).status, 0, 'GC again: nothing left to do');
  t.ok(ipLink(pods[0], 'net1'), 'still valid, still attached');
  // Malformed lists.
  t.equal(gc(conf(s)).json?.code, 7, 'GC without valid-attachments: code 7');
  t.equal(gc(conf(s, { 'cni.dev/valid-attachments': [{ containerID: 1 }] })).json?.code, 7, 'malformed entry: code 7');
  t.equal(
    cni(s, { command: 'DEL', config: conf(s, { deviceID: 'mvtgc0' }), containerId: 'gc0', netns: `/var/run/netns/${pods[0]}` }).status,
    0,
  );
  t.end();
});

t.test('STATUS: ready, not ready (50), and degraded (51)', { skip: rootOnly }, (t) => {
  const s = makeScene(t, { indexes: 1 });
  const status = (config: Record<string, unknown>, env: Record<string, string> = {}): ReturnType<typeof cni> =>
    cni(s, { command: 'STATUS', config, env: { CNI_CONTAINERID: undefined, CNI_IFNAME: undefined, ...env }, netns: null });
  let r = status(conf(s));
  t.equal(r.status, 0, `ready (${r.stdout})`);
  t.equal(r.stdout, '', 'ready prints nothing');

  const blocker = path.join(s.stateDir, 'not-a-dir');
  fs.writeFileSync(blocker, '');
  r = status(conf(s), { MACVTAP_CNI_STATE_DIR: path.join(blocker, 'state') });
  t.equal(r.json?.code, 50, 'state directory unusable: 50');
  t.match(r.json?.msg, /not writable/);

  // A device attached on this network loses its lower device.
  addMacvtap(s, writeAllocation(s, { deviceID: 'statusMvp0', ifindex: s.indexes[0] }).linkName, s.indexes[0]);
  t.equal(cni(s, { command: 'ADD', config: conf(s, { deviceID: 'statusMvp0' }) }).status, 0, 'ADD');
  t.equal(status(conf(s)).status, 0, 'still ready');
  ip('-n', s.host, 'link', 'del', s.lower);
  r = status(conf(s));
  t.equal(r.json?.code, 51, 'lower device gone under an attachment: 51');
  t.match(r.json?.details, /statusMvp0 \(lower device lower0/);
  t.equal(status(conf(s, { name: 'elsewhere' })).status, 0, 'other networks are unaffected');
  t.equal(cni(s, { command: 'DEL', config: conf(s, { deviceID: 'statusMvp0' }) }).status, 0, 'DEL still succeeds');
  t.end();
});

t.test('DEL with CNI_NETNS naming the host namespace touches no host link', { skip: rootOnly }, (t) => {
  const s = makeScene(t, { indexes: 1 });
  const name = writeAllocation(s, { deviceID: 'hostnsMvp0', ifindex: s.indexes[0] }).linkName;
  addMacvtap(s, name, s.indexes[0]);
  const before = world(s, s.indexes);
  const r = cni(s, { command: 'DEL', config: conf(s, { deviceID: 'hostnsMvp0' }), netns: `/var/run/netns/${s.host}`, ifname: name });
  // Refused as ADD refuses it (a pod's interface is never in the host namespace).
  t.equal(r.status, 1, 'DEL fails');
  t.equal(r.json?.code, 4, 'code 4');
  t.match(r.json?.msg, /is the host's network namespace/, 'and says why it did nothing');
  t.same(world(s, s.indexes), before, 'the host macvtap is neither moved nor deleted');
  t.end();
});
