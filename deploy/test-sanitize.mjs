#!/usr/bin/env node
// @ts-check
/**
 * `npm run test:sanitize`: the netlink tests (test/netlink/*.test.ts) once against the addon built with
 * AddressSanitizer and UBSan (deploy/build-addon.mjs --sanitize, a separate directory). Fails if a test fails
 * or if any process wrote a sanitizer report (an error or a warning).
 *
 * Node itself is not instrumented, so the ASan runtime is preloaded (it must come first in the library list)
 * into the test processes and everything they spawn; MACVTAP_NATIVE_ADDON makes the loader take the sanitizer
 * build and nothing else. Reports go to files (log_path, one per pid), since tap captures a test's stderr and
 * a report from a spawned helper would otherwise be lost. Leak detection is off: Node's own start-up
 * allocations it never frees would be reported as leaks; the leak tests measure fds, threads and memory instead.
 *
 *   node deploy/test-sanitize.mjs [test files...]   (default: every test/netlink/*.test.ts)
 */
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { buildSanitizedAddon } from './build-addon.mjs';
import { ROOT } from './runtime.mjs';

function libasan() {
  const cxx = process.env.CXX || 'g++';
  const file = execFileSync(cxx, ['-print-file-name=libasan.so'], { encoding: 'utf8' }).trim();
  if (!path.isAbsolute(file) || !fs.existsSync(file)) throw new Error(`${cxx} does not know where libasan.so is (got ${file})`);
  return fs.realpathSync(file);
}

function main() {
  const addon = buildSanitizedAddon();
  const dir = path.join(ROOT, 'test', 'netlink');
  const files =
    process.argv.length > 2
      ? process.argv.slice(2)
      : fs
          .readdirSync(dir)
          .filter((f) => f.endsWith('.test.ts'))
          .map((f) => path.join('test', 'netlink', f));
  const logs = fs.mkdtempSync(path.join(os.tmpdir(), 'macvtap-sanitize-'));
  try {
    const env = {
      ...process.env,
      LD_PRELOAD: [libasan(), process.env.LD_PRELOAD].filter(Boolean).join(':'),
      ASAN_OPTIONS: `detect_leaks=0:halt_on_error=1:abort_on_error=0:log_path=${path.join(logs, 'asan')}`,
      UBSAN_OPTIONS: `halt_on_error=1:print_stacktrace=1:log_path=${path.join(logs, 'ubsan')}`,
      MACVTAP_NATIVE_ADDON: addon,
    };
    console.log(`test:sanitize: ${files.length} files against ${path.relative(ROOT, addon)}`);
    const tap = spawnSync(path.join(ROOT, 'node_modules', '.bin', 'tap'), ['--disable-coverage', ...files], {
      cwd: ROOT,
      env,
      stdio: 'inherit',
    });
    // Every file is a report: an error, or a warning such as ASan giving up its stack bookkeeping, after which
    // its reports are not to be trusted. The addon runs clean, so any of them fails the run.
    const reports = fs.readdirSync(logs).sort();
    for (const name of reports) process.stderr.write(`test:sanitize: report ${name}:\n${fs.readFileSync(path.join(logs, name), 'utf8')}\n`);
    const findings = reports.length;
    if (tap.error) throw tap.error;
    if (findings > 0) {
      console.error(`test:sanitize: FAILED: ${findings} sanitizer report(s)`);
      return 1;
    }
    if (tap.status !== 0) {
      console.error(`test:sanitize: FAILED: tap exited with ${tap.status ?? tap.signal}`);
      return 1;
    }
    console.log('test:sanitize: clean (no sanitizer report, every test passed)');
    return 0;
  } finally {
    fs.rmSync(logs, { recursive: true, force: true });
  }
}

try {
  process.exitCode = main();
} catch (err) {
  console.error(`test:sanitize: ${err instanceof Error ? err.message : String(err)}`);
  process.exitCode = 1;
}
