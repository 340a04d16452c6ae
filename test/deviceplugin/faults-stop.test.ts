// SIGTERM during a 50-device Allocate (root only). The daemon stops as a DaemonSet rollout stops it: it refuses new
// requests, lets the one in flight finish and be answered for a bounded time, and rolls it back when that time runs
// out; then it exits 0. Either way the request is all or nothing: 50 devices answered and kept, or none left (no
// link, tap node, record or lock file). The daemon is paused (SIGSTOP, MACVTAP_TEST_FAULT) after making each
// device's link, so the signal lands at a known point: after the 11th device.
import t, { Test } from 'tap';
import { rootOnly } from '../support/kernel';
import { sleep } from './helpers';
import type { DaemonProcess } from './helpers';
import { assertConsistent, faultCount, makeNode, Node, nodeDev, pluginLinks, RES, startServing, waitForFault } from './faults-harness';

// Daemon starts and 50-device requests on a loaded 2-vCPU machine: longer than .taprc's per-file default.
t.setTimeout(900_000);

const COUNT = 50;
const IDS = Array.from({ length: COUNT }, (_, i) => `dataplaneMvp${i}`);
/** The daemon's bound on the wait for a request in flight (lib/deviceplugin/allocator.ts STOP_WAIT_MS). */
const STOP_WAIT_MS = 2000;

type Answer = { devices: number } | { error: string };

function request(node: Node): Promise<Answer> {
  return node.kubelet.allocate(RES, [IDS]).then(
    (r) => ({ devices: r.containerResponses[0].devices.length }),
    (err: Error) => ({ error: err.message }),
  );
}

/**
 * Resumes the daemon at every pause until the answer arrives; at the `at`-th pause it sends SIGTERM first, and
 * `hold(n)` may keep it stopped at pause `n` a while before resuming it.
 */
async function drive(daemon: DaemonProcess, answer: Promise<Answer>, at: number, hold: (n: number) => number): Promise<Answer> {
  let settled: Answer | undefined;
  void answer.then((a) => (settled = a));
  for (let n = 1; settled === undefined && daemon.child.exitCode === null; n++) {
    try {
      await waitForFault(daemon, n, 60_000);
    } catch {
      break; // no more pauses: the request ended (or the daemon exited)
    }
    if (n === at) daemon.child.kill('SIGTERM');
    const ms = hold(n);
    if (ms) await sleep(ms);
    daemon.child.kill('SIGCONT');
  }
  return answer;
}

/** The daemon's exit, or a failure naming its last logs when it does not exit within a bound. */
async function exitOf(daemon: DaemonProcess): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      const logs = JSON.stringify(daemon.logs.slice(-8));
      reject(new Error(`the daemon did not exit; stderr: ${daemon.stderr.slice(-500)}; logs: ${logs}`));
    }, 30_000);
  });
  try {
    return await Promise.race([daemon.exited, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

function ended(t: Test, node: Node, label: string): void {
  t.same(
    pluginLinks(node).map((l) => l.ifname),
    [],
    `${label}: no link of the request left`,
  );
  t.same(assertConsistent(t, node, label), [], `${label}: no record left`);
  t.same(
    node.indexes.filter((i) => nodeDev(`/dev/tap${i}`) !== undefined),
    [],
    `${label}: no tap node left`,
  );
}

t.test('SIGTERM in the middle: stop waits, the kubelet gets all 50 devices, all are kept', { skip: rootOnly }, async (t) => {
  const node = await makeNode(t, { indexes: 64, capacity: COUNT });
  const daemon = await startServing(t, node, { fault: 'Allocate:created:pause' });
  const answer = await drive(daemon, request(node), 11, () => 0);
  t.same(answer, { devices: COUNT }, 'answered with every device');
  if (!('devices' in answer)) t.comment(JSON.stringify(daemon.logs.slice(-6)));
  t.same(await exitOf(daemon), { code: 0, signal: null }, 'then the daemon exits 0');
  t.ok(faultCount(daemon) >= COUNT, 'the request went on after SIGTERM');
  t.equal(assertConsistent(t, node, 'after the stop').length, COUNT, 'every device kept and recorded');
  t.match(daemon.logs.find((l) => l.msg === 'stopping')?.signal, 'SIGTERM');
});

t.test('SIGTERM and the request does not finish in time: rolled back, nothing left', { skip: rootOnly }, async (t) => {
  const node = await makeNode(t, { indexes: 64, capacity: COUNT });
  const daemon = await startServing(t, node, { fault: 'Allocate:created:pause' });
  // Kept stopped at the 12th device for longer than the daemon waits: its timer has expired when it resumes.
  const answer = await drive(daemon, request(node), 11, (n) => (n === 12 ? STOP_WAIT_MS + 500 : 0));
  t.match(answer, { error: /the device plugin is stopping: the request was rolled back/ }, 'the kubelet is told');
  t.same(await exitOf(daemon), { code: 0, signal: null }, 'the daemon exits 0');
  t.ok(faultCount(daemon) < COUNT, `it stopped making devices (${faultCount(daemon)} made)`);
  t.ok(
    daemon.logs.some((l) => l.msg === 'stopping: rolling back the Allocate in flight'),
    'it says it rolled back',
  );
  ended(t, node, 'after the rollback');
});

t.test('SIGTERM at a random moment of a 50-device Allocate: all or nothing', { skip: rootOnly }, async (t) => {
  for (let round = 0; round < 3; round++) {
    const node = await makeNode(t, { indexes: 64, capacity: COUNT });
    const daemon = await startServing(t, node);
    const answer = request(node);
    await sleep(20 + Math.floor(Math.random() * 150));
    daemon.child.kill('SIGTERM');
    const a = await answer;
    t.same(await exitOf(daemon), { code: 0, signal: null }, `round ${round}: the daemon exits 0`);
    if ('devices' in a) {
      t.equal(a.devices, COUNT, `round ${round}: answered with every device`);
      t.equal(assertConsistent(t, node, `round ${round}`).length, COUNT, `round ${round}: all kept`);
    } else {
      t.comment(`round ${round}: ${a.error}`);
      ended(t, node, `round ${round}`);
    }
  }
});
