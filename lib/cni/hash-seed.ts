/**
 * The CNI executable starts with the hash seed of Node's start-up snapshot (deploy/build-host.mjs,
 * `--no-rehash-snapshot`): a random seed costs V8 14 about 3 ms per process. That seed is the same in every
 * copy of the runtime, so someone who writes this process's stdin (a tenant, through a
 * NetworkAttachmentDefinition) could pick JSON keys and short strings that collide in V8's string table and
 * dictionaries and make parsing quadratic. What this process parses under a known seed is therefore bounded:
 * at most MAX_FIXED_SEED_STRINGS strings, which costs at most ~0.5 M hash probes even if all of them collide
 * (milliseconds). Any stdin with more is handed to a fresh run of the same executable with a random seed (a
 * valid GC with hundreds of attachments, or a hostile config), which then does everything as usual.
 *
 * Run as `node dist/bin/macvtap.js` (tests, the demo) the process has a random seed and nothing here applies.
 */

/** More strings than any ADD/DEL/CHECK of a real configuration has (those have tens); a GC may have more. */
export const MAX_FIXED_SEED_STRINGS = 1024;

/** Whether V8 kept its snapshot's hash seed: the last of the rehash flags this process started with says so. */
export function fixedHashSeed(execArgv: readonly string[] = process.execArgv): boolean {
  for (let i = execArgv.length - 1; i >= 0; i--) {
    if (execArgv[i] === '--no-rehash-snapshot') return true;
    if (execArgv[i] === '--rehash-snapshot') return false;
  }
  return false;
}

/**
 * An upper bound of the JSON strings (keys and values) in `text`: half its double quotes. Escaped quotes only
 * raise the count, so the bound errs towards the random seed. Stops counting past `max`.
 */
export function mayHaveMoreStrings(text: string, max: number): boolean {
  let quotes = 0;
  for (let i = text.indexOf('"'); i !== -1; i = text.indexOf('"', i + 1)) {
    quotes += 1;
    if (quotes > 2 * max) return true;
  }
  return false;
}

/**
 * Runs this executable again on `stdin` with a random hash seed, its stdout and stderr being this process's;
 * returns its exit status. Only the single executable takes `--node-options` (its `execArgvExtension`).
 */
export function rerunWithRandomSeed(stdin: string): number {
  // Loaded here only: child_process brings streams and more, which no ordinary call needs.
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { spawnSync } = require('node:child_process') as typeof import('node:child_process');
  // --no-warnings: the re-run's flags are not those the embedded code caches were made with, which V8 only
  // notices (compiling lazily instead); Node would print a warning for it into the runtime's log.
  const r = spawnSync(process.execPath, ['--node-options=--rehash-snapshot --no-warnings'], {
    input: stdin,
    stdio: ['pipe', 'inherit', 'inherit'],
    env: process.env,
  });
  if (r.error) throw new Error(`cannot re-run ${process.execPath} with a random hash seed: ${r.error.message}`);
  return r.status ?? 1;
}
