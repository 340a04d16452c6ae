// Issue 11, "a pod only gets its own device": ADD with K8S_POD_UID checks the kubelet's device-manager
// checkpoint (written here byte for byte as the kubelet writes it, Checksum and the -1 NUMA key included) before
// anything changes. Refusals leave the other pod's device exactly where it was, with its name, MAC and /dev/tapN.
import * as fs from 'node:fs';
import * as path from 'node:path';
import t from 'tap';
import { renderCheckpoint } from '../support/checkpoint';
import { ipLink, rootOnly } from '../support/kernel';
import { device, linkOf, makeStage, nad, podArgs, refused, RESOURCE, run, snapshot, TENANT_UID, VICTIM_UID, victimPod } from './helpers';

t.test("the pod's own device: ADD succeeds; the file is what the kubelet writes", { skip: rootOnly }, (t) => {
  const s = makeStage(t);
  const d = device(s, 'dataplaneMvp0', s.indexes[0], '02:00:00:00:44:01');
  s.checkpoint.assign(TENANT_UID, 'compute', RESOURCE, [d.deviceID], Buffer.from([0x1a, 0x02]));
  s.checkpoint.write();
  t.match(
    fs.readFileSync(s.checkpoint.path, 'utf8'),
    /"DeviceIDs":\{"-1":\["dataplaneMvp0"\]\}.*"Checksum":\d+/,
    'the -1 NUMA key and Checksum',
  );
  const r = run(s, { command: 'ADD', config: nad({ deviceID: d.deviceID }) });
  t.equal(r.status, 0, r.stdout + r.stderr);
  t.equal(linkOf(s.pod, 'net1').ifindex, d.index, 'the device is in the pod');
  t.equal(run(s, { command: 'DEL', config: nad({ deviceID: d.deviceID }) }).status, 0, 'DEL');
  t.end();
});

t.test("another pod's device: refused (109), its link stays in its pod", { skip: rootOnly }, (t) => {
  const s = makeStage(t);
  const victim = device(s, 'dataplaneMvp1', s.indexes[0], '02:00:00:00:44:02');
  const pod = victimPod(t, s, victim);
  // The tenant holds a device of its own; its NAD names the victim's.
  const own = device(s, 'dataplaneMvp2', s.indexes[1], '02:00:00:00:44:03');
  s.checkpoint.assign(TENANT_UID, 'compute', RESOURCE, [own.deviceID]);
  s.checkpoint.write();
  const before = snapshot(s);
  const victimLink = linkOf(pod, 'net1');
  const r = run(s, { command: 'ADD', config: nad({ deviceID: victim.deviceID }) });
  refused(t, r, 109, /device "dataplaneMvp1" is assigned to another pod/, "ADD of the victim's device");
  t.notMatch(r.stdout, VICTIM_UID, "the answer (which the tenant may see) does not name the other pod's UID");
  const link = linkOf(pod, 'net1');
  t.same(
    [link.ifindex, link.address, link.flags],
    [victim.index, victimLink.address, victimLink.flags],
    "the victim's link is still net1 in its pod",
  );
  t.notOk(ipLink(s.pod, 'net1'), "nothing arrived in the tenant's pod");
  t.equal(snapshot(s), before, 'no record written, nothing moved, tap nodes untouched');
  t.end();
});

t.test(
  'a device waiting in the host for another pod: refused (109), still there with its name, MAC and /dev/tapN',
  { skip: rootOnly },
  (t) => {
    const s = makeStage(t);
    const victim = device(s, 'dataplaneMvp3', s.indexes[0], '02:00:00:00:44:04');
    s.checkpoint.assign(VICTIM_UID, 'compute', RESOURCE, [victim.deviceID]);
    s.checkpoint.write();
    const tapBefore = fs.statSync(`/dev/tap${victim.index}`);
    const before = snapshot(s);
    refused(t, run(s, { command: 'ADD', config: nad({ deviceID: victim.deviceID }) }), 109, /assigned to another pod/, 'ADD');
    const link = ipLink(s.host, victim.hostName);
    t.same([link?.ifindex, link?.address], [victim.index, victim.mac], 'in the host namespace under its name, with its MAC');
    const tapAfter = fs.statSync(`/dev/tap${victim.index}`);
    t.same(
      [tapAfter.rdev, tapAfter.uid, tapAfter.gid, tapAfter.mode],
      [tapBefore.rdev, tapBefore.uid, tapBefore.gid, tapBefore.mode],
      '/dev/tapN untouched',
    );
    t.equal(snapshot(s), before, 'nothing changed');
    t.end();
  },
);

t.test('no entry for the device: refused (109); a non-macvtap resource holding it does not count', { skip: rootOnly }, (t) => {
  const s = makeStage(t);
  const d = device(s, 'dataplaneMvp4', s.indexes[0], '02:00:00:00:44:05');
  s.checkpoint.assign(TENANT_UID, 'compute', 'example.com/other', [d.deviceID]);
  s.checkpoint.assign(TENANT_UID, 'compute', RESOURCE, ['dataplaneMvp9']);
  s.checkpoint.write();
  const before = snapshot(s);
  refused(t, run(s, { command: 'ADD', config: nad({ deviceID: d.deviceID }) }), 109, /is not assigned to this pod/, 'ADD');
  t.equal(snapshot(s), before, 'nothing changed');
  // The same, named through runtimeConfig.deviceID (the deviceID capability).
  refused(t, run(s, { command: 'ADD', config: nad({ runtimeConfig: { deviceID: d.deviceID } }) }), 109, /not assigned/, 'runtimeConfig');
  t.equal(snapshot(s), before, 'nothing changed');
  t.end();
});

t.test('corrupt, missing, unsafe checkpoints: refused (110) under enforce, allowed with a warning under warn', { skip: rootOnly }, (t) => {
  const s = makeStage(t);
  const d = device(s, 'dataplaneMvp5', s.indexes[0], '02:00:00:00:44:06');
  const dir = path.dirname(s.checkpoint.path);
  const cases: [string, () => void, RegExp][] = [
    ['missing', () => fs.rmSync(s.checkpoint.path, { force: true }), /does not exist/],
    ['not JSON', () => fs.writeFileSync(s.checkpoint.path, '{"Data":', { mode: 0o600 }), /is corrupt: not JSON/],
    [
      'wrong shape',
      () => fs.writeFileSync(s.checkpoint.path, '{"Data":{"PodDeviceEntries":{}},"Checksum":1}', { mode: 0o600 }),
      /Data.PodDeviceEntries is an object, not a list/,
    ],
    [
      'no Checksum',
      () => fs.writeFileSync(s.checkpoint.path, renderCheckpoint({ entries: [], registered: undefined }).replace(/,"Checksum":\d+/, '')),
      /Checksum is missing/,
    ],
    [
      'world-writable (anyone could have assigned the device)',
      () => {
        s.checkpoint.assign(TENANT_UID, 'compute', RESOURCE, [d.deviceID]);
        s.checkpoint.write();
        fs.chmodSync(s.checkpoint.path, 0o666);
      },
      /writable by everyone/,
    ],
  ];
  fs.mkdirSync(dir, { recursive: true, mode: 0o755 });
  for (const [label, make, msg] of cases) {
    make();
    const before = snapshot(s);
    const r = run(s, { command: 'ADD', config: nad({ deviceID: d.deviceID }) });
    refused(t, r, 110, msg, `${label}, enforce`);
    t.match(r.json?.msg, /cannot verify that this pod holds device "dataplaneMvp5"/, `${label}: says what could not be checked`);
    t.equal(snapshot(s), before, `${label}, enforce: nothing changed`);
    const warned = run(s, { command: 'ADD', config: nad({ deviceID: d.deviceID }), ownership: 'warn' });
    t.equal(warned.status, 0, `${label}, warn: ADD goes on (${warned.stdout})`);
    t.match(warned.stderr, /"level":"warn","msg":"ownership not enforced \(ownership: warn\): cannot verify/, `${label}, warn: logged`);
    t.equal(run(s, { command: 'DEL', config: nad({ deviceID: d.deviceID }) }).status, 0, `${label}: DEL`);
    t.ok(ipLink(s.host, d.hostName), `${label}: the device is back in the host`);
  }
  t.end();
});

t.test("warn lets another pod's device through with a warning; off does not read the checkpoint", { skip: rootOnly }, (t) => {
  const s = makeStage(t);
  const d = device(s, 'dataplaneMvp6', s.indexes[0], '02:00:00:00:44:07');
  s.checkpoint.assign(VICTIM_UID, 'compute', RESOURCE, [d.deviceID]);
  s.checkpoint.write();
  const warned = run(s, { command: 'ADD', config: nad({ deviceID: d.deviceID }), ownership: 'warn' });
  t.equal(warned.status, 0, warned.stdout);
  t.match(warned.stderr, /ownership not enforced \(ownership: warn\): device \\"dataplaneMvp6\\" is assigned to another pod/);
  t.equal(run(s, { command: 'DEL', config: nad({ deviceID: d.deviceID }) }).status, 0);
  fs.writeFileSync(s.checkpoint.path, 'not even JSON');
  const off = run(s, { command: 'ADD', config: nad({ deviceID: d.deviceID }), ownership: 'off' });
  t.equal(off.status, 0, off.stdout);
  t.equal(off.stderr, '', 'off: nothing to say, the checkpoint was not read');
  t.equal(run(s, { command: 'DEL', config: nad({ deviceID: d.deviceID }) }).status, 0);
  t.end();
});

t.test('without K8S_POD_UID (no kubelet: a bare runtime) nothing is checked', { skip: rootOnly }, (t) => {
  const s = makeStage(t);
  const d = device(s, 'dataplaneMvp7', s.indexes[0], '02:00:00:00:44:08');
  const r = run(s, {
    command: 'ADD',
    config: nad({ deviceID: d.deviceID }),
    args: 'IgnoreUnknown=true;K8S_POD_NAMESPACE=tenant;K8S_POD_NAME=vm',
  });
  t.equal(r.status, 0, `ADD with no checkpoint at all (${r.stdout})`);
  t.equal(run(s, { command: 'DEL', config: nad({ deviceID: d.deviceID }) }).status, 0);
  t.end();
});

t.test('a kubelet <= 1.19 checkpoint (DeviceIDs a plain list) is read too', { skip: rootOnly }, (t) => {
  const s = makeStage(t);
  const d = device(s, 'dataplaneMvp8', s.indexes[0], '02:00:00:00:44:09');
  const entries = [
    {
      podUID: TENANT_UID,
      containerName: 'compute',
      resourceName: RESOURCE,
      deviceIDs: new Map([[-1, [d.deviceID]]]),
      allocResp: undefined,
    },
  ];
  fs.mkdirSync(path.dirname(s.checkpoint.path), { recursive: true, mode: 0o755 });
  fs.writeFileSync(s.checkpoint.path, renderCheckpoint({ entries, registered: undefined }, { format: 'v1' }), { mode: 0o600 });
  t.match(fs.readFileSync(s.checkpoint.path, 'utf8'), /"DeviceIDs":\["dataplaneMvp8"\]/);
  const r = run(s, { command: 'ADD', config: nad({ deviceID: d.deviceID }), args: podArgs(TENANT_UID) });
  t.equal(r.status, 0, r.stdout);
  t.equal(run(s, { command: 'DEL', config: nad({ deviceID: d.deviceID }) }).status, 0);
  t.end();
});
