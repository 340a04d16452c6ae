#!/usr/bin/env node
// @ts-check
/**
 * Builds the self-contained host executables dist/host/macvtap and dist/host/macvtap-deviceplugin:
 * Node single-executable applications (SEA) that run on a host with no Node installed.
 *
 *   node deploy/build-host.mjs [--arch=x64|arm64] [--node=PATH] [--from=src|dist] [--force] [--no-code-cache] [--no-eager-cache]
 *                              [--out=DIR] [--entry:NAME=PATH ...] [--only=NAME]
 *
 * The runtime is the pinned Node (deploy/runtime.mjs: the npm registry's node-linux-<arch>, locked in
 * package-lock.json), never the `node` on PATH. --arch builds for another architecture from this machine:
 * the addon is cross-compiled (deploy/build-addon.mjs) and the other architecture's runtime is fetched.
 * --node=PATH embeds another Node binary of this machine's architecture instead (the benchmark's baseline).
 * The output is dist/host/ for this machine's architecture, dist/host/linux-<arch>/ for another one.
 *
 * Per program:
 *  1. esbuild bundles a small generated entry (platform node, CommonJS, targeting the embedded Node's
 *     major version, minified) that installs
 *     deploy/sea/addon.js as lib/netlink's native loader (setNativeLoader) and, for the device plugin,
 *     points lib/deviceplugin/api at the embedded proto/ (setProtoRoot), then requires the real entry:
 *     bin/NAME.ts (--from=src, the default: always current, no tsc needed) or dist/bin/NAME.js
 *     (--from=dist, after `npx tsc -p .`). --entry:NAME=PATH replaces an entry (e.g. a stand-in).
 *     The device plugin's bundle sees deploy/sea/proto-loader.js in place of @grpc/proto-loader.
 *  2. Assets: the addon (prebuilds/linux-<arch>/macvtap_native.node, stripped, from build-addon) and, for
 *     the device plugin, every file under proto/ plus their index (proto-index.json).
 *  3. With a code cache (this machine's architecture) the executable's main is deploy/sea/loader.js, which runs
 *     the bundle (asset bundle.js) with an eager code cache (asset bundle.cache, made by deploy/sea/eager-cache.mjs
 *     with the embedded Node): every function precompiled, not only the top level that `useCodeCache` caches;
 *     `--no-eager-cache` makes the bundle the main again. bench:cni measured the difference.
 *     `node --experimental-sea-config` turns main + assets into a blob, with V8's code cache. The blob is
 *     made by the embedded Node itself, or for another architecture by this machine's pinned Node of the
 *     same version, without a code cache (V8's cache is specific to the architecture that made it).
 *  4. postject injects the blob into a stripped copy of the embedded node binary (stripped once, cached),
 *     which replaces the output by rename.
 * Steps 3-4 are skipped when the output exists and a hash of everything that goes into it (bundle bytes,
 * assets, SEA config, node binaries' identity, this script) equals the one recorded in NAME.build.json.
 */
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { buildAddon } from './build-addon.mjs';
import { ARCH_INFO, RuntimeError, checkArch, pinnedVersion, runtimeNode } from './runtime.mjs';

const require = createRequire(import.meta.url);
const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, '..');
const SEA_FUSE = 'NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2';
const ADDON_ASSET = 'macvtap_native.node';

/**
 * The programs. `protos`: the program loads .proto files through @grpc/proto-loader. `shortLived`: every call is
 * a fresh process (the CNI), so it starts with every function precompiled (step 3) and with the flags of
 * shortLivedStart; the long-running device plugin keeps the smaller lazy cache and Node's defaults.
 */
const PROGRAMS = [
  { name: 'macvtap', src: 'bin/macvtap.ts', dist: 'dist/bin/macvtap.js', protos: undefined, shortLived: true },
  {
    name: 'macvtap-deviceplugin',
    src: 'bin/macvtap-deviceplugin.ts',
    dist: 'dist/bin/macvtap-deviceplugin.js',
    shortLived: false,
    // The module whose setProtoRoot() says where proto/ is (here: the shim's virtual root).
    protos: { src: 'lib/deviceplugin/api.ts', dist: 'dist/lib/deviceplugin/api.js' },
  },
];

function parseArgs(argv) {
  /** @type {{ from: string, force: boolean, codeCache: boolean, out: string | undefined, entries: Record<string, string>, only: string | undefined, arch: string, node: string | undefined }} */
  const opts = {
    from: 'src',
    force: false,
    codeCache: true,
    eagerCache: true,
    out: undefined,
    entries: {},
    only: undefined,
    arch: process.arch,
    node: undefined,
  };
  for (const arg of argv) {
    let m;
    if ((m = /^--from=(src|dist)$/.exec(arg))) opts.from = m[1];
    else if ((m = /^--arch=(.+)$/.exec(arg))) opts.arch = checkArch(m[1]);
    else if ((m = /^--node=(.+)$/.exec(arg))) opts.node = path.resolve(m[1]);
    else if (arg === '--force') opts.force = true;
    else if (arg === '--no-code-cache') opts.codeCache = false;
    else if (arg === '--no-eager-cache') opts.eagerCache = false;
    else if ((m = /^--out=(.+)$/.exec(arg))) opts.out = path.resolve(m[1]);
    else if ((m = /^--only=(.+)$/.exec(arg))) opts.only = m[1];
    else if ((m = /^--entry:([\w-]+)=(.+)$/.exec(arg))) opts.entries[m[1]] = path.resolve(m[2]);
    else throw new UsageError(`unknown argument ${arg}`);
  }
  if (opts.node && opts.arch !== process.arch) throw new UsageError('--node embeds a binary of this machine, it cannot go with --arch');
  opts.out ??= path.join(ROOT, 'dist', 'host', ...(opts.arch === process.arch ? [] : [`linux-${opts.arch}`]));
  return opts;
}

class UsageError extends Error {}

const sha256 = (...parts) => {
  const h = createHash('sha256');
  for (const p of parts) h.update(p);
  return h.digest('hex');
};

function listProtos(dir, rel = '') {
  const out = [];
  for (const ent of fs.readdirSync(path.join(dir, rel), { withFileTypes: true })) {
    const r = rel ? `${rel}/${ent.name}` : ent.name;
    if (ent.isDirectory()) out.push(...listProtos(dir, r));
    else if (ent.name.endsWith('.proto')) out.push(r);
  }
  return out.sort();
}

/** Identity of a binary for the build hash and cache names: where it is, its size and mtime. */
const identity = (/** @type {string} */ file) => {
  const st = fs.statSync(file);
  return [file, st.size, Math.trunc(st.mtimeMs)];
};

/** A stripped copy of `node` (the embedded runtime), made once per binary (keyed by version, size, mtime). */
function strippedNode(workDir, node, version, strip) {
  const [, size, mtime] = identity(node);
  const cached = path.join(workDir, `node-${version}-${size}-${mtime}-stripped`);
  if (!fs.existsSync(cached)) {
    for (const old of fs.readdirSync(workDir)) if (/^node-.*-stripped$/.test(old)) fs.rmSync(path.join(workDir, old));
    const temp = `${cached}.${process.pid}.tmp`;
    fs.copyFileSync(node, temp);
    quiet(strip, ['--strip-all', temp]);
    fs.renameSync(temp, cached);
  }
  return cached;
}

/**
 * The runtime to embed and how to make its blob: `node` goes into the executable, `generator` (a binary
 * that runs here, of the same Node version) makes the blob, `strip` is binutils' strip for the architecture.
 */
function runtimeFor(opts) {
  if (opts.node) {
    const version = execFileSync(opts.node, ['-p', 'process.version'], { encoding: 'utf8' }).trim();
    return { node: opts.node, generator: opts.node, version, strip: 'strip', codeCache: opts.codeCache };
  }
  const version = `v${pinnedVersion()}`;
  const generator = runtimeNode(process.arch);
  if (opts.arch === process.arch) return { node: generator, generator, version, strip: 'strip', codeCache: opts.codeCache };
  return { node: runtimeNode(opts.arch), generator, version, strip: `${ARCH_INFO[opts.arch].triplet}-strip`, codeCache: false };
}

/**
 * How the CNI executable starts on Node >= 24 (Node 20's SEA has no execArgv: the old-runtime baseline of
 * bench:runtime is built as it always was). The long-running device plugin keeps Node's defaults.
 * - `--v8-pool-size=1`: a CNI call lives for tens of milliseconds and compiles nothing in the background (its
 *   code cache is eager), yet Node starts four V8 worker threads, each with buffers to fault in: 3-5 ms of a
 *   70 ms ADD on Node 26.
 * - `--no-rehash-snapshot`: keep the hash seed of Node's start-up snapshot instead of drawing a random one. Since
 *   V8 14 a random seed costs each isolate about 3 ms (deriving rapidhash secrets, HashSeed::InitializeRoots:
 *   10% of an empty start), the whole of Node 26's start-up deficit against Node 20. A known seed lets crafted
 *   JSON collide in V8's hash tables; lib/cni/hash-seed.ts bounds what this process parses with it and re-runs
 *   the call with a random seed (`--node-options=--rehash-snapshot`, hence `execArgvExtension: cli`) for any
 *   stdin with more strings. It is a V8 flag, so the caches are made with the same flags (buildOne).
 * `cli` also means NODE_OPTIONS in the runtime's environment no longer reaches the plugin.
 */
const shortLivedStart = { execArgv: ['--v8-pool-size=1', '--no-rehash-snapshot'], execArgvExtension: 'cli' };

/**
 * The SEA configuration of one program. Start-up options (a V8 start-up snapshot, the code cache, execArgv)
 * go here; everything in it is part of the build hash.
 */
function seaConfigFor(program, { bundlePath, blobPath, assets, codeCache, major }) {
  return {
    main: bundlePath,
    output: blobPath,
    disableExperimentalSEAWarning: true,
    useSnapshot: false,
    useCodeCache: codeCache,
    assets,
    ...(program.shortLived && major >= 24 ? shortLivedStart : {}),
  };
}

/** Runs a tool; its chatter (strip's warnings about node's many ELF notes, node's "Wrote ...") shows only on failure. */
function quiet(file, args) {
  try {
    execFileSync(file, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (err) {
    process.stderr.write(`${err.stdout ?? ''}${err.stderr ?? ''}`);
    throw new UsageError(`${path.basename(file)} ${args.join(' ')} failed${err.code === 'ENOENT' ? ` (${file} is not installed)` : ''}`);
  }
}

/** Whether `to` is in the import graph of `from` (paths as esbuild's metafile has them: relative to ROOT). */
function reaches(metafile, from, to) {
  const seen = new Set([from]);
  const queue = [from];
  while (queue.length) {
    const file = queue.shift();
    if (file === to) return true;
    for (const imp of metafile.inputs[file]?.imports ?? []) {
      if (!imp.external && !seen.has(imp.path)) {
        seen.add(imp.path);
        queue.push(imp.path);
      }
    }
  }
  return false;
}

/** Writes `data` to `file` only if it differs (keeps mtimes of unchanged inputs stable). */
function writeIfChanged(file, data) {
  if (fs.existsSync(file) && fs.readFileSync(file).equals(Buffer.from(data))) return;
  fs.writeFileSync(file, data);
}

async function buildOne(program, opts, esbuild, workDir, addonPath, runtime) {
  const major = Number(runtime.version.replace(/^v(\d+).*$/, '$1'));
  const entry = opts.entries[program.name] ?? path.join(ROOT, opts.from === 'src' ? program.src : program.dist);
  if (!fs.existsSync(entry))
    throw new UsageError(
      `${program.name}: entry ${path.relative(ROOT, entry)} does not exist` + (opts.from === 'dist' ? ' (run `npx tsc -p .` first)' : ''),
    );
  const nativeModule = path.join(ROOT, opts.from === 'src' ? 'lib/netlink/native.ts' : 'dist/lib/netlink/native.js');
  const addonLoader = path.join(HERE, 'sea', 'addon.js');
  const protoShim = path.join(HERE, 'sea', 'proto-loader.js');

  // The generated entry: install the embedded-addon loader (and the embedded proto root) before the real
  // entry runs, so nothing can reach netlink or the .proto files the ordinary way first.
  const stub = [
    `require(${JSON.stringify(nativeModule)}).setNativeLoader(require(${JSON.stringify(addonLoader)}).loadEmbeddedAddon);`,
    ...(program.protos
      ? [
          `require(${JSON.stringify(path.join(ROOT, program.protos[opts.from]))}).setProtoRoot(require(${JSON.stringify(protoShim)}).EMBEDDED_ROOT);`,
        ]
      : []),
    `require(${JSON.stringify(entry)});`,
  ].join('\n');

  /** @type {import('esbuild').Plugin} */
  const redirectProtoLoader = {
    name: 'sea-proto-loader',
    setup(build) {
      build.onResolve({ filter: /^@grpc\/proto-loader$/ }, (args) => (args.importer === protoShim ? undefined : { path: protoShim }));
    },
  };

  const result = await esbuild.build({
    stdin: { contents: stub, resolveDir: ROOT, sourcefile: `sea-entry-${program.name}.js`, loader: 'js' },
    bundle: true,
    platform: 'node',
    format: 'cjs',
    target: `node${major}`,
    minify: true,
    keepNames: true,
    legalComments: 'eof',
    write: false,
    metafile: true,
    logLevel: 'warning',
    absWorkingDir: ROOT,
    // Lets an entry outside the tree (a stand-in under /tmp) resolve the project's dependencies.
    nodePaths: [path.join(ROOT, 'node_modules')],
    plugins: program.protos ? [redirectProtoLoader] : [],
  });
  // The hooks only work if the entry reaches the very modules the stub configured (not copies of them, as
  // in an entry that is itself a bundle, e.g. dist/bin/macvtap.js after `npm run build:cni`).
  for (const hooked of [nativeModule, ...(program.protos ? [path.join(ROOT, program.protos[opts.from])] : [])]) {
    if (!reaches(result.metafile, path.relative(ROOT, entry), path.relative(ROOT, hooked))) {
      throw new UsageError(
        `${program.name}: ${path.relative(ROOT, entry)} does not import ${path.relative(ROOT, hooked)} ` +
          '(is it already a bundle?); build from the sources (--from=src) or from the output of `npx tsc -p .`',
      );
    }
  }
  const bundle = Buffer.from(result.outputFiles[0].contents);
  const bundlePath = path.join(workDir, `${program.name}.js`);
  writeIfChanged(bundlePath, bundle);

  const assets = { [ADDON_ASSET]: addonPath };
  // The eager code cache (step 3): main is the loader, the bundle and its cache are assets.
  const eager = runtime.codeCache && opts.eagerCache && program.shortLived;
  const cachePath = path.join(workDir, `${program.name}.cache`);
  let mainPath = bundlePath;
  let loader = Buffer.alloc(0);
  if (eager) {
    const built = await esbuild.build({
      entryPoints: [path.join(HERE, 'sea', 'loader.js')],
      bundle: true,
      platform: 'node',
      format: 'cjs',
      target: `node${major}`,
      minify: true,
      write: false,
      logLevel: 'warning',
    });
    loader = Buffer.from(built.outputFiles[0].contents);
    mainPath = path.join(workDir, `${program.name}.loader.js`);
    writeIfChanged(mainPath, loader);
    assets['bundle.js'] = bundlePath;
    assets['bundle.cache'] = cachePath;
  }
  if (program.protos) {
    const protoDir = path.join(ROOT, 'proto');
    const protos = fs.existsSync(protoDir) ? listProtos(protoDir) : [];
    const indexPath = path.join(workDir, 'proto-index.json');
    writeIfChanged(indexPath, JSON.stringify(protos));
    assets['proto-index.json'] = indexPath;
    for (const rel of protos) assets[`proto/${rel}`] = path.join(protoDir, rel);
  }

  const blobPath = path.join(workDir, `${program.name}.blob`);
  const seaConfig = seaConfigFor(program, {
    bundlePath: mainPath,
    blobPath,
    assets,
    codeCache: runtime.codeCache,
    major,
  });
  const hash = sha256(
    JSON.stringify({
      ...seaConfig,
      main: undefined,
      output: undefined,
      node: [runtime.version, identity(runtime.node), identity(runtime.generator)],
    }),
    bundle,
    loader,
    eager ? fs.readFileSync(path.join(HERE, 'sea', 'eager-cache.mjs')) : '',
    // The cache is made from the bundle (hashed above) after this check; its bytes are not an input.
    ...Object.keys(assets)
      .filter((k) => k !== 'bundle.cache')
      .sort()
      .map((k) => Buffer.concat([Buffer.from(k), fs.readFileSync(assets[k])])),
    fs.readFileSync(fileURLToPath(import.meta.url)),
  );

  const output = path.join(opts.out, program.name);
  const infoPath = path.join(opts.out, `${program.name}.build.json`);
  let info;
  try {
    info = JSON.parse(fs.readFileSync(infoPath, 'utf8'));
  } catch {
    info = undefined;
  }
  if (!opts.force && info?.hash === hash && fs.existsSync(output) && fs.statSync(output).size === info.size) {
    return { ...info, rebuilt: false };
  }

  const configPath = path.join(workDir, `${program.name}.sea-config.json`);
  fs.writeFileSync(configPath, JSON.stringify(seaConfig, null, 2));
  // Made under the executable's own flags: V8 accepts a code cache only from a V8 with the same flag hash.
  const flags = seaConfig.execArgv ?? [];
  if (eager) quiet(runtime.generator, [...flags, path.join(HERE, 'sea', 'eager-cache.mjs'), bundlePath, cachePath]);
  quiet(runtime.generator, [...flags, '--experimental-sea-config', configPath]);

  const temp = `${output}.${process.pid}.tmp`;
  try {
    fs.copyFileSync(strippedNode(workDir, runtime.node, runtime.version, runtime.strip), temp);
    // postject's CLI in a child, so that LIEF's warnings about node's ELF notes stay quiet unless it fails.
    quiet(process.execPath, [require.resolve('postject/dist/cli.js'), temp, 'NODE_SEA_BLOB', blobPath, '--sentinel-fuse', SEA_FUSE]);
    fs.chmodSync(temp, 0o755);
    fs.renameSync(temp, output);
  } finally {
    fs.rmSync(temp, { force: true });
  }
  info = {
    hash,
    size: fs.statSync(output).size,
    bundleSize: bundle.length,
    addonSize: fs.statSync(addonPath).size,
    node: runtime.version,
    platform: `linux-${opts.arch}`,
    codeCache: runtime.codeCache,
    eagerCache: eager,
    execArgv: seaConfig.execArgv ?? [],
    entry: path.relative(ROOT, entry),
    inputs: Object.keys(result.metafile.inputs).length,
  };
  fs.writeFileSync(infoPath, `${JSON.stringify(info, null, 2)}\n`);
  return { ...info, rebuilt: true };
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  // The addon for the target architecture, stripped (build-addon is incremental: about a second if current).
  const addonPath = buildAddon(opts.arch);
  const runtime = runtimeFor(opts);
  const esbuild = await import('esbuild');
  const workDir = path.join(opts.out, '.work');
  fs.mkdirSync(workDir, { recursive: true });

  const programs = PROGRAMS.filter((p) => !opts.only || p.name === opts.only);
  if (programs.length === 0) throw new UsageError(`--only=${opts.only}: no such program`);
  for (const program of programs) {
    const started = process.hrtime.bigint();
    const info = await buildOne(program, opts, esbuild, workDir, addonPath, runtime);
    const ms = Number(process.hrtime.bigint() - started) / 1e6;
    const mib = (n) => `${(n / 1048576).toFixed(1)} MiB`;
    console.log(
      `${path.relative(process.cwd(), path.join(opts.out, program.name)) || program.name}: ${mib(info.size)} ` +
        `(bundle ${(info.bundleSize / 1024).toFixed(0)} KiB, addon ${(info.addonSize / 1024).toFixed(0)} KiB), ` +
        `Node ${info.node} ${info.platform}, ${info.rebuilt ? `built in ${(ms / 1000).toFixed(1)} s` : 'up to date'}`,
    );
  }
}

main().catch((err) => {
  if (err instanceof UsageError || err instanceof RuntimeError) console.error(`build-host: ${err.message}`);
  else console.error(`build-host: ${err && err.stack ? err.stack : err}`);
  process.exit(1);
});
