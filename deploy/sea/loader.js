// @ts-check
/**
 * The single executable's main when it carries an eager code cache (see eager-cache.mjs): compiles the bundle
 * (SEA asset `bundle.js`) with its cache (`bundle.cache`) and runs it as a CommonJS module. A rejected cache
 * (another V8) costs time, not correctness: V8 then compiles lazily as usual. The bundle needs only Node's
 * built-in modules. An ES module: esbuild bundles it with loader-wrap.mjs into the executable's main.
 */
import { createRequire } from 'node:module';
import * as path from 'node:path';
import * as sea from 'node:sea';
import * as vm from 'node:vm';
import { FILENAME, wrap } from './loader-wrap.mjs';

const script = new vm.Script(wrap(sea.getAsset('bundle.js', 'utf8')), {
  filename: FILENAME,
  cachedData: Buffer.from(sea.getAsset('bundle.cache')),
});
if (process.env.MACVTAP_SEA_DEBUG === '1') process.stderr.write(`bundle code cache ${script.cachedDataRejected ? 'rejected' : 'used'}\n`);
const module = { exports: {} };
script.runInThisContext()(module.exports, createRequire(process.execPath), module, process.execPath, path.dirname(process.execPath));
