// Issue 11, attacks through host-only keys in a tenant's network configuration (logFile, stateDir and the forged
// state a tenant-chosen stateDir would bring): each is refused with code 7 naming the key and where it lives now,
// and the host is unchanged (no file created or grown, no directory, no record, the victim's link as it was).
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import t from 'tap';
import { hostLinkName } from '../../lib/naming';
import { rootOnly } from '../support/kernel';
import { device, linkOf, makeStage, nad, refused, run, snapshot, victimPod } from './helpers';

const WHERE =
  /host setting: set "(logFile|stateDir|logLevel)" in the host configuration file .* or MACVTAP_CNI_[A-Z_]+ in the runtime's environment/;

t.test('"logFile": an arbitrary host path is neither created nor appended to', { skip: rootOnly }, (t) => {
  const s = makeStage(t);
  const d = device(s, 'tenantMvp0', s.indexes[0], '02:00:00:00:11:01');
  s.checkpoint.assign('7e7a0001-0000-4000-8000-000000000001', 'compute', 'macvtap.network.kubevirt.io/dataplane', [d.deviceID]);
  s.checkpoint.write();
  const fresh = path.join(s.scratch, 'etc', 'cron.d', 'evil');
  const existing = path.join(s.scratch, 'passwd');
  fs.writeFileSync(existing, 'root:x:0:0:root:/root:/bin/sh\n');
  const before = snapshot(s);
  for (const target of [fresh, existing]) {
    const r = run(s, { command: 'ADD', config: nad({ deviceID: d.deviceID, logFile: target, logLevel: 'debug' }) });
    refused(t, r, 7, /the network configuration may not set "logFile"/, `logFile ${target}`);
    t.match(r.json?.details, WHERE, 'says where the setting lives now');
  }
  t.notOk(fs.existsSync(path.dirname(fresh)), 'no directory or file was created at the path');
  t.equal(fs.readFileSync(existing, 'utf8'), 'root:x:0:0:root:/root:/bin/sh\n', 'the existing file did not grow');
  t.equal(snapshot(s), before, 'the device was not moved, no record written');
  t.end();
});

t.test('"logFile": a FIFO cannot hang the plugin', { skip: rootOnly }, (t) => {
  const s = makeStage(t);
  const fifo = path.join(s.scratch, 'fifo');
  execFileSync('mkfifo', [fifo]);
  for (const command of ['ADD', 'CHECK']) {
    const r = run(s, { command, config: nad({ deviceID: 'anyMvp0', logFile: fifo }) });
    refused(t, r, 7, /may not set "logFile"/, `${command} with a FIFO logFile`);
  }
  const del = run(s, { command: 'DEL', config: nad({ deviceID: 'anyMvp0', logFile: fifo }) });
  t.notOk(del.timedOut, 'DEL: no hang');
  t.equal(del.status, 0, 'DEL ignores the key (nothing to release) rather than failing the cleanup');
  t.match(del.stderr, /ignoring \\"logFile\\" in the network configuration for DEL/, 'and says so in the log');
  t.ok(fs.lstatSync(fifo).isFIFO(), 'the FIFO is still a FIFO, nobody opened it for writing');
  t.end();
});

t.test('"stateDir": no directory appears, no lock or record is written there', { skip: rootOnly }, (t) => {
  const s = makeStage(t);
  const d = device(s, 'tenantMvp1', s.indexes[0], '02:00:00:00:11:02');
  const target = path.join(s.scratch, 'var', 'lib', 'chosen');
  const before = snapshot(s);
  for (const command of ['ADD', 'CHECK', 'STATUS', 'GC']) {
    const config = nad({ deviceID: d.deviceID, stateDir: target, 'cni.dev/valid-attachments': [] });
    refused(t, run(s, { command, config }), 7, /may not set "stateDir"/, `${command} with stateDir`);
  }
  t.notOk(fs.existsSync(path.join(s.scratch, 'var')), 'no directory appeared');
  t.equal(snapshot(s), before, "the host's state and links are unchanged");
  t.end();
});

/** A tenant-made state dir with the records of the issue's attacks. */
function forgedStateDir(dir: string, victimID: string, victimIndex: number, lower: string): string {
  fs.mkdirSync(path.join(dir, 'allocations'), { recursive: true, mode: 0o700 });
  fs.mkdirSync(path.join(dir, 'attachments'), { recursive: true, mode: 0o700 });
  // "Recreate the victim's device for me": its name and ifindex, on the victim's lower device.
  fs.writeFileSync(
    path.join(dir, 'allocations', `${victimID}.json`),
    JSON.stringify({
      version: 1,
      deviceID: victimID,
      resource: 'macvtap.network.kubevirt.io/dataplane',
      linkName: hostLinkName(victimID),
      lowerDevice: lower,
      mode: 'bridge',
      ifindex: victimIndex,
      txqueuelen: 1000,
      allocatedAt: new Date().toISOString(),
    }),
  );
  return dir;
}

t.test('a forged allocation record in a tenant stateDir cannot take or re-point another device', { skip: rootOnly }, (t) => {
  const s = makeStage(t);
  const victim = device(s, 'victimMvp0', s.indexes[0], '02:00:00:00:22:01');
  const forged = forgedStateDir(path.join(s.scratch, 'forged'), victim.deviceID, victim.index, s.lower);
  const forgedBefore = fs.readdirSync(forged, { recursive: true }).sort();
  const before = snapshot(s);
  const tapBefore = fs.statSync(`/dev/tap${victim.index}`);
  const r = run(s, { command: 'ADD', config: nad({ deviceID: victim.deviceID, stateDir: forged }) });
  refused(t, r, 7, /may not set "stateDir"/, 'ADD with a forged stateDir');
  const link = linkOf(s.host, victim.hostName);
  t.equal(link.ifindex, victim.index, 'the victim link is still in the host namespace under its name and ifindex');
  t.equal(link.address, victim.mac, 'with its MAC');
  const tapAfter = fs.statSync(`/dev/tap${victim.index}`);
  t.same(
    [tapAfter.rdev, tapAfter.uid, tapAfter.mode],
    [tapBefore.rdev, tapBefore.uid, tapBefore.mode],
    `/dev/tap${victim.index} untouched`,
  );
  t.equal(snapshot(s), before, 'no record written, nothing moved');
  t.same(fs.readdirSync(forged, { recursive: true }).sort(), forgedBefore, 'nothing added to the forged directory (no lock, no record)');
  t.end();
});

t.test("a forged attachment record plus GC cannot pull another pod's link out of its namespace", { skip: rootOnly }, (t) => {
  const s = makeStage(t);
  const victim = device(s, 'victimMvp1', s.indexes[0], '02:00:00:00:22:02');
  const pod = victimPod(t, s, victim);
  const forged = forgedStateDir(path.join(s.scratch, 'forged'), victim.deviceID, victim.index, s.lower);
  const record = JSON.parse(
    fs.readFileSync(path.join(s.stateDir, 'attachments', `${victim.deviceID}+v1c71m01+net1.json`), 'utf8'),
  ) as object;
  fs.writeFileSync(path.join(forged, 'attachments', `${victim.deviceID}+v1c71m01+net1.json`), JSON.stringify(record));
  const before = snapshot(s);
  const r = run(s, {
    command: 'GC',
    config: nad({ stateDir: forged, 'cni.dev/valid-attachments': [] }),
    netns: null,
    env: { CNI_CONTAINERID: undefined, CNI_IFNAME: undefined },
  });
  refused(t, r, 7, /may not set "stateDir"/, 'GC with a forged stateDir');
  t.equal(linkOf(pod, 'net1').ifindex, victim.index, "the victim's link is still in its pod");
  t.equal(snapshot(s), before, 'nothing changed');
  t.end();
});

t.test("a symlink planted at the record's temp path in a tenant stateDir overwrites nothing", { skip: rootOnly }, (t) => {
  const s = makeStage(t);
  const d = device(s, 'tenantMvp2', s.indexes[0], '02:00:00:00:11:03');
  const passwd = path.join(s.scratch, 'passwd');
  fs.writeFileSync(passwd, 'root:x:0:0:root:/root:/bin/sh\n');
  const dir = path.join(s.scratch, 'planted');
  fs.mkdirSync(path.join(dir, 'attachments'), { recursive: true, mode: 0o700 });
  // Any pid the next invocation may get.
  for (let pid = 1; pid < 400; pid++) fs.symlinkSync(passwd, path.join(dir, 'attachments', `${d.deviceID}+c0ffee01+net1.json.${pid}.tmp`));
  const before = snapshot(s);
  refused(t, run(s, { command: 'ADD', config: nad({ deviceID: d.deviceID, stateDir: dir }) }), 7, /"stateDir"/, 'ADD');
  t.equal(fs.readFileSync(passwd, 'utf8'), 'root:x:0:0:root:/root:/bin/sh\n', 'the stand-in /etc/passwd is unchanged');
  t.equal(snapshot(s), before, 'the device was not moved');
  t.end();
});

t.test('"logLevel", "ownership", "kubeletRoot" are host settings too', { skip: rootOnly }, (t) => {
  const s = makeStage(t);
  const before = snapshot(s);
  for (const [key, value] of [
    ['logLevel', 'debug'],
    ['ownership', 'off'],
    ['kubeletRoot', s.scratch],
  ]) {
    const r = run(s, { command: 'ADD', config: nad({ deviceID: 'anyMvp0', [key]: value }) });
    refused(t, r, 7, new RegExp(`may not set "${key}"`), key);
    t.match(r.json?.details, `set "${key}" in the host configuration file`, `${key}: where it lives now`);
  }
  t.equal(snapshot(s), before, 'nothing changed');
  t.end();
});
