// Failure and recovery of the CNI plugin (root only): rollback when a step in the middle of ADD fails, sandbox
// recreation, node-reboot recovery from the allocation record, a device still held by another sandbox, and the
// per-device lock.
//
// Honest mid-ADD failures (no test hooks): all happen after the link was moved and renamed into the pod.
//  - MAC conflict: another macvtap on the same lower device is up with the requested MAC. It lives in another
//    sandbox in production, so it cannot be checked beforehand without listing every namespace; the kernel
//    refuses the MAC (EADDRINUSE) in the set step.
//  - Tap node: /dev/tap<ifindex> is a directory, so the node cannot be made (EISDIR) in the tap step.
//  - State: the attachments directory is a file, so recording the attachment (before the move) fails: code 5.
import { execFileSync, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import t from 'tap';
import { makeNetns, removeNetns, rootOnly } from '../support/kernel';
import {
  addMacvtap,
  cni,
  cniAsync,
  conf,
  ip,
  ipLink,
  makeScene,
  nodeDev,
  nodeOwner,
  openState,
  stateEntries,
  sysfsDev,
  world,
  writeAllocation,
} from './harness';

t.test('rollback: a step failing after the move leaves both namespaces as they were, and a retry succeeds', { skip: rootOnly }, (t) => {
  const s = makeScene(t, { indexes: 3 });
  const [idx, sib] = s.indexes;
  addMacvtap(s, 'mvtrb', idx);
  ip('-n', s.host, 'link', 'set', 'mvtrb', 'mtu', '1450', 'promisc', 'on');
  // A sibling on the same lower device, up, holding the MAC the pod will ask for.
  addMacvtap(s, 'mvtsib', sib, 'bridge', ['address', '02:00:00:00:04:01']);
  ip('-n', s.host, 'link', 'set', 'mvtsib', 'up');
  fs.chownSync(`/dev/tap${idx}`, 5, 6);
  const before = world(s, [idx]);

  // 1. The kernel rejects the MAC after move + rename (and after the MTU in the same request).
  const config = conf(s, { deviceID: 'mvtrb', mac: '02:00:00:00:04:01', mtu: 1300, promiscMode: false });
  let r = cni(s, { command: 'ADD', config });
  t.equal(r.status, 1, 'ADD fails');
  t.equal(r.json?.code, 104, `code 104 (${r.json?.msg})`);
  t.match(r.json?.msg, /set MAC, MTU, promisc and up/, 'names the step');
  t.match(r.json?.msg, /Address already in use|EADDRINUSE/, "the kernel's reason");
  t.same(world(s, [idx]), before, 'host link back under its name, MAC, MTU 1450, promisc on, down; pod empty; tap node as before');

  // 2. The tap node step fails.
  fs.rmSync(`/dev/tap${idx}`);
  fs.mkdirSync(`/dev/tap${idx}`);
  t.teardown(() => fs.rmSync(`/dev/tap${idx}`, { recursive: true, force: true }));
  const beforeDir = world(s, [idx]);
  r = cni(s, { command: 'ADD', config: conf(s, { deviceID: 'mvtrb', mac: '02:00:00:00:04:02' }) });
  t.equal(r.json?.code, 104, `tap step: code 104 (${r.json?.msg})`);
  t.match(r.json?.msg, new RegExp(`make /dev/tap${idx}`), 'names the step');
  t.same(world(s, [idx]), beforeDir, 'tap step: everything as before');
  fs.rmdirSync(`/dev/tap${idx}`);
  // Put the node back as the device plugin would have made it.
  const [major, minor] = sysfsDev(s.host, 'mvtrb', idx).split(':');
  execFileSync('mknod', [`/dev/tap${idx}`, 'c', major, minor]);
  fs.chownSync(`/dev/tap${idx}`, 5, 6);

  // 3. Recording the attachment (before the move) fails: an I/O failure of the state directory, code 5.
  fs.mkdirSync(s.stateDir, { recursive: true });
  fs.rmSync(path.join(s.stateDir, 'attachments'), { recursive: true, force: true });
  fs.writeFileSync(path.join(s.stateDir, 'attachments'), 'in the way');
  const beforeRecord = world(s, [idx]);
  r = cni(s, { command: 'ADD', config: conf(s, { deviceID: 'mvtrb', mac: '02:00:00:00:04:03' }) });
  t.equal(r.json?.code, 5, `record step: code 5 (${r.json?.msg})`);
  t.match(r.json?.msg, new RegExp(`${s.stateDir}/attachments.*not a directory`), 'names the path and the problem');
  t.same(world(s, [idx]), beforeRecord, 'record step: everything as before, tap node included');
  fs.rmSync(path.join(s.stateDir, 'attachments'));

  // The runtime's retry, with the obstacles gone, succeeds.
  r = cni(s, { command: 'ADD', config: conf(s, { deviceID: 'mvtrb', mac: '02:00:00:00:04:04', mtu: 1300 }) });
  t.equal(r.status, 0, `retry succeeds (${r.stdout})`);
  t.equal(ipLink(s.pod, 'net1')?.address, '02:00:00:00:04:04');
  t.equal(nodeDev(idx), sysfsDev(s.pod, 'net1', idx), "the tap node is the macvtap's device");
  t.equal(cni(s, { command: 'DEL', config }).status, 0);
  t.end();
});

t.test('sandbox recreation: DEL then ADD of a new sandbox, and ADD after the old namespace died', { skip: rootOnly }, (t) => {
  const s = makeScene(t, { indexes: 1 });
  const idx = s.indexes[0];
  const sbx = writeAllocation(s, { deviceID: 'dataplaneMvp1', ifindex: idx, mode: 'vepa' }).linkName;
  addMacvtap(s, sbx, idx, 'vepa');
  const config = conf(s, { deviceID: 'dataplaneMvp1', mac: '02:00:00:00:05:01' });
  t.equal(cni(s, { command: 'ADD', config, containerId: 'sbx1' }).status, 0, 'first sandbox');
  const firstDev = nodeDev(idx);

  // The kubelet tears the sandbox down and builds a new one (no new Allocate).
  t.equal(cni(s, { command: 'DEL', config, containerId: 'sbx1' }).status, 0, 'DEL');
  t.equal(ipLink(s.host, sbx)?.ifindex, idx, 'DEL left the device in the host under its host name');
  const pod2 = makeNetns(t, 'mvcp');
  let r = cni(s, { command: 'ADD', config, containerId: 'sbx2', netns: `/var/run/netns/${pod2}` });
  t.equal(r.status, 0, `second sandbox (${r.stdout})`);
  let o = ipLink(pod2, 'net1');
  t.equal(o?.ifindex, idx, 'same ifindex, hence the same /dev/tapN');
  t.equal(o?.linkinfo?.info_data?.mode, 'vepa', 'same mode');
  t.equal(nodeDev(idx), sysfsDev(pod2, 'net1', idx), "/dev/tapN is this macvtap's device");
  t.equal(nodeOwner(idx), '107:107');
  t.ok(firstDev);

  // The sandbox's namespace dies without a DEL (the kernel destroys the macvtap with it).
  removeNetns(pod2);
  t.notOk(ipLink(s.host, sbx), 'the macvtap is gone everywhere');
  const pod3 = makeNetns(t, 'mvcp');
  r = cni(s, { command: 'ADD', config, containerId: 'sbx3', netns: `/var/run/netns/${pod3}` });
  t.equal(r.status, 0, `third sandbox: the device is recreated from its allocation (${r.stdout})`);
  o = ipLink(pod3, 'net1');
  t.equal(o?.ifindex, idx, 'recreated with the allocated ifindex');
  t.equal(o?.linkinfo?.info_data?.mode, 'vepa', 'and mode');
  t.equal(o?.address, '02:00:00:00:05:01', 'configured MAC');
  t.equal(o?.link_netnsid, 0, 'on a lower device in the host');
  t.equal(nodeDev(idx), sysfsDev(pod3, 'net1', idx), "/dev/tapN is the new macvtap's device");
  t.equal(cni(s, { command: 'DEL', config, containerId: 'sbx3', netns: `/var/run/netns/${pod3}` }).status, 0);
  t.equal(ipLink(s.host, sbx)?.ifindex, idx, 'back in the host');
  t.end();
});

t.test('node reboot: host link gone, record kept; or a link that is not the allocated one', { skip: rootOnly }, (t) => {
  const s = makeScene(t, { indexes: 3 });
  const [idx, other] = s.indexes;
  const txq = 777;
  const boot = writeAllocation(s, { deviceID: 'dataplaneMvp2', ifindex: idx, mode: 'private', txqueuelen: txq }).linkName;
  // After a reboot there is no macvtap at all.
  t.notOk(ipLink(s.host, boot));
  const config = conf(s, { deviceID: 'dataplaneMvp2', mtu: 1400 });
  let r = cni(s, { command: 'ADD', config });
  t.equal(r.status, 0, `ADD recreates it (${r.stdout})`);
  const o = ipLink(s.pod, 'net1');
  t.equal(o?.ifindex, idx, 'with the recorded ifindex');
  t.equal(o?.linkinfo?.info_data?.mode, 'private', 'mode');
  t.equal(o?.txqlen, txq, 'txqueuelen');
  t.equal(o?.mtu, 1400, 'and the configured MTU');
  t.equal(nodeDev(idx), sysfsDev(s.pod, 'net1', idx), '/dev/tapN is its device');
  t.equal(cni(s, { command: 'DEL', config }).status, 0, 'DEL');
  t.equal(ipLink(s.host, boot)?.ifindex, idx, 'it stays in the host for the next sandbox');

  // Another device plugin (kubevirt's, after a switch) re-allocated the device: the link under the record's name
  // has another ifindex and mode. The kernel wins: that link is attached as it is, never deleted.
  ip('-n', s.host, 'link', 'del', boot);
  addMacvtap(s, boot, other, 'bridge');
  r = cni(s, { command: 'ADD', config });
  t.equal(r.status, 0, `ADD over a link that differs from the record (${r.stdout})`);
  t.equal(ipLink(s.pod, 'net1')?.ifindex, other, "the kernel's link is attached, with its own ifindex");
  t.equal(ipLink(s.pod, 'net1')?.linkinfo?.info_data?.mode, 'bridge', 'and mode');
  t.match(r.stderr, /differs from its allocation record/, 'the mismatch is reported');
  t.equal(cni(s, { command: 'DEL', config }).status, 0);
  t.equal(ipLink(s.host, boot)?.ifindex, other, 'and back on the host as it was');
  t.end();
});

t.test('a device still attached to a live sandbox is not taken: code 11, nothing changed', { skip: rootOnly }, (t) => {
  const s = makeScene(t, { indexes: 1 });
  const idx = s.indexes[0];
  addMacvtap(s, writeAllocation(s, { deviceID: 'dataplaneMvp3', ifindex: idx }).linkName, idx);
  const config = conf(s, { deviceID: 'dataplaneMvp3' });
  t.equal(cni(s, { command: 'ADD', config, containerId: 'holder1' }).status, 0);
  const pod2 = makeNetns(t, 'mvcp');
  const before = world(s, [idx]);
  const r = cni(s, { command: 'ADD', config, containerId: 'taker1', netns: `/var/run/netns/${pod2}` });
  t.equal(r.json?.code, 11, `code 11 (${r.json?.msg})`);
  t.match(r.json?.msg, /still attached to container holder1/);
  t.same(world(s, [idx]), before, 'holder keeps it');
  t.same(ip('-n', pod2, '-j', 'link', 'show').includes('net1'), false, 'taker got nothing');
  t.equal(cni(s, { command: 'DEL', config, containerId: 'holder1' }).status, 0);
  t.equal(
    cni(s, { command: 'ADD', config, containerId: 'taker1', netns: `/var/run/netns/${pod2}` }).status,
    0,
    'after the DEL the new sandbox gets it',
  );
  t.equal(cni(s, { command: 'DEL', config, containerId: 'taker1', netns: `/var/run/netns/${pod2}` }).status, 0);
  t.end();
});

t.test(
  "the per-device lock: a live holder blocks the device (and only it); a SIGKILLed holder's lock is free",
  { skip: rootOnly },
  async (t) => {
    const s = makeScene(t, { indexes: 2 });
    addMacvtap(s, 'mvtlock', s.indexes[0]);
    addMacvtap(s, 'mvtfree', s.indexes[1]);
    const config = conf(s, { deviceID: 'mvtlock' });
    // This test process holds the device's lock, as a concurrent invocation would.
    const state = openState(s);
    t.teardown(() => state.close());
    const held = state.lock('mvtlock', { holder: { program: 'test', verb: 'HOLD' } });
    const pending = cniAsync(s, { command: 'ADD', config });
    const other = await cniAsync(s, { command: 'ADD', config: conf(s, { deviceID: 'mvtfree' }), ifname: 'net2' });
    t.equal(other.status, 0, 'a different device proceeds in parallel');
    await new Promise((resolve) => setTimeout(resolve, 700));
    t.ok(ipLink(s.host, 'mvtlock'), 'the locked device was not touched while the lock is held');
    held.release();
    const r = await pending;
    t.equal(r.status, 0, `ADD proceeds once the lock is released (${r.stdout})`);
    t.ok(ipLink(s.pod, 'net1'), 'and attached the device');
    t.equal(cni(s, { command: 'DEL', config }).status, 0);

    // Held too long: code 11 naming the holder.
    const again = state.lock('mvtlock', { holder: { program: 'test', verb: 'HOLD', detail: 'for the timeout' } });
    const timedOut = cni(s, { command: 'ADD', config, env: { MACVTAP_CNI_LOCK_TIMEOUT_MS: '300' } });
    t.equal(timedOut.json?.code, 11, `code 11 after the bound (${timedOut.json?.msg})`);
    t.match(timedOut.json?.details, new RegExp(`held by pid ${process.pid} \\(test HOLD for the timeout\\)`), 'names the holder');
    again.release();

    // A holder that dies holding the lock (SIGKILL, no release): the kernel frees it; nothing to break, no wait.
    const child = spawn(
      process.execPath,
      [
        '-e',
        `
    const { NodeState } = require(${JSON.stringify(path.resolve(__dirname, '../../dist/lib/state/index.js'))});
    const { Logger } = require(${JSON.stringify(path.resolve(__dirname, '../../dist/lib/util/log.js'))});
    NodeState.open(${JSON.stringify(s.stateDir)}, { log: new Logger() }).lock('mvtlock', { holder: { program: 'doomed', verb: 'HOLD' } });
    process.stdout.write('locked'); setInterval(() => {}, 1000);`,
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    await new Promise<void>((resolve) => child.stdout.once('data', () => resolve()));
    child.kill('SIGKILL');
    await new Promise((resolve) => child.once('exit', resolve));
    t.ok(stateEntries(s, 'locks').includes('mvtlock.lock'), "the dead holder's file is still there");
    const taken = cni(s, { command: 'ADD', config, env: { MACVTAP_CNI_LOCK_TIMEOUT_MS: '2000' } });
    t.equal(taken.status, 0, `ADD after the holder died (${taken.stdout})`);
    t.same(stateEntries(s, 'locks'), [], 'the lock file is gone after the release');
    t.equal(cni(s, { command: 'DEL', config }).status, 0);
    t.equal(cni(s, { command: 'DEL', config: conf(s, { deviceID: 'mvtfree' }), ifname: 'net2' }).status, 0);
  },
);
