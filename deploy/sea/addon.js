// @ts-check
/**
 * Loads the native addon embedded in a single-executable build (SEA asset `macvtap_native.node`).
 *
 * A shared object can only be mapped from a file, so the asset is written into a fresh 0700 directory
 * (mkdtemp) on a file system that allows execution, opened with process.dlopen, and removed at once: the
 * mapping outlives the file. Nothing is left on disk, and no other user can swap the file between write
 * and dlopen. Candidate directories, in order: $MACVTAP_NATIVE_TMPDIR, os.tmpdir(), /run, and the
 * executable's own directory (exec-able by definition, since the kernel just ran us from it).
 */
// An ES module: esbuild bundles it into the executable's CommonJS bundle (it is never loaded on its own).
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as sea from 'node:sea';

export const ADDON_ASSET = 'macvtap_native.node';

function candidateDirs() {
  const dirs = [];
  if (process.env.MACVTAP_NATIVE_TMPDIR) dirs.push(process.env.MACVTAP_NATIVE_TMPDIR);
  dirs.push(os.tmpdir(), '/run', path.dirname(process.execPath));
  return [...new Set(dirs)];
}

/** @returns {any} the addon's exports (typed by lib/netlink/native.ts's NativeAddon). */
export function loadEmbeddedAddon() {
  const image = new Uint8Array(sea.getAsset(ADDON_ASSET));
  const tried = [];
  for (const base of candidateDirs()) {
    let dir;
    try {
      dir = fs.mkdtempSync(path.join(base, '.macvtap-native-'));
      const file = path.join(dir, ADDON_ASSET);
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
