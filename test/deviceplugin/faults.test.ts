// Crashes of the device plugin (root only): the daemon SIGKILLed at each named step of an Allocate
// (MACVTAP_TEST_FAULT, a test-only hook), then started again on the same state directory. The request's devices
// must end either answered and kept (links up under their host names, records matching them, tap nodes pointing at
// them) or removed (no link, node, record, temp or lock file), all of them alike, never half; and a device's
// previous allocation, whose link the request had retired, must not leave a record naming a link that is gone.
import * as fs from 'node:fs';
import * as path from 'node:path';
import t, { Test } from 'tap';
import { hostLinkName } from '../../lib/naming';
import { ip, rootOnly } from '../support/kernel';
import type { DaemonProcess } from './helpers';
import {
  assertConsistent,
  faultCount,
  makeNode,
  Node,
  pluginLinks,
  records,
  RES,
  runDaemon,
  startServing,
  waitForFault,
  waitNoRetired,
} from './faults-harness';

// Daemon restarts on a loaded 2-vCPU machine: longer than .taprc's per-file default.
t.setTimeout(900_000);

const IDS = ['dataplaneMvp0', 'dataplaneMvp1'];

/**
 * The scene: dataplaneMvp0 was allocated before (its record and its link, whose pod went away), so the request
 * retires that link; dataplaneMvp1 is new.
 */
function previousAllocation(node: Node): { ifindex: number } {
  const ifindex = node.indexes[15];
  const linkName = hostLinkName(IDS[0]);
  ip(
    '-n',
    node.ns,
    'link',
    'add',
    'link',
    node.lower,
    'name',
    linkName,
    'index',
    String(ifindex),
    'up',
    'type',
    'macvtap',
    'mode',
    'bridge',
  );
  const dir = path.join(node.stateDir, 'allocations');
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  fs.chmodSync(node.stateDir, 0o700);
  const rec = {
    version: 1,
    deviceID: IDS[0],
    resource: RES,
    linkName,
    lowerDevice: node.lower,
    mode: 'bridge',
    ifindex,
    txqueuelen: 1000,
    allocatedAt: new Date().toISOString(),
  };
  fs.writeFileSync(path.join(dir, `${IDS[0]}.json`), `${JSON.stringify(rec)}\n`, { mode: 0o600 });
  return { ifindex };
}

/** Sends the request and waits for the daemon to die of the fault (the request then fails). */
async function killedDuring(node: Node, daemon: DaemonProcess, step: string): Promise<void> {
  const answer = node.kubelet.allocate(RES, [IDS]).then(
    () => 'answered',
    () => 'failed',
  );
  const exit = await daemon.exited;
  if (exit.signal !== 'SIGKILL') throw new Error(`not killed at ${step}: ${JSON.stringify(exit)} ${daemon.stderr}`);
  if (!daemon.stderr.includes(`kill at Allocate:${step}`)) throw new Error(`killed elsewhere: ${daemon.stderr}`);
  await answer;
}

type Outcome = 'kept' | 'removed' | 'untouched';

/** After the restart: the devices' outcome, checked against the kernel and the record files. */
function outcome(t: Test, node: Node, label: string, previous: { ifindex: number }): Outcome {
  const recorded = assertConsistent(t, node, label);
  const links = pluginLinks(node).map((l) => l.ifname);
  if (recorded.length === 0) {
    t.same(links, [], `${label}: no link of the request, and the retired previous link deleted`);
    return 'removed';
  }
  const recs = records(node);
  if (recorded.length === 1 && recs.get(IDS[0])?.ifindex === previous.ifindex) return 'untouched';
  t.same(recorded, IDS, `${label}: both devices recorded, not one`);
  t.same(links.sort(), IDS.map(hostLinkName).sort(), `${label}: both links, under their host names`);
  t.not(recs.get(IDS[0])?.ifindex, previous.ifindex, `${label}: the previous link was replaced`);
  return 'kept';
}

/** Starts the daemon again, checks the outcome, then proves the devices can be allocated again. */
async function restartAndCheck(t: Test, node: Node, label: string, previous: { ifindex: number }): Promise<Outcome> {
  const daemon = await startServing(t, node);
  await waitNoRetired(node);
  const result = outcome(t, node, `${label}, restarted`, previous);
  const again = await node.kubelet.allocate(RES, [IDS]);
  t.equal(again.containerResponses[0].devices.length, 2, `${label}: Allocate again answers both`);
  await waitNoRetired(node);
  t.same(assertConsistent(t, node, `${label}, allocated again`), IDS, `${label}: both recorded again`);
  daemon.child.kill('SIGTERM');
  await daemon.exited;
  return result;
}

const EXPECTED: [string, Outcome | 'either'][] = [
  ['locked', 'untouched'],
  ['retired', 'removed'],
  ['created', 'removed'],
  ['node', 'removed'],
  // The first record is durable; the second may or may not be: the request is committed only if both are.
  ['recorded', 'either'],
  ['committed', 'kept'],
  ['renamed', 'kept'],
  ['answering', 'kept'],
];

for (const [step, expected] of EXPECTED) {
  t.test(
    `killed at Allocate:${step}: ${expected === 'either' ? 'kept or removed, never half' : expected}`,
    { skip: rootOnly },
    async (t) => {
      const node = await makeNode(t);
      const previous = previousAllocation(node);
      const daemon = await startServing(t, node, { fault: `Allocate:${step}:kill` });
      await killedDuring(node, daemon, step);
      const result = await restartAndCheck(t, node, step, previous);
      if (expected === 'either') t.ok(result === 'kept' || result === 'removed', `ended ${result}`);
      else t.equal(result, expected, `ended ${result}`);
    },
  );
}

t.test('killed at the second device (its link made, the first one done): both removed', { skip: rootOnly }, async (t) => {
  const node = await makeNode(t);
  const previous = previousAllocation(node);
  const daemon = await startServing(t, node, { fault: 'Allocate:created:pause' });
  const answer = node.kubelet.allocate(RES, [IDS]).catch(() => 'failed');
  await waitForFault(daemon, 1);
  daemon.child.kill('SIGCONT');
  await waitForFault(daemon, 2);
  t.equal(pluginLinks(node).filter((l) => l.ifname.startsWith('mvn')).length, 2, 'both pending links exist when it dies');
  daemon.child.kill('SIGKILL');
  await daemon.exited;
  t.equal(await answer, 'failed', 'the kubelet got no answer');
  t.equal(await restartAndCheck(t, node, 'second created', previous), 'removed');
});

t.test('killed after the first rename of two: the restart finishes the second', { skip: rootOnly }, async (t) => {
  const node = await makeNode(t);
  const previous = previousAllocation(node);
  const daemon = runDaemon(t, node, { fault: 'Allocate:renamed:pause' });
  await node.kubelet.waitForDevices(RES, (l) => l.length === node.capacity, 60_000);
  const answer = node.kubelet.allocate(RES, [IDS]).catch(() => 'failed');
  await waitForFault(daemon, 1);
  const names = pluginLinks(node)
    .map((l) => l.ifname.slice(0, 3))
    .filter((p) => p !== 'mvr');
  t.same(names.sort(), ['mvn', 'mvt'], 'one link renamed, one still pending (and the previous link retired)');
  daemon.child.kill('SIGKILL');
  await daemon.exited;
  t.equal(faultCount(daemon), 1);
  t.equal(await answer, 'failed', 'the kubelet got no answer');
  t.equal(await restartAndCheck(t, node, 'first renamed', previous), 'kept');
});
