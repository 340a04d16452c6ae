// Issue 11, "records are read as untrusted too": state records with a wrong type or value (whoever wrote them) are
// reported with their path and ignored, never acted on: no host link is renamed, moved or deleted on their word.
import * as fs from 'node:fs';
import * as path from 'node:path';
import t from 'tap';
import { ipLink, rootOnly } from '../support/kernel';
import { addMacvtap, linkOf } from '../cni/harness';
import { device, makeStage, nad, RESOURCE, run, snapshot, TENANT_UID } from './helpers';

function plant(file: string, record: object): void {
  fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  fs.writeFileSync(file, JSON.stringify(record), { mode: 0o600 });
}

t.test('an attachment record naming another host link, or with wrong types, is reported and ignored', { skip: rootOnly }, (t) => {
  const s = makeStage(t);
  const d = device(s, 'recMvp0', s.indexes[0], '02:00:00:00:77:01');
  // A bystander macvtap on the host that a forged record would rename and "restore".
  addMacvtap(s, 'bystander0', s.indexes[1], 'bridge', ['address', '02:00:00:00:77:02']);
  const bystander = linkOf(s.host, 'bystander0');
  const base = {
    version: 2,
    deviceID: d.deviceID,
    ifname: 'net1',
    network: 'dataplane',
    netns: '/var/run/netns/gone',
    ifindex: s.indexes[1],
    lowerIndex: linkOf(s.host, s.lower).ifindex,
    original: { mac: '02:00:00:00:99:99', mtu: 1280, promisc: true, up: true },
    attachedAt: new Date().toISOString(),
  };
  const dir = path.join(s.stateDir, 'attachments');
  plant(path.join(dir, `${d.deviceID}+f0r6ed01+net1.json`), { ...base, containerID: 'f0r6ed01', hostName: 'bystander0' });
  plant(path.join(dir, `${d.deviceID}+f0r6ed02+net1.json`), { ...base, containerID: 'f0r6ed02', hostName: d.hostName, ifindex: '20000' });
  plant(path.join(dir, `${d.deviceID}+f0r6ed03+net1.json`), { ...base, containerID: 'f0r6ed03', hostName: d.hostName, netns: 'relative' });
  s.checkpoint.assign(TENANT_UID, 'compute', RESOURCE, [d.deviceID]);
  s.checkpoint.write();

  const gc = run(s, {
    command: 'GC',
    config: nad({ 'cni.dev/valid-attachments': [] }),
    netns: null,
    env: { CNI_CONTAINERID: undefined, CNI_IFNAME: undefined },
  });
  t.equal(gc.status, 0, `GC (${gc.stdout})`);
  const add = run(s, { command: 'ADD', config: nad({ deviceID: d.deviceID }) });
  t.equal(add.status, 0, `ADD of the pod's own device goes on (${add.stdout})`);
  for (const r of [gc, add]) {
    t.match(
      r.stderr,
      /ignoring a state record that cannot be trusted.*f0r6ed01.*hostName \\"bystander0\\" is neither the deviceID nor a device plugin name/,
    );
    t.match(r.stderr, /ignoring a state record that cannot be trusted.*f0r6ed02.*ifindex is \\"20000\\", not an integer/);
    t.match(r.stderr, /ignoring a state record that cannot be trusted.*f0r6ed03.*netns \\"relative\\" is not an absolute path/);
  }
  const after = linkOf(s.host, 'bystander0');
  t.same(
    [after.ifindex, after.address, after.mtu, after.flags.includes('PROMISC')],
    [bystander.ifindex, bystander.address, bystander.mtu, false],
    'the bystander link: same name, ifindex, MAC, MTU, not made promiscuous',
  );
  t.equal(linkOf(s.pod, 'net1').ifindex, d.index, 'the real device was attached');
  t.equal(run(s, { command: 'DEL', config: nad({ deviceID: d.deviceID }) }).status, 0);
  t.end();
});

t.test('an allocation record with a foreign link name or a bad mode is ignored: nothing is created or deleted', { skip: rootOnly }, (t) => {
  const s = makeStage(t);
  addMacvtap(s, 'bystander1', s.indexes[0], 'bridge', ['address', '02:00:00:00:77:03']);
  const record = {
    version: 1,
    resource: RESOURCE,
    lowerDevice: s.lower,
    mode: 'bridge',
    ifindex: s.indexes[0],
    txqueuelen: 1000,
    allocatedAt: new Date().toISOString(),
  };
  plant(path.join(s.stateDir, 'allocations', 'recMvp1.json'), { ...record, deviceID: 'recMvp1', linkName: 'bystander1' });
  plant(path.join(s.stateDir, 'allocations', 'recMvp2.json'), { ...record, deviceID: 'recMvp2', linkName: 'mvt0000', mode: 'source' });
  s.checkpoint.assign(TENANT_UID, 'compute', RESOURCE, ['recMvp1', 'recMvp2']);
  s.checkpoint.write();
  // ADD takes the device's lock (an empty locks/ directory is all it leaves): made first, so the snapshot compares.
  fs.mkdirSync(path.join(s.stateDir, 'locks'), { mode: 0o700 });
  const before = snapshot(s);
  for (const deviceID of ['recMvp1', 'recMvp2']) {
    const r = run(s, { command: 'ADD', config: nad({ deviceID }) });
    t.equal(r.json?.code, 100, `${deviceID}: no device (the record does not count): code 100`);
    t.match(r.stderr, /ignoring a state record that cannot be trusted/, `${deviceID}: reported`);
  }
  t.equal(ipLink(s.host, 'bystander1')?.address, '02:00:00:00:77:03', 'the bystander is untouched');
  t.equal(snapshot(s), before, 'nothing created, moved or deleted');
  t.end();
});
