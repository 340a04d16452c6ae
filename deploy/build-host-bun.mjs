#!/usr/bin/env node
// @ts-check
/**
 * Builds dist/host-bun/macvtap: the CNI plugin as a Bun compiled executable. An alternative runtime that was
 * measured against the shipped Node single executable (README, CNI "Speed"); it is NOT shipped, and the
 * library, the test suite and dist/host/macvtap stay on Node.
 *
 *   node deploy/build-host-bun.mjs        (npm run build:host:bun)
 *
 * Bun is the npm registry's @oven/bun-linux-x64, pinned as an optional dependency of deploy/bun (a plain
 * package holding the binary, no install script), so `npm ci` brings it on x64 and nothing is downloaded here. Without it this script says so
 * and exits 2.
 *
 * What goes in: a small generated entry that installs the addon loader (lib/netlink's setNativeLoader) and
 * then requires bin/macvtap.ts, which `bun build --compile` transpiles and bundles itself (from the sources,
 * like build-host.mjs's default --from=src: always current, no tsc needed). The stripped prebuild
 * (prebuilds/linux-x64/macvtap_native.node, refreshed by build-addon) is embedded in the executable as a plain
 * file (`with { type: 'file' }`) and loaded by loadAddon below, on the first netlink call (so
 * CNI_COMMAND=VERSION never loads it). Embedded rather than next to the executable because the CNI is
 * installed as one file into /opt/cni/bin, like the Node build; and lib/netlink/native.ts's own search
 * (relative to __dirname, which is Bun's virtual /$bunfs/root here) could not find a file next to it anyway.
 *
 * Bun options: --bytecode (precompiled JavaScriptCore bytecode, the counterpart of the Node build's eager code
 * cache), --minify, and no autoloading of .env or bunfig.toml from the working directory: the container
 * runtime's working directory must not be able to change the plugin's environment or configuration.
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildAddon } from './build-addon.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, '..');
const BUN = path.join(ROOT, 'node_modules', '@oven', 'bun-linux-x64', 'bin', 'bun');
const OUT = path.join(ROOT, 'dist', 'host-bun', 'macvtap');
const WORK = path.join(ROOT, 'node_modules', '.cache', 'macvtap-cni', 'bun');

/**
 * The executable's addon loader (its source is copied into the generated entry, which imports fs, os and path).
 * Bun's own handling of a required .node file writes it to $TMPDIR/.bun-<n>-<hash>.node and leaves it there
 * for the next start: a fixed, guessable name in a shared directory that root then dlopens. So, as
 * deploy/sea/addon.js does for the Node build: a fresh 0700 directory (mkdtemp), the file written exclusively,
 * dlopen, both removed at once (the mapping outlives the file). Same candidate directories: $MACVTAP_NATIVE_TMPDIR,
 * the temp dir, /run, the executable's own directory (exec-able, since the kernel just ran it).
 * @param {string} file the embedded addon's path inside the executable
 */
/* c8 ignore start */
function loadAddon(file) {
  const image = fs.readFileSync(file);
  const tried = [];
  const dirs = [process.env.MACVTAP_NATIVE_TMPDIR, os.tmpdir(), '/run', path.dirname(process.execPath)].filter(Boolean);
  for (const base of new Set(dirs)) {
    let dir;
    try {
      dir = fs.mkdtempSync(path.join(String(base), '.macvtap-native-'));
      const out = path.join(dir, 'macvtap_native.node');
      fs.writeFileSync(out, image, { mode: 0o700, flag: 'wx' });
      const module = { exports: {} };
      try {
        process.dlopen(module, out, os.constants.dlopen.RTLD_NOW);
      } finally {
        fs.rmSync(dir, { recursive: true, force: true });
        dir = undefined;
      }
      return module.exports;
    } catch (err) {
      tried.push(`  ${base}: ${err instanceof Error ? err.message : String(err)}`);
    } finally {
      if (dir) fs.rmSync(dir, { recursive: true, force: true });
    }
  }
  throw new Error(
    `macvtap-cni: cannot load the embedded native addon; no directory allowed writing and executing it. Tried:\n${tried.join('\n')}`,
  );
}
/* c8 ignore stop */

function main() {
  if (process.platform !== 'linux' || process.arch !== 'x64') {
    process.stderr.write('build-host-bun: only linux-x64 (the Bun package pinned is @oven/bun-linux-x64)\n');
    return 2;
  }
  if (!fs.existsSync(BUN)) {
    process.stderr.write(`build-host-bun: ${path.relative(ROOT, BUN)} is missing; run \`npm ci\` (it is a devDependency)\n`);
    return 2;
  }
  const addon = buildAddon('x64');
  fs.mkdirSync(WORK, { recursive: true });
  fs.mkdirSync(path.dirname(OUT), { recursive: true });
  const entry = path.join(WORK, 'entry.ts');
  const native = path.join(ROOT, 'lib', 'netlink', 'native.ts');
  // The bundle keeps bin/macvtap.ts's lazy requires (VERSION loads no CNI code, nor the addon).
  fs.writeFileSync(
    entry,
    [
      '// Generated by deploy/build-host-bun.mjs.',
      "import * as fs from 'node:fs';",
      "import * as os from 'node:os';",
      "import * as path from 'node:path';",
      // type 'file': embedded as plain bytes (a path inside the executable), not as Bun's own cached .node.
      `import addonFile from ${JSON.stringify(addon)} with { type: 'file' };`,
      `import { setNativeLoader } from ${JSON.stringify(native)};`,
      `${loadAddon.toString()}`,
      'setNativeLoader(() => loadAddon(addonFile));',
      // lib/cni/host-config.ts finds macvtap.conf.json next to process.argv[1] outside a Node SEA, and in a Bun
      // executable that is /$bunfs/root/...: name the real one (next to the executable, as the Node build reads it).
      "process.env.MACVTAP_CNI_HOST_CONFIG ||= path.join(path.dirname(process.execPath), 'macvtap.conf.json');",
      `require(${JSON.stringify(path.join(ROOT, 'bin', 'macvtap.ts'))});`,
      '',
    ].join('\n'),
  );
  // Written next to the output and renamed over it: a running plugin never sees half an executable.
  const temp = `${OUT}.${process.pid}.tmp`;
  try {
    execFileSync(
      BUN,
      [
        'build',
        entry,
        '--compile',
        '--target=bun-linux-x64',
        '--bytecode',
        '--minify',
        '--no-compile-autoload-dotenv',
        '--no-compile-autoload-bunfig',
        `--outfile=${temp}`,
      ],
      { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'] },
    );
    fs.renameSync(temp, OUT);
  } finally {
    fs.rmSync(temp, { force: true });
  }
  const version = execFileSync(BUN, ['--version'], { encoding: 'utf8' }).trim();
  process.stdout.write(`build-host-bun: ${path.relative(ROOT, OUT)} (Bun ${version}, ${fs.statSync(OUT).size} bytes)\n`);
  return 0;
}

process.exitCode = main();
