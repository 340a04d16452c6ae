// The state directory failing under the CNI plugin (root only), on file systems mounted and unmounted here: a full
// tmpfs, a read-only one, and one that vanishes (lazy unmount) with a device attached or mid-ADD. Failures are code
// 5 naming the path and errno, at once, with the host and the previous records unchanged; nothing left behind
// stalls a later ADD; the device is never lost.
import { execFileSync, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import t from 'tap';
import { rootOnly } from '../support/kernel';
import { fill, mountTmpfs, tempDir, unmount } from '../state/helpers';
import { addMacvtap, cni, conf, ipLink, linkOf, makeScene, PLUGIN, Scene, world, writeAllocation } from './harness';

// Many real processes and kernel moves: longer than .taprc's per-file default on a loaded machine.
t.setTimeout(900_000);

/** A scene whose state directory is `<tmpfs>/state`; returns the mount point. */
function tmpfsState(t: Parameters<typeof tempDir>[0], s: Scene, options: string): string {
  const mnt = path.join(tempDir(t, 'macvtap-cni-mnt-'), 'fs');
  mountTmpfs(t, mnt, options);
  s.stateDir = path.join(mnt, 'state');
  return mnt;
}

function elapsed(start: number): string {
  return `${(performance.now() - start).toFixed(0)} ms`;
}

t.test('a full state file system: ADD fails with code 5 (ENOSPC) at once, changes nothing, and recovers', { skip: rootOnly }, (t) => {
  const s = makeScene(t, { indexes: 1 });
  const mnt = tmpfsState(t, s, 'size=128k');
  const idx = s.indexes[0];
  const dev = writeAllocation(s, { deviceID: 'fullMvp0', ifindex: idx });
  addMacvtap(s, dev.linkName, idx);
  const config = conf(s, { deviceID: 'fullMvp0', mtu: 1400 });
  fill(mnt);
  const before = world(s, [idx]);
  const allocationBefore = fs.readFileSync(path.join(s.stateDir, 'allocations', 'fullMvp0.json'), 'utf8');
  const start = performance.now();
  const r = cni(s, { command: 'ADD', config });
  const took = elapsed(start);
  t.equal(r.json?.code, 5, `code 5 (${r.json?.msg}) in ${took}`);
  t.match(r.json?.msg, new RegExp(`${s.stateDir}/attachments/fullMvp0\\+c0ffee01\\+net1\\.json.*ENOSPC`), 'names the path and errno');
  t.same(world(s, [idx]), before, 'host and pod unchanged');
  t.equal(
    fs.readFileSync(path.join(s.stateDir, 'allocations', 'fullMvp0.json'), 'utf8'),
    allocationBefore,
    'the allocation record is intact',
  );
  t.same(fs.readdirSync(path.join(s.stateDir, 'attachments')), [], 'no record or temp file left');
  // A second try while still full fails the same way, without waiting on anything the first one left.
  const again = performance.now();
  t.equal(cni(s, { command: 'ADD', config }).json?.code, 5, `still code 5, in ${elapsed(again)} (nothing stalls)`);
  fs.rmSync(path.join(mnt, 'filler'));
  const ok = cni(s, { command: 'ADD', config });
  t.equal(ok.status, 0, `with space again ADD succeeds (${ok.json?.msg ?? 'ok'})`);
  t.equal(cni(s, { command: 'DEL', config }).status, 0, 'DEL');
  t.equal(ipLink(s.host, dev.linkName)?.ifindex, idx, 'back on the host');
  t.end();
});

t.test('a read-only state file system: every verb that needs it answers code 5 (EROFS); records kept', { skip: rootOnly }, (t) => {
  const s = makeScene(t, { indexes: 1 });
  const mnt = tmpfsState(t, s, 'size=1m');
  const idx = s.indexes[0];
  const dev = writeAllocation(s, { deviceID: 'roMvp0', ifindex: idx });
  addMacvtap(s, dev.linkName, idx);
  const config = conf(s, { deviceID: 'roMvp0', mtu: 1400 });
  t.equal(cni(s, { command: 'ADD', config }).status, 0, 'ADD while writable');
  execFileSync('mount', ['-o', 'remount,ro', mnt]);
  const before = world(s, [idx]);
  for (const command of ['ADD', 'DEL']) {
    const start = performance.now();
    const r = cni(s, { command, config, containerId: command === 'ADD' ? 'other01' : 'c0ffee01' });
    t.equal(r.json?.code, 5, `${command}: code 5 (${r.json?.msg}) in ${elapsed(start)}`);
    t.match(r.json?.msg, /EROFS/, `${command}: names EROFS`);
    t.match(r.json?.msg, new RegExp(s.stateDir), `${command}: names the path`);
    t.same(world(s, [idx]), before, `${command}: nothing moved`);
  }
  const status = cni(s, { command: 'STATUS', config, netns: null, env: { CNI_CONTAINERID: undefined, CNI_IFNAME: undefined } });
  t.equal(status.json?.code, 50, `STATUS: not ready (${status.json?.details})`);
  t.ok(fs.existsSync(path.join(s.stateDir, 'attachments', 'roMvp0+c0ffee01+net1.json')), 'the attachment record is intact');
  execFileSync('mount', ['-o', 'remount,rw', mnt]);
  t.equal(cni(s, { command: 'DEL', config }).status, 0, 'writable again: DEL finishes');
  t.equal(ipLink(s.host, dev.linkName)?.ifindex, idx, 'back on the host');
  t.end();
});

t.test(
  'the state file system vanishes (lazy unmount), with a device attached and in the middle of an ADD',
  { skip: rootOnly },
  async (t) => {
    const s = makeScene(t, { indexes: 2 });
    const mnt = tmpfsState(t, s, 'size=1m');
    const [a, b] = s.indexes;
    const devA = writeAllocation(s, { deviceID: 'goneMvp0', ifindex: a });
    const devB = writeAllocation(s, { deviceID: 'goneMvp1', ifindex: b });
    addMacvtap(s, devA.linkName, a, 'bridge', ['address', '02:00:00:00:0c:01']);
    addMacvtap(s, devB.linkName, b, 'bridge', ['address', '02:00:00:00:0c:02']);
    const configA = conf(s, { deviceID: 'goneMvp0', mac: '02:00:00:00:0d:01' });
    const configB = conf(s, { deviceID: 'goneMvp1', mac: '02:00:00:00:0d:02' });
    t.equal(cni(s, { command: 'ADD', config: configA }).status, 0, 'A attached');

    // B's ADD pauses right after writing its record; the file system vanishes under it; it goes on.
    const child = spawn('ip', ['netns', 'exec', s.host, process.execPath, PLUGIN], {
      env: {
        PATH: process.env.PATH,
        CNI_COMMAND: 'ADD',
        CNI_CONTAINERID: 'c0ffee02',
        CNI_IFNAME: 'net2',
        CNI_NETNS: s.netns,
        CNI_PATH: '/opt/cni/bin',
        MACVTAP_CNI_STATE_DIR: s.stateDir,
        MACVTAP_TEST_FAULT: 'ADD:recorded:pause',
      },
    });
    t.teardown(() => child.kill('SIGKILL'));
    child.stdin.end(JSON.stringify(configB));
    let stderr = '';
    await new Promise<void>((resolve) =>
      child.stderr.setEncoding('utf8').on('data', (d: string) => {
        stderr += d;
        if (stderr.includes('pause at ADD:recorded')) resolve();
      }),
    );
    unmount(mnt); // busy (B holds fds in it): detached lazily
    t.notOk(fs.existsSync(s.stateDir), 'the state directory is gone from the path');
    const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
    child.kill('SIGCONT');
    t.equal(await exited, 0, 'the paused ADD completes on the detached file system');
    t.equal(linkOf(s.pod, 'net2').ifindex, b, 'B is attached');

    // Later invocations find an empty state directory (recreated): no records for A or B. DEL still returns each
    // device to the host as the device plugin names it, reset; neither is lost or duplicated.
    for (const [config, dev, ifname, containerId] of [
      [configA, devA, 'net1', 'c0ffee01'],
      [configB, devB, 'net2', 'c0ffee02'],
    ] as const) {
      const r = cni(s, { command: 'DEL', config, ifname, containerId });
      t.equal(r.status, 0, `DEL ${dev.deviceID} without its record (${r.json?.msg ?? 'ok'})`);
      const host = ipLink(s.host, dev.linkName);
      t.equal(host?.ifindex, dev.ifindex, `${dev.deviceID}: back on the host as ${dev.linkName}`);
      t.not(host?.address, config.mac, `${dev.deviceID}: not with the pod's MAC`);
      t.notOk(ipLink(s.pod, ifname), `${dev.deviceID}: gone from the pod`);
    }
    // The device plugin's records went with the file system too; the links are found by their names.
    const again = cni(s, { command: 'ADD', config: configA });
    t.equal(again.status, 0, `ADD on the fresh state directory (${again.json?.msg ?? 'ok'})`);
    t.equal(cni(s, { command: 'DEL', config: configA }).status, 0);
  },
);
