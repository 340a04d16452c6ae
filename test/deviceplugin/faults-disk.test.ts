// The device plugin's state directory failing (root only), on a small tmpfs mounted here (unmounted at teardown):
// read-only or full at start, the daemon exits 1 naming the path and EROFS/ENOSPC before it registers (it would
// fail every Allocate); read-only or full mid-run, Allocate fails with INTERNAL naming the path and errno, leaves
// no link, node or record of the request, keeps the previous records, and works again once the disk does.
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import t, { Test } from 'tap';
import { hostLinkName } from '../../lib/naming';
import { ipLink, rootOnly } from '../support/kernel';
import { fill, mountTmpfs } from '../state/helpers';
import { tempDir } from './helpers';
import { assertConsistent, makeNode, Node, nodeDev, pluginLinks, records, RES, runDaemon, startServing } from './faults-harness';

// Daemon starts on a loaded 2-vCPU machine: longer than .taprc's per-file default.
t.setTimeout(900_000);

/** A node whose state directory is `<tmpfs>/state`; returns it and the mount point. */
async function onTmpfs(t: Test, options: string): Promise<{ node: Node; mnt: string }> {
  const mnt = path.join(tempDir(t, 'mvtdp-mnt-'), 'fs');
  mountTmpfs(t, mnt, options);
  const node = await makeNode(t, { stateDir: path.join(mnt, 'state') });
  return { node, mnt };
}

async function refusesToStart(t: Test, node: Node, errno: string): Promise<void> {
  const start = performance.now();
  const daemon = runDaemon(t, node);
  const exit = await daemon.exited;
  const ms = Math.round(performance.now() - start);
  t.same(exit, { code: 1, signal: null }, `exits 1 (in ${ms} ms)`);
  const line = daemon.logs.find((l) => l.msg === 'cannot start');
  t.match(
    line?.err,
    new RegExp(`state directory ${node.stateDir} cannot take allocation records \\(${errno}\\)`),
    `names the path and ${errno}`,
  );
  t.equal(node.kubelet.registrations.length, 0, 'never registered with the kubelet');
  t.notOk(
    fs.readdirSync(node.pluginDir).some((f) => f.startsWith('macvtap.network.kubevirt.io')),
    'and serves no socket',
  );
}

t.test('a read-only state directory at start: exit 1 naming EROFS, nothing registered', { skip: rootOnly }, async (t) => {
  const { node, mnt } = await onTmpfs(t, 'size=1m');
  fs.mkdirSync(node.stateDir, { mode: 0o700 });
  execFileSync('mount', ['-o', 'remount,ro', mnt]);
  await refusesToStart(t, node, 'EROFS');
});

t.test('a full state directory at start: exit 1 naming ENOSPC, nothing registered', { skip: rootOnly }, async (t) => {
  const { node, mnt } = await onTmpfs(t, 'size=64k');
  fs.mkdirSync(node.stateDir, { mode: 0o700 });
  fill(mnt);
  await refusesToStart(t, node, 'ENOSPC');
});

/** Allocate of two more devices fails naming the errno and leaves the node as it was. */
async function failsCleanly(t: Test, node: Node, errno: string, kept: string): Promise<void> {
  const before = records(node);
  const start = performance.now();
  const err = await node.kubelet.allocate(RES, [['dataplaneMvp1', 'dataplaneMvp2']]).then(
    () => undefined,
    (e: { code: number; details: string }) => e,
  );
  const ms = Math.round(performance.now() - start);
  t.equal(err?.code, 13, `INTERNAL (in ${ms} ms)`);
  t.match(err?.details, new RegExp(`${node.stateDir}/(locks|allocations)/.*${errno}`), `names the path and ${errno}: ${err?.details}`);
  t.same(
    pluginLinks(node).map((l) => l.ifname),
    [hostLinkName(kept)],
    'no link of the request left; the earlier device kept',
  );
  t.same(records(node), before, 'the earlier record intact, no new one');
  t.same(node.indexes.filter((i) => nodeDev(`/dev/tap${i}`) !== undefined).length, 1, "only the earlier device's tap node");
}

async function recovers(t: Test, node: Node): Promise<void> {
  const ok = await node.kubelet.allocate(RES, [['dataplaneMvp1', 'dataplaneMvp2']]);
  t.equal(ok.containerResponses[0].devices.length, 2, 'with the disk back, the same Allocate succeeds');
  t.same(assertConsistent(t, node, 'afterwards'), ['dataplaneMvp0', 'dataplaneMvp1', 'dataplaneMvp2']);
}

t.test('the state directory turns read-only mid-run: Allocate fails naming EROFS, changes nothing', { skip: rootOnly }, async (t) => {
  const { node, mnt } = await onTmpfs(t, 'size=1m');
  const daemon = await startServing(t, node);
  await node.kubelet.allocate(RES, [['dataplaneMvp0']]);
  execFileSync('mount', ['-o', 'remount,ro', mnt]);
  await failsCleanly(t, node, 'EROFS', 'dataplaneMvp0');
  execFileSync('mount', ['-o', 'remount,rw', mnt]);
  await recovers(t, node);
  daemon.child.kill('SIGTERM');
  await daemon.exited;
  t.ok(ipLink(node.ns, hostLinkName('dataplaneMvp0')), 'stopping keeps the answered devices');
});

t.test('the state directory fills up mid-run: Allocate fails naming ENOSPC, changes nothing', { skip: rootOnly }, async (t) => {
  const { node, mnt } = await onTmpfs(t, 'size=128k');
  const daemon = await startServing(t, node);
  await node.kubelet.allocate(RES, [['dataplaneMvp0']]);
  fill(mnt);
  await failsCleanly(t, node, 'ENOSPC', 'dataplaneMvp0');
  fs.rmSync(path.join(mnt, 'filler'));
  await recovers(t, node);
  daemon.child.kill('SIGTERM');
  await daemon.exited;
});
