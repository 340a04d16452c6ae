#!/usr/bin/env node
// @ts-check
/**
 * Builds the native addon against the pinned Node's headers (the node-linux-<arch> package ships
 * include/node; node-gyp never downloads anything) and writes the stripped result to
 * prebuilds/linux-<arch>/macvtap_native.node, the file the npm package ships and the host executables embed.
 *
 *   node deploy/build-addon.mjs [--arch=x64|arm64 ...] [--all] [--sanitize]
 *
 * The machine's architecture builds in build/ (build/Release/macvtap_native.node, unstripped, is what a
 * development tree loads after prebuilds/; both are refreshed together). Another architecture is
 * cross-compiled with Debian's GNU cross toolchain (`g++-aarch64-linux-gnu`) in a copy of the sources under
 * node_modules/.cache/macvtap-cni/, so build/ is never disturbed. node-gyp configures once per header
 * directory; later runs are make's incremental builds (about a second when nothing changed).
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { ARCH_INFO, ARCHES, CACHE, ROOT, RuntimeError, checkArch, hostRuntimeDir, pinnedVersion } from './runtime.mjs';

const require = createRequire(import.meta.url);
export const ADDON_FILE = 'macvtap_native.node';

/** Where the stripped addon for `arch` is written (and found by the loader and by build-host). @param {string} arch */
export const prebuildPath = (arch) => path.join(ROOT, 'prebuilds', `linux-${arch}`, ADDON_FILE);

/** What a cross build of `arch` runs instead of the machine's compiler and binutils. @param {string} arch */
function toolchain(arch) {
  if (arch === process.arch) return { env: {}, strip: 'strip' };
  const t = ARCH_INFO[checkArch(arch)].triplet;
  const tool = (/** @type {string} */ name) => `${t}-${name}`;
  try {
    execFileSync(tool('g++'), ['--version'], { stdio: 'ignore' });
  } catch {
    throw new RuntimeError(`cross-compiling for ${arch} needs ${tool('g++')} (Debian: apt-get install g++-${t} binutils-${t})`);
  }
  return {
    env: { CC: tool('gcc'), CXX: tool('g++'), LINK: tool('g++'), AR: tool('ar') },
    strip: tool('strip'),
  };
}

/** Copies `from` to `to` (files and directories), touching only files whose bytes differ, so make stays incremental. */
function mirror(/** @type {string} */ from, /** @type {string} */ to) {
  const st = fs.statSync(from);
  if (st.isDirectory()) {
    fs.mkdirSync(to, { recursive: true });
    const names = new Set(fs.readdirSync(from));
    for (const name of fs.readdirSync(to)) if (!names.has(name)) fs.rmSync(path.join(to, name), { recursive: true, force: true });
    for (const name of names) mirror(path.join(from, name), path.join(to, name));
  } else if (!fs.existsSync(to) || !fs.readFileSync(to).equals(fs.readFileSync(from))) {
    fs.copyFileSync(from, to);
  }
}

/**
 * The header directory as node-gyp is given it. gyp writes `-I<nodedir>/include/node` into its Makefile
 * unquoted, so a checkout whose path has white space in it (`/home/a b/macvtap-cni`) would split it; such a
 * directory is reached through a symlink in the temp dir instead, named by a hash of the real path.
 * @param {string} nodedir
 */
function gypNodedir(nodedir) {
  if (!/\s/.test(nodedir)) return nodedir;
  const link = path.join(os.tmpdir(), `macvtap-cni-nodedir-${createHash('sha256').update(nodedir).digest('hex').slice(0, 16)}`);
  if (/\s/.test(link)) throw new RuntimeError(`the temp dir ${os.tmpdir()} has white space in its path: node-gyp cannot use it either`);
  let current;
  try {
    current = fs.readlinkSync(link);
  } catch {
    current = undefined;
  }
  if (current !== nodedir) {
    // Replaced by rename, so a concurrent build never sees the link missing.
    const temp = `${link}.${process.pid}.tmp`;
    fs.rmSync(temp, { force: true });
    fs.symlinkSync(nodedir, temp);
    fs.renameSync(temp, link);
  }
  return link;
}

/** Runs a tool with its output shown only when it fails. */
function run(/** @type {string} */ file, /** @type {string[]} */ args, /** @type {{ cwd: string, env: Record<string, string> }} */ opts) {
  try {
    execFileSync(file, args, { cwd: opts.cwd, env: { ...process.env, ...opts.env }, stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (err) {
    const e = /** @type {{ stdout?: Buffer, stderr?: Buffer }} */ (err);
    process.stderr.write(`${e.stdout ?? ''}${e.stderr ?? ''}`);
    throw new RuntimeError(`${path.basename(file)} ${args.join(' ')} failed in ${path.relative(ROOT, opts.cwd) || '.'}`);
  }
}

/** Builds the addon for `arch`; returns the prebuild's path. @param {string} arch */
export function buildAddon(arch = process.arch) {
  checkArch(arch);
  const nodedir = gypNodedir(hostRuntimeDir());
  const { env, strip } = toolchain(arch);
  const cwd = arch === process.arch ? ROOT : path.join(CACHE, `addon-linux-${arch}`);
  if (cwd !== ROOT) {
    fs.mkdirSync(cwd, { recursive: true });
    for (const entry of ['binding.gyp', 'native']) mirror(path.join(ROOT, entry), path.join(cwd, entry));
  }

  configureAndBuild(cwd, nodedir, arch, env);

  // The addon is written to disk at every start of a host executable and shipped in the npm package:
  // stripped, it is a third of the size. Replaced by rename, so a process loading it never sees half a file.
  const out = prebuildPath(arch);
  fs.mkdirSync(path.dirname(out), { recursive: true });
  const temp = `${out}.${process.pid}.tmp`;
  try {
    run(strip, ['--strip-unneeded', '-o', temp, path.join(cwd, 'build', 'Release', ADDON_FILE)], { cwd, env: {} });
    if (fs.existsSync(out) && fs.readFileSync(out).equals(fs.readFileSync(temp))) return out;
    fs.renameSync(temp, out);
  } finally {
    fs.rmSync(temp, { force: true });
  }
  return out;
}

/**
 * node-gyp in `cwd`: configures once per header directory, toolchain and flags (a stamp file records them),
 * then make's incremental builds.
 * @param {string} cwd @param {string} nodedir @param {string} arch @param {Record<string, string>} env
 */
function configureAndBuild(cwd, nodedir, arch, env) {
  const nodeGyp = require.resolve('node-gyp/bin/node-gyp.js');
  const stampFile = path.join(cwd, 'build', 'macvtap-configure.json');
  const stamp = JSON.stringify({ nodedir, version: pinnedVersion(), arch, env });
  let configured;
  try {
    configured = fs.readFileSync(stampFile, 'utf8') === stamp && fs.existsSync(path.join(cwd, 'build', 'Makefile'));
  } catch {
    configured = false;
  }
  // node-gyp lets npm_config_* variables override its command line, and an npmrc's `nodedir` (this
  // machine's points at Node 20's headers) arrives as one when npm runs us: replace it.
  for (const key of Object.keys(process.env)) if (/^npm_config_nodedir$/i.test(key)) delete process.env[key];
  process.env.npm_config_nodedir = nodedir;
  // A new header directory or toolchain means a clean build: make's dependency files name the old headers.
  if (configured) {
    run(process.execPath, [nodeGyp, 'build', `--nodedir=${nodedir}`], { cwd, env });
  } else {
    run(process.execPath, [nodeGyp, 'rebuild', `--nodedir=${nodedir}`, `--arch=${arch}`], { cwd, env });
    fs.writeFileSync(stampFile, stamp);
  }
}

/** The compiler and linker flags of the sanitizer build. */
export const SANITIZE_FLAGS = '-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all';

/**
 * Builds the addon for this machine with AddressSanitizer and UBSan in a copy of the sources under
 * node_modules/.cache/macvtap-cni/addon-sanitize (never build/Release or prebuilds/) and returns the path
 * of the unstripped result. gyp's Makefile adds CFLAGS/CXXFLAGS/LDFLAGS from the environment to its own.
 */
export function buildSanitizedAddon() {
  const nodedir = gypNodedir(hostRuntimeDir());
  const cwd = path.join(CACHE, 'addon-sanitize');
  fs.mkdirSync(cwd, { recursive: true });
  for (const entry of ['binding.gyp', 'native']) mirror(path.join(ROOT, entry), path.join(cwd, entry));
  const env = { CFLAGS: SANITIZE_FLAGS, CXXFLAGS: SANITIZE_FLAGS, LDFLAGS: SANITIZE_FLAGS };
  configureAndBuild(cwd, nodedir, process.arch, env);
  return path.join(cwd, 'build', 'Release', ADDON_FILE);
}

if (process.argv[1] && fs.realpathSync(process.argv[1]) === fileURLToPath(import.meta.url)) {
  try {
    const arches = new Set();
    for (const arg of process.argv.slice(2)) {
      const m = /^--arch=(.+)$/.exec(arg);
      if (m) arches.add(checkArch(m[1]));
      else if (arg === '--all') for (const a of ARCHES) arches.add(a);
      else if (arg === '--sanitize') arches.add('sanitize');
      else throw new RuntimeError(`unknown argument ${arg} (usage: build-addon.mjs [--arch=x64|arm64 ...] [--all] [--sanitize])`);
    }
    if (arches.size === 0) arches.add(process.arch);
    for (const arch of arches) console.log(path.relative(process.cwd(), arch === 'sanitize' ? buildSanitizedAddon() : buildAddon(arch)));
  } catch (err) {
    console.error(`build-addon: ${err instanceof RuntimeError ? err.message : err instanceof Error ? err.stack : String(err)}`);
    process.exit(1);
  }
}
