// @ts-check
/**
 * Loads the native addon embedded in a single-executable build (SEA asset `macvtap_native.node`); how its
 * bytes become a loaded module without leaving a file behind is dlopen-image.js's job.
 */
// An ES module: esbuild bundles it into the executable's CommonJS bundle (it is never loaded on its own).
import * as sea from 'node:sea';
import { dlopenImage } from './dlopen-image.js';

export const ADDON_ASSET = 'macvtap_native.node';

/** @returns {any} the addon's exports (typed by lib/netlink/native.ts's NativeAddon). */
export function loadEmbeddedAddon() {
  return dlopenImage(new Uint8Array(sea.getAsset(ADDON_ASSET)));
}
