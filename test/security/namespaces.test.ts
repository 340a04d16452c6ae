// Issue 11, namespace and cleanup attacks: CNI_NETNS naming a FIFO, socket, device or the host namespace (every
// verb refuses with code 4, without blocking and before taking a lock), GC with a reused network name, and a
// tenant's DEL naming another pod's deviceID. The other pod's link stays where it is, as it is.
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import t from 'tap';
import { ipLink, rootOnly } from '../support/kernel';
import { stateEntries } from '../cni/harness';
import { device, linkOf, makeStage, nad, podArgs, refused, RESOURCE, run, snapshot, TENANT_UID, victimPod } from './helpers';

t.test('CNI_NETNS a FIFO, a socket, a device: code 4 for ADD, CHECK and DEL, no hang, no lock left', { skip: rootOnly }, async (t) => {
  const s = makeStage(t);
  const victim = device(s, 'nsMvp0', s.indexes[0], '02:00:00:00:66:01');
  s.checkpoint.assign(TENANT_UID, 'compute', RESOURCE, [victim.deviceID]);
  s.checkpoint.write();
  const fifo = path.join(s.scratch, 'fifo');
  execFileSync('mkfifo', [fifo]);
  const sock = path.join(s.scratch, 'sock');
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(sock, resolve));
  t.teardown(() => server.close());
  const before = snapshot(s);
  const prevResult = { cniVersion: '1.1.0', interfaces: [{ name: 'net1', sandbox: fifo }] };
  for (const [label, netns] of [
    ['a FIFO', fifo],
    ['a socket', sock],
    ['a device', '/dev/null'],
  ]) {
    for (const command of ['ADD', 'CHECK', 'DEL']) {
      const r = run(s, { command, config: nad({ deviceID: victim.deviceID, prevResult }), netns });
      refused(
        t,
        r,
        4,
        /CNI_NETNS .* (is a (FIFO|socket|device), )?not a network namespace|is not a network namespace/,
        `${command} ${label}`,
      );
    }
  }
  t.same(stateEntries(s, 'locks'), [], 'no lock file left behind');
  t.equal(snapshot(s), before, 'the device is untouched, nothing recorded');
  t.end();
});

t.test('CNI_NETNS naming the host namespace: code 4 for ADD, CHECK and DEL; the host macvtap stays', { skip: rootOnly }, (t) => {
  const s = makeStage(t);
  const victim = device(s, 'nsMvp1', s.indexes[0], '02:00:00:00:66:02');
  s.checkpoint.assign(TENANT_UID, 'compute', RESOURCE, [victim.deviceID]);
  s.checkpoint.write();
  const before = snapshot(s);
  const tapBefore = fs.statSync(`/dev/tap${victim.index}`);
  for (const hostNs of [`/var/run/netns/${s.host}`, '/proc/self/ns/net', '/proc/self/task/../ns/net']) {
    for (const command of ['ADD', 'CHECK', 'DEL']) {
      // ifname = the host link's own name: the DEL that used to delete it.
      const r = run(s, {
        command,
        config: nad({ deviceID: victim.deviceID, prevResult: { interfaces: [{ name: victim.hostName }] } }),
        netns: hostNs,
        ifname: victim.hostName,
      });
      refused(t, r, 4, /is the host's network namespace/, `${command} ${hostNs}`);
    }
  }
  const link = linkOf(s.host, victim.hostName);
  t.same([link.ifindex, link.address], [victim.index, victim.mac], 'the host macvtap: same name, ifindex and MAC');
  const tapAfter = fs.statSync(`/dev/tap${victim.index}`);
  t.same(
    [tapAfter.rdev, tapAfter.uid, tapAfter.mode],
    [tapBefore.rdev, tapBefore.uid, tapBefore.mode],
    `/dev/tap${victim.index} untouched`,
  );
  t.equal(snapshot(s), before, 'nothing changed');
  t.end();
});

t.test("GC under a reused network name with an empty valid list keeps another tenant's live attachment", { skip: rootOnly }, (t) => {
  const s = makeStage(t);
  const victim = device(s, 'nsMvp2', s.indexes[0], '02:00:00:00:66:03');
  const pod = victimPod(t, s, victim);
  const before = snapshot(s);
  const victimLink = linkOf(pod, 'net1');
  for (const key of ['cni.dev/valid-attachments', 'cni.dev/attachments']) {
    const r = run(s, {
      command: 'GC',
      config: nad({ [key]: [] }),
      netns: null,
      env: { CNI_CONTAINERID: undefined, CNI_IFNAME: undefined, MACVTAP_CNI_LOG_LEVEL: 'info' },
    });
    t.equal(r.status, 0, `GC (${key}) succeeds (${r.stdout})`);
    t.match(r.stderr, /GC kept an attachment not in valid-attachments: its pod namespace still has the link/, 'and says what it kept');
  }
  const link = linkOf(pod, 'net1');
  t.same([link.ifindex, link.address], [victim.index, victimLink.address], "the victim's link is still net1 in its pod");
  t.equal(snapshot(s), before, 'its record is kept, nothing moved');
  t.end();
});

t.test("a tenant's DEL naming another pod's deviceID never renames its own link into that device", { skip: rootOnly }, (t) => {
  const s = makeStage(t);
  const victim = device(s, 'nsMvp3', s.indexes[0], '02:00:00:00:66:04');
  const waiting = device(s, 'nsMvp4', s.indexes[1], '02:00:00:00:66:05');
  const pod = victimPod(t, s, victim);
  // The tenant's own device, attached in its pod as net1.
  const own = device(s, 'nsMvp5', s.indexes[2], '02:00:00:00:66:06');
  s.checkpoint.assign(TENANT_UID, 'compute', RESOURCE, [own.deviceID]);
  s.checkpoint.write();
  const add = run(s, { command: 'ADD', config: nad({ deviceID: own.deviceID }), args: podArgs(TENANT_UID) });
  t.equal(add.status, 0, add.stdout);
  const before = snapshot(s);
  for (const target of [victim, waiting]) {
    const r = run(s, { command: 'DEL', config: nad({ deviceID: target.deviceID }) });
    t.equal(r.status, 0, `DEL naming ${target.deviceID} (no record of this container): succeeds (${r.stdout})`);
    t.match(r.stderr, /not returning the link under the device name/, 'and says why it left the link alone');
  }
  t.equal(linkOf(pod, 'net1').ifindex, victim.index, "the victim's link is still in its pod");
  t.equal(ipLink(s.host, waiting.hostName)?.address, waiting.mac, 'the waiting device is still in the host with its MAC');
  t.notOk(ipLink(s.host, victim.hostName), "no link took the victim device's host name");
  t.equal(snapshot(s), before, "the tenant's link and every record are as they were");
  t.equal(run(s, { command: 'DEL', config: nad({ deviceID: own.deviceID }) }).status, 0, "the tenant's real DEL");
  t.equal(ipLink(s.host, own.hostName)?.ifindex, own.index, 'its own device is back in the host');
  t.end();
});
