// @ts-check
/**
 * Stands in for `@grpc/proto-loader` inside a single-executable build, where the project's proto/ tree
 * travels as SEA assets (`proto/<relative path>`, listed in the asset `proto-index.json`).
 *
 * The embedded tree is served under the virtual root EMBEDDED_ROOT (`EMBEDDED_ROOT/proto/...`, a path that
 * exists on no disk; lib/deviceplugin/api.ts is pointed at it with setProtoRoot). load/loadSync extract the
 * tree into a private 0700 directory, replace EMBEDDED_ROOT with it in the requested file names and
 * includeDirs, call the real loader with the caller's options otherwise unchanged, and remove the directory.
 * The result is what the real loader gives for the same files on disk; the rest of the API is the real one.
 */
// An ES module: esbuild bundles it into the device plugin's CommonJS bundle (it is never loaded on its own).
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as sea from 'node:sea';
// The build resolves this one import to the real package (every other import of it comes here).
import * as real from '@grpc/proto-loader';

// The rest of the real API, unchanged (the local exports below take precedence over these).
export * from '@grpc/proto-loader';

/** Virtual directory holding the embedded `proto/`. */
export const EMBEDDED_ROOT = '/.macvtap-embedded';

/** @param {string} file @param {string} dir */
function mapPath(file, dir) {
  const rel = path.relative(EMBEDDED_ROOT, path.resolve(file));
  return rel === '' || (!rel.startsWith('..') && !path.isAbsolute(rel)) ? path.join(dir, rel) : file;
}

/** @param {string | string[]} filename @param {any} options @param {(f: string | string[], o: any) => any} call */
function withExtracted(filename, options, call) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), '.macvtap-proto-'));
  const cleanup = () => fs.rmSync(dir, { recursive: true, force: true });
  let result;
  try {
    /** @type {string[]} */
    const files = JSON.parse(/** @type {string} */ (sea.getAsset('proto-index.json', 'utf8')));
    for (const rel of files) {
      const target = path.join(dir, 'proto', rel);
      fs.mkdirSync(path.dirname(target), { recursive: true });
      fs.writeFileSync(target, /** @type {string} */ (sea.getAsset(`proto/${rel}`, 'utf8')));
    }
    const names = Array.isArray(filename) ? filename.map((f) => mapPath(f, dir)) : mapPath(filename, dir);
    const opts =
      options && Array.isArray(options.includeDirs)
        ? { ...options, includeDirs: options.includeDirs.map((d) => mapPath(d, dir)) }
        : options;
    result = call(names, opts);
  } catch (err) {
    cleanup();
    throw err;
  }
  if (result && typeof result.then === 'function') return result.finally(cleanup);
  cleanup();
  return result;
}

/** @param {string | string[]} filename @param {any} [options] */
export const loadSync = (filename, options) => withExtracted(filename, options, real.loadSync);
/** @param {string | string[]} filename @param {any} [options] */
export const load = (filename, options) => withExtracted(filename, options, real.load);
