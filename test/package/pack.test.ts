/**
 * The npm package as a user gets it: `npm pack` ships exactly the library (compiled lib/netlink and the
 * lib/util it imports, their type declarations, the prebuilt addon for linux-x64 and linux-arm64, and the C++
 * sources with binding.gyp for a source build elsewhere), under 2 MB, with no install script. The tarball is
 * installed with --ignore-scripts into a fresh project next to TypeScript, a consumer is type-checked with
 * `strict` and `skipLibCheck: false`, and run as root against throwaway namespaces.
 */
import t from 'tap';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ARCHES, ROOT, buildAddon, prebuildPath } from '../host/build';
import { claimIfindexes, ipLink, makeLowerNetns, makeNetns, rootOnly } from '../support/kernel';

interface PackResult {
  filename: string;
  size: number;
  unpackedSize: number;
  entryCount: number;
  files: { path: string; size: number }[];
}
interface PackageJson {
  name: string;
  version: string;
  scripts?: Record<string, string>;
  gypfile?: boolean;
  main: string;
  types: string;
  engines?: Record<string, string>;
  os?: string[];
  cpu?: string[];
  license?: string;
  keywords?: string[];
  dependencies?: Record<string, string>;
  devDependencies: Record<string, string>;
}

const MAX_TARBALL = 2 * 1024 * 1024;
const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as PackageJson;

function run(cmd: string, args: string[], cwd: string): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(cmd, args, {
    cwd,
    encoding: 'utf8',
    timeout: 300_000,
    env: { ...process.env, npm_config_audit: 'false', npm_config_fund: 'false' },
  });
  return { status: r.status, stdout: r.stdout ?? '', stderr: `${r.stderr ?? ''}${r.error ? String(r.error) : ''}` };
}

/** What the package must hold: the compiled library closure, the prebuilds, the sources of the addon. */
function expectedFiles(): string[] {
  // Recursive: lib/netlink has one module per link-operation family under ops/.
  const compiled = (dir: string): string[] =>
    fs
      .readdirSync(path.join(ROOT, dir), { recursive: true, encoding: 'utf8' })
      .filter((f) => f.endsWith('.ts'))
      .flatMap((f) => [`dist/${dir}/${f.replace(/\.ts$/, '.js')}`, `dist/${dir}/${f.replace(/\.ts$/, '.d.ts')}`]);
  const native = fs.readdirSync(path.join(ROOT, 'native')).map((f) => `native/${f}`);
  return [
    'LICENSE',
    'README.md',
    'package.json',
    'binding.gyp',
    'dist/lib/index.js',
    'dist/lib/index.d.ts',
    ...compiled('lib/netlink'),
    ...compiled('lib/util'),
    ...ARCHES.map((a) => `prebuilds/linux-${a}/macvtap_native.node`),
    ...native,
  ].sort();
}

/** Every relative require() of the shipped JavaScript resolves to a shipped file (the closure is complete). */
function unresolvedRequires(files: Set<string>): string[] {
  const missing: string[] = [];
  for (const file of [...files].filter((f) => f.endsWith('.js'))) {
    const text = fs.readFileSync(path.join(ROOT, file), 'utf8');
    for (const [, spec] of text.matchAll(/require\("(\.{1,2}\/[^"]+)"\)/g)) {
      const target = path.posix.normalize(path.posix.join(path.posix.dirname(file), spec));
      if (![`${target}.js`, `${target}/index.js`, target].some((f) => files.has(f))) missing.push(`${file} -> ${spec}`);
    }
  }
  return missing;
}

t.test('npm pack ships exactly the library, with prebuilds for linux-x64 and linux-arm64, under 2 MB', (t) => {
  for (const arch of ARCHES) {
    const r = buildAddon(arch);
    t.equal(r.status, 0, `prebuild for linux-${arch}: ${r.stderr}`);
  }
  const out = fs.mkdtempSync(path.join(os.tmpdir(), 'macvtap-pack-'));
  t.teardown(() => fs.rmSync(out, { recursive: true, force: true }));
  // --ignore-scripts: prepack's build already ran as npm test's pretest, and tests run in parallel.
  const packed = run('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', out], ROOT);
  t.equal(packed.status, 0, packed.stderr);
  const [result] = JSON.parse(packed.stdout) as PackResult[];
  const files = result.files.map((f) => f.path).sort();
  t.same(files, expectedFiles(), 'the file list: the library closure, the prebuilds, the addon sources');
  t.same(unresolvedRequires(new Set(files)), [], 'every relative require of the shipped code is shipped');
  t.notOk(
    files.some((f) => /^(dist\/(host|bin|bench|test)|bench|test|deploy|build|coverage)\//.test(f) || f.endsWith('.map')),
    'no host executables, programs, benchmarks, tests, deployment files, build leftovers or source maps',
  );
  for (const arch of ARCHES) {
    const shipped = result.files.find((f) => f.path === `prebuilds/linux-${arch}/macvtap_native.node`);
    t.equal(shipped?.size, fs.statSync(prebuildPath(arch)).size, `the linux-${arch} prebuild is the stripped build`);
  }
  t.ok(result.size < MAX_TARBALL, `tarball ${(result.size / 1024).toFixed(0)} KiB < 2 MB`);
  t.comment(`${result.filename}: ${result.size} bytes packed, ${result.unpackedSize} unpacked, ${result.entryCount} files`);
  t.end();
});

t.test('package.json: no install script, metadata complete, prepare never runs for consumers', (t) => {
  const scripts = pkg.scripts ?? {};
  for (const hook of ['preinstall', 'install', 'postinstall']) t.notOk(scripts[hook], `no ${hook} script`);
  t.equal(pkg.gypfile, false, 'gypfile: false, so npm does not invent `node-gyp rebuild` for binding.gyp');
  t.notOk(scripts.prepare?.includes('install'), 'prepare (run in a clone, never for a registry tarball) builds only');
  t.same(pkg.os, ['linux']);
  t.same(pkg.cpu, ['x64', 'arm64']);
  t.match(pkg.engines?.node, /^>=\d+$/);
  t.equal(pkg.license, 'Apache-2.0');
  t.ok((pkg.keywords ?? []).includes('netlink') && (pkg.keywords ?? []).includes('macvtap'), 'keywords');
  t.same(Object.keys(pkg.dependencies ?? {}), ['node-addon-api'], 'the only dependency: node-addon-api, for a source build');
  t.end();
});

t.test('installed with --ignore-scripts, a strict TypeScript consumer type-checks and drives the kernel', { skip: rootOnly }, (t) => {
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'macvtap-consumer-'));
  t.teardown(() => fs.rmSync(work, { recursive: true, force: true }));
  const packed = run('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', work], ROOT);
  t.equal(packed.status, 0, packed.stderr);
  const [{ filename }] = JSON.parse(packed.stdout) as PackResult[];

  const project = path.join(work, 'consumer');
  fs.mkdirSync(project);
  fs.writeFileSync(path.join(project, 'package.json'), JSON.stringify({ name: 'consumer', version: '1.0.0', private: true }));
  const tools = ['typescript', '@types/node'].map((name) => {
    const installed = JSON.parse(fs.readFileSync(path.join(ROOT, 'node_modules', name, 'package.json'), 'utf8')) as { version: string };
    return `${name}@${installed.version}`;
  });
  const install = run(
    'npm',
    ['install', '--ignore-scripts', '--prefer-offline', '--no-package-lock', path.join(work, filename), ...tools],
    project,
  );
  t.equal(install.status, 0, `npm install: ${install.stderr}`);
  const installedDir = path.join(project, 'node_modules', 'macvtap-cni');
  t.notOk(fs.existsSync(path.join(installedDir, 'build')), 'nothing was compiled: the prebuild is what loads');

  fs.copyFileSync(path.join(__dirname, 'consumer.ts.txt'), path.join(project, 'consumer.ts'));
  fs.writeFileSync(
    path.join(project, 'tsconfig.json'),
    JSON.stringify({
      compilerOptions: { strict: true, skipLibCheck: false, module: 'node16', target: 'es2022', types: ['node'], outDir: 'out' },
      files: ['consumer.ts'],
    }),
  );
  const tsc = run(process.execPath, [path.join(project, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', project], project);
  t.equal(tsc.status, 0, `tsc (strict, skipLibCheck false): ${tsc.stdout}${tsc.stderr}`);
  if (tsc.status !== 0) return t.end();

  const host = makeLowerNetns(t, { prefix: 'mvtpkg' });
  const pod = makeNetns(t, 'mvtpkgpod');
  const [ifindex] = claimIfindexes(t, 1);
  const consumer = run(process.execPath, [path.join(project, 'out', 'consumer.js'), host.ns, host.lower, pod, String(ifindex)], project);
  t.equal(consumer.status, 0, consumer.stderr);
  const seen = JSON.parse(consumer.stdout || '{}') as Record<string, unknown>;
  t.same(seen.created, { name: 'pkg0', index: ifindex, kind: 'macvtap', mode: 'bridge' }, 'created');
  t.same(seen.moved, { name: 'net1', index: ifindex, mtu: 1400, alias: 'packed', mac: '02:00:5e:00:53:10' }, 'set, moved and read back');
  t.equal(seen.leftOnHost, null, 'gone from the host namespace after the move');
  t.match(seen.error, { code: 'ENODEV', name: 'NetlinkError', operation: String }, 'a NetlinkError with its code');
  t.equal(seen.afterDelete, null, 'deleted');
  t.notOk(ipLink(pod, 'net1'), 'the oracle agrees: nothing left in the pod namespace');
  t.notOk(ipLink(host.ns, 'pkg0'), 'nor in the host namespace');

  // A damaged install (here: the other architecture's addon in this one's place): the loader's error names
  // every path it tried, why each failed, and what to do.
  const prebuilt = path.join(installedDir, 'prebuilds', `linux-${process.arch}`, 'macvtap_native.node');
  const other = ARCHES.find((a) => a !== process.arch) ?? 'arm64';
  fs.copyFileSync(path.join(installedDir, 'prebuilds', `linux-${other}`, 'macvtap_native.node'), prebuilt);
  const broken = run(process.execPath, ['-e', "require('macvtap-cni').Netns.current()"], project);
  t.not(broken.status, 0);
  const message = /Error: (macvtap-cni: cannot load[\s\S]*?)\n\s+at /.exec(broken.stderr)?.[1] ?? broken.stderr;
  t.match(message, `cannot load the native addon macvtap_native.node for linux-${process.arch}. Tried:`);
  t.match(message, `  ${prebuilt}: `, 'the prebuild, with the loader error');
  t.match(message, `  ${path.join(installedDir, 'build', 'Release', 'macvtap_native.node')}: not found`, 'the local build path');
  t.match(message, /Reinstall the package .* or build it from source .*npx node-gyp rebuild/, 'and what the user can do');
  t.end();
});
