// @ts-check
/**
 * Loads a native addon from its bytes (an executable's embedded copy): the Node single-executable build
 * (addon.js, from its SEA asset) and the Bun build (deploy/build-host-bun.mjs, from an embedded file).
 *
 * A shared object can only be mapped from a file, so the image is written into a fresh 0700 directory
 * (mkdtemp) on a file system that allows execution, opened with process.dlopen, and removed at once: the
 * mapping outlives the file. Nothing is left on disk, and no other user can swap the file between write
 * and dlopen (a fixed, guessable name in a shared temp dir, which Bun's own handling of .node files uses, would
 * let one). Candidate directories, in order: $MACVTAP_NATIVE_TMPDIR, os.tmpdir(), /run, and the executable's
 * own directory (exec-able by definition, since the kernel just ran us from it).
 */
// An ES module: bundled into the executable (esbuild for Node, bun build for Bun), never loaded on its own.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

const FILE_NAME = 'macvtap_native.node';

function candidateDirs() {
  const dirs = [];
  if (process.env.MACVTAP_NATIVE_TMPDIR) dirs.push(process.env.MACVTAP_NATIVE_TMPDIR);
  dirs.push(os.tmpdir(), '/run', path.dirname(process.execPath));
  return [...new Set(dirs)];
}

/**
 * @param {Uint8Array} image the addon's bytes
 * @returns {any} the addon's exports (typed by lib/netlink/native.ts's NativeAddon).
 */
export function dlopenImage(image) {
  const tried = [];
  for (const base of candidateDirs()) {
    let dir;
    try {
      dir = fs.mkdtempSync(path.join(base, '.macvtap-native-'));
      const file = path.join(dir, FILE_NAME);
      fs.writeFileSync(file, image, { mode: 0o700, flag: 'wx' });
      const module = { exports: {} };
      try {
        process.dlopen(module, file, os.constants.dlopen.RTLD_NOW);
      } finally {
        fs.unlinkSync(file);
        fs.rmdirSync(dir);
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
    `macvtap-cni: cannot load the embedded native addon; no directory allowed writing and executing it. Tried:\n${tried.join('\n')}\n` +
      'Point MACVTAP_NATIVE_TMPDIR at a directory on a file system mounted without noexec.',
  );
}
