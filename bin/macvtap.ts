#!/usr/bin/env node
/**
 * The `macvtap` CNI plugin executable: CNI_* environment and network configuration on stdin in, result or
 * error JSON on stdout, logs on stderr (or the configured logFile). Loads only the CNI path (no gRPC, no
 * device plugin): its start-up time is the pod's network set-up latency.
 */
import { fstatSync, readFileSync, writeSync, type Stats } from 'node:fs';
import { fixedHashSeed, MAX_FIXED_SEED_STRINGS, mayHaveMoreStrings, rerunWithRandomSeed } from '../lib/cni/hash-seed';
import type { PluginOutput } from '../lib/cni/plugin';

/** Whole stdin; empty when stdin is a terminal or closed (nothing to wait for). */
function readStdin(): string {
  let st: Stats;
  try {
    st = fstatSync(0);
  } catch {
    return '';
  }
  if (st.isCharacterDevice() && st.rdev !== 0x103 /* /dev/null */) return '';
  try {
    return readFileSync(0, 'utf8');
  } catch {
    return '';
  }
}

/**
 * Stdin, once this process may parse it: under the snapshot's known hash seed only a bounded number of strings
 * (lib/cni/hash-seed.ts); otherwise the call is run again with a random seed and this process ends with its
 * status. Nothing has been changed before stdin is read (runPlugin reads it first), so the re-run is the call.
 */
function checkedStdin(): string {
  const text = readStdin();
  if (fixedHashSeed() && mayHaveMoreStrings(text, MAX_FIXED_SEED_STRINGS)) {
    if (process.env.MACVTAP_SEA_DEBUG === '1') process.stderr.write('re-run with a random hash seed\n');
    process.exit(rerunWithRandomSeed(text));
  }
  return text;
}

function writeAll(fd: number, text: string): void {
  const data = Buffer.from(text);
  let offset = 0;
  while (offset < data.length) {
    try {
      offset += writeSync(fd, data, offset);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EAGAIN') return;
    }
  }
}

function fatal(err: unknown): void {
  const msg = err instanceof Error ? err.message : String(err);
  writeAll(1, `${JSON.stringify({ cniVersion: '1.1.0', code: 199, msg: `internal error: ${msg}`, details: '' }, null, 2)}\n`);
  writeAll(2, `macvtap[${process.pid}]: internal error: ${msg}\n`);
  process.exit(1);
}

process.on('uncaughtException', fatal);
process.on('unhandledRejection', fatal);

/**
 * The runtime asks VERSION before it first uses a plugin: it is answered from lib/cni/version alone, without
 * loading the rest of the plugin (config, state, netlink). Anything unusual (stdin that is not a JSON object) goes
 * the full way, which gives the same answer for the same input (test/perf/version.test.ts).
 */
function run(): Promise<PluginOutput> {
  let stdin: string | undefined;
  const readOnce = (): string => (stdin ??= checkedStdin());
  /* eslint-disable @typescript-eslint/no-require-imports */
  if (process.env.CNI_COMMAND === 'VERSION') {
    let parsed: unknown;
    try {
      parsed = JSON.parse(readOnce());
    } catch {
      parsed = undefined;
    }
    if (parsed !== null && typeof parsed === 'object') {
      const { versionResult } = require('../lib/cni/version') as typeof import('../lib/cni/version');
      const answer = versionResult((parsed as { cniVersion?: unknown }).cniVersion);
      return Promise.resolve({ stdout: `${JSON.stringify(answer, null, 2)}\n`, exitCode: 0 });
    }
  }
  const { runPlugin } = require('../lib/cni/plugin') as typeof import('../lib/cni/plugin');
  /* eslint-enable @typescript-eslint/no-require-imports */
  return runPlugin(process.env, readOnce);
}

run().then(({ stdout, exitCode }) => {
  if (stdout) writeAll(1, stdout);
  process.exitCode = exitCode;
}, fatal);

// Once the loop is empty the answer is written (writeAll is synchronous) and nothing is pending, so leave
// through process.exit: it skips tearing down the V8 heap and the environment that a natural exit does
// (about 1-2 ms of a 25 ms call in bench:runtime). 'exit' listeners and process.exitCode still apply.
process.once('beforeExit', () => process.exit());
