#!/usr/bin/env node
// @ts-check
/**
 * `npm run lint:native`: clang-tidy over native/*.cc with the checked-in .clang-tidy profile (its warnings are
 * errors), compiled as binding.gyp compiles the addon: C++17, its defines, node-addon-api's headers and the
 * pinned Node's headers (the node-linux-<arch> package, as deploy/build-addon.mjs uses). Two files at a time.
 *
 *   node deploy/lint-native.mjs [files...]   (default: every native/*.cc; headers are checked through them)
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import { createRequire } from 'node:module';
import * as path from 'node:path';
import { ROOT, hostRuntimeDir } from './runtime.mjs';

const require = createRequire(import.meta.url);

/** The compiler arguments binding.gyp gives the addon's sources (its defines), plus the header directories. */
function compilerArgs() {
  const gyp = /** @type {{ targets: { defines: string[] }[] }} */ (JSON.parse(fs.readFileSync(path.join(ROOT, 'binding.gyp'), 'utf8')));
  const addonApi = path.resolve(ROOT, /** @type {{ include_dir: string }} */ (require('node-addon-api')).include_dir);
  return [
    '-std=c++17',
    '-x',
    'c++',
    `-I${path.join(hostRuntimeDir(), 'include', 'node')}`,
    `-I${addonApi}`,
    ...gyp.targets[0].defines.map((d) => `-D${d}`),
  ];
}

/**
 * Runs clang-tidy on one file; resolves to its output and whether it was clean.
 * @param {string} file @param {string[]} args @returns {Promise<{ file: string, ok: boolean, out: string }>}
 */
function tidy(file, args) {
  return new Promise((resolve) => {
    const child = spawn('clang-tidy', ['--quiet', file, '--', ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    child.on('error', (err) => resolve({ file, ok: false, out: `cannot run clang-tidy: ${err.message}\n` }));
    child.on('close', (code) => resolve({ file, ok: code === 0, out }));
  });
}

async function main() {
  const files =
    process.argv.length > 2
      ? process.argv.slice(2)
      : fs
          .readdirSync(path.join(ROOT, 'native'))
          .filter((f) => f.endsWith('.cc'))
          .sort()
          .map((f) => path.join('native', f));
  const args = compilerArgs();
  const queue = [...files];
  /** @type {{ file: string, ok: boolean, out: string }[]} */
  const results = [];
  const worker = async () => {
    for (let file = queue.shift(); file !== undefined; file = queue.shift()) results.push(await tidy(file, args));
  };
  await Promise.all([worker(), worker()]);
  const failed = results.filter((r) => !r.ok);
  // clang-tidy prints "N warnings generated" for system headers it then suppresses: show only real findings.
  for (const r of failed) process.stderr.write(r.out.replace(/^\d+ warnings? (and \d+ errors? )?generated\.\n/gm, ''));
  console.log(
    `lint:native: ${files.length} files, ${failed.length ? `${failed.length} with findings: ${failed.map((r) => r.file).join(', ')}` : 'clean'}`,
  );
  return failed.length ? 1 : 0;
}

main().then(
  (code) => (process.exitCode = code),
  (err) => {
    console.error(`lint:native: ${err instanceof Error ? err.message : String(err)}`);
    process.exitCode = 1;
  },
);
