// @ts-check
/**
 * Run by build-host with the embedded Node itself (same V8, and the executable's V8 flags): compiles a bundle
 * with every function compiled eagerly and writes V8's code cache of it. The cache that `useCodeCache` makes holds only what V8
 * compiles before running (the top level); a CNI call then spends milliseconds compiling the functions it
 * calls. This one holds them all. Lazy compilation is switched back on before the cache is made, so its flag
 * hash is the one of the executable's start and the runtime accepts it.
 *
 *   node eager-cache.mjs BUNDLE OUT
 */
import * as fs from 'node:fs';
import * as v8 from 'node:v8';
import * as vm from 'node:vm';
import { FILENAME, wrap } from './loader-wrap.mjs';

const [bundle, out] = process.argv.slice(2);
v8.setFlagsFromString('--no-lazy');
const script = new vm.Script(wrap(fs.readFileSync(bundle, 'utf8')), { filename: FILENAME });
v8.setFlagsFromString('--lazy');
fs.writeFileSync(out, script.createCachedData());
