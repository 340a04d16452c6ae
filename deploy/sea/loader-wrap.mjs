// @ts-check
/** The CommonJS wrapper shared by the eager code cache (eager-cache.mjs) and the loader (loader.js). */
export const FILENAME = 'macvtap-bundle.js';

/** @param {string} source */
export const wrap = (source) => `(function (exports, require, module, __filename, __dirname) {${source}\n})`;
