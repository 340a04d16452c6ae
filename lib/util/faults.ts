/**
 * Test-only fault hooks, read from the environment once and free when unset.
 *
 * `MACVTAP_TEST_FAULT=<verb>:<step>:<action>[,...]` makes a program stop at a named step of a verb, so a test can
 * prove that a process killed there leaves nothing lost or duplicated:
 *   - `kill`:  the process SIGKILLs itself at the step (as the OOM killer or a node crash would);
 *   - `pause`: it SIGSTOPs itself, so the test can change the world (unmount the state file system, start a
 *     racing process) and then SIGCONT or SIGKILL it.
 * Before either it writes one line to stderr, `macvtap-fault: <action> at <verb>:<step> pid <pid>`, which the
 * test waits for. Verbs are the CNI's (`ADD`, `DEL`, `CHECK`, `GC`, `STATUS`) and the device plugin's (`Allocate`,
 * and `Start` for its start-up).
 *
 * `MACVTAP_TEST_NO_FSYNC=1` skips the state directory's fsyncs, so a benchmark can measure what durability costs
 * against a baseline in the same run. Nothing outside tests and benchmarks sets either variable.
 */
import { writeSync } from 'node:fs';

export type FaultAction = 'kill' | 'pause';

let faults: Map<string, FaultAction> | undefined | null;

function parse(spec: string | undefined): Map<string, FaultAction> | null {
  if (!spec) return null;
  const out = new Map<string, FaultAction>();
  for (const part of spec.split(',')) {
    const m = /^([A-Za-z]+):([A-Za-z0-9_-]+):(kill|pause)$/.exec(part.trim());
    if (m) out.set(`${m[1]}:${m[2]}`, m[3] as FaultAction);
  }
  return out.size ? out : null;
}

/** Marks step `step` of `verb`: does nothing unless MACVTAP_TEST_FAULT names it. */
export function faultPoint(verb: string, step: string): void {
  if (faults === undefined) faults = parse(process.env.MACVTAP_TEST_FAULT);
  if (faults === null) return;
  const action = faults.get(`${verb}:${step}`);
  if (!action) return;
  try {
    writeSync(2, `macvtap-fault: ${action} at ${verb}:${step} pid ${process.pid}\n`);
  } catch {
    /* stderr closed: act anyway */
  }
  process.kill(process.pid, action === 'kill' ? 'SIGKILL' : 'SIGSTOP');
}

/**
 * True when a benchmark asked to measure without fsync (MACVTAP_TEST_NO_FSYNC=1). Read at each call (a lookup
 * in the environment block, far below an fsync's cost), so a benchmark can alternate in one process.
 */
export function testSkipsFsync(): boolean {
  return process.env.MACVTAP_TEST_NO_FSYNC === '1';
}
