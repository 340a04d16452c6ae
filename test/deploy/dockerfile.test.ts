/**
 * deploy/Dockerfile, checked without a Docker engine: every file the build stage copies is in the
 * repository and passes the context filter, every npm script it runs exists, the runtime stage ships exactly
 * the executables `npm run build:host` makes, at the paths the DaemonSet runs, on a base that has the tools
 * the DaemonSet's shell lines call and the libraries the executables link. The DaemonSet's install script is
 * run for real against a scratch directory standing in for the host's CNI bin directory.
 */
import t from 'tap';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseAllDocuments } from 'yaml';

const ROOT = path.resolve(__dirname, '..', '..');
const DOCKERFILE = path.join(ROOT, 'deploy', 'Dockerfile');

interface Instruction {
  op: string;
  args: string;
}
interface Stage {
  from: string;
  name: string | undefined;
  instructions: Instruction[];
}

/** Stages of a Dockerfile (comments dropped, continuation lines joined, ARGs before FROM substituted). */
function parseDockerfile(text: string): Stage[] {
  const logical: string[] = [];
  let current = '';
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line.startsWith('#') || (line === '' && current === '')) continue;
    if (line.endsWith('\\')) {
      current += `${line.slice(0, -1)} `;
      continue;
    }
    current += line;
    if (current.trim()) logical.push(current.trim());
    current = '';
  }
  const globalArgs = new Map<string, string>();
  const stages: Stage[] = [];
  for (const line of logical) {
    const m = /^(\w+)\s+(.*)$/.exec(line);
    if (!m) throw new Error(`cannot parse Dockerfile line: ${line}`);
    const op = m[1].toUpperCase();
    const args = m[2];
    if (op === 'ARG' && stages.length === 0) {
      const [k, v = ''] = args.split('=');
      globalArgs.set(k, v);
    } else if (op === 'FROM') {
      const f = /^(\S+)(?:\s+AS\s+(\S+))?$/i.exec(args.replace(/\$\{(\w+)\}/g, (_, k) => globalArgs.get(k) ?? ''));
      if (!f) throw new Error(`cannot parse FROM ${args}`);
      stages.push({ from: f[1], name: f[2], instructions: [] });
    } else {
      stages.at(-1)!.instructions.push({ op, args });
    }
  }
  return stages;
}

/** COPY [--from=X] src... dest -> { from, sources, dest }. */
function copies(stage: Stage): { from: string | undefined; sources: string[]; dest: string }[] {
  return stage.instructions
    .filter((i) => i.op === 'COPY')
    .map((i) => {
      const words = i.args.split(/\s+/);
      const flags = words.filter((w) => w.startsWith('--'));
      const rest = words.filter((w) => !w.startsWith('--'));
      const from = flags.find((f) => f.startsWith('--from='))?.slice('--from='.length);
      return { from, sources: rest.slice(0, -1), dest: rest.at(-1)! };
    });
}

/** True if the context filter (one pattern per line, top-level names and `**` globs only) drops `rel`. */
function ignored(patterns: string[], rel: string): boolean {
  const top = rel.split('/')[0];
  return patterns.some(
    (p) => p === top || p === rel.replace(/\/$/, '') || (p.startsWith('**/') && rel.endsWith(p.slice(3).replace('*', ''))),
  );
}

const stages = parseDockerfile(fs.readFileSync(DOCKERFILE, 'utf8'));
const build = stages.find((s) => s.name === 'build')!;
const runtime = stages.at(-1)!;

function renderedDaemonSet(): any | undefined {
  const out = spawnSync('kubectl', ['kustomize', path.join(ROOT, 'deploy')], { encoding: 'utf8' });
  if (out.error || out.status !== 0) return undefined;
  return parseAllDocuments(out.stdout)
    .map((d) => d.toJS())
    .find((o) => o.kind === 'DaemonSet');
}
const ds = renderedDaemonSet();
const noDaemonSet = ds ? false : 'kubectl is not installed: cannot render the DaemonSet with kustomize';

t.test('two stages: a build stage and a small runtime stage', async (t) => {
  t.equal(stages.length, 2);
  t.match(build.from, /^node:20-/, 'builds with Node 20, the version the executables embed');
  t.match(runtime.from, /^debian:[a-z]+-slim$/, 'ships on Debian slim');
  t.notOk(
    runtime.instructions.some((i) => i.op === 'RUN'),
    'the runtime stage runs nothing (no package manager layers)',
  );
});

t.test('the build stage copies only what the repository has and the context filter keeps', async (t) => {
  const patterns = fs
    .readFileSync(`${DOCKERFILE}.dockerignore`, 'utf8')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'));
  for (const c of copies(build)) {
    t.equal(c.from, undefined);
    for (const src of c.sources) {
      t.ok(fs.existsSync(path.join(ROOT, src)), `${src} exists`);
      t.notOk(ignored(patterns, src), `${src} is in the build context`);
    }
  }
  for (const c of copies(runtime).filter((c) => c.from === undefined)) {
    for (const src of c.sources) t.ok(fs.existsSync(path.join(ROOT, src)) && !ignored(patterns, src), `${src} is in the build context`);
  }
  for (const dropped of ['node_modules', 'dist', 'build']) t.ok(ignored(patterns, dropped), `${dropped} (local build output) stays out`);
  const scripts = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')).scripts as Record<string, string>;
  const runs = build.instructions
    .filter((i) => i.op === 'RUN')
    .map((i) => i.args)
    .join('\n');
  const used = [...runs.matchAll(/npm run ([\w:-]+)/g)].map((m) => m[1]);
  t.same(used, ['build:addon', 'build:host']);
  for (const s of used) t.ok(scripts[s], `package.json has the ${s} script`);
  t.equal(scripts['build:host'], 'node deploy/build-host.mjs');
});

t.test('the runtime stage ships the executables build:host makes, where the DaemonSet runs them', { skip: noDaemonSet }, async (t) => {
  const workdir = build.instructions.filter((i) => i.op === 'WORKDIR').at(-1)!.args;
  const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8'));
  const programs = Object.keys(pkg.bin).sort();
  const builderSource = fs.readFileSync(path.join(ROOT, 'deploy', 'build-host.mjs'), 'utf8');
  const built = [...builderSource.matchAll(/src: 'bin\/([\w-]+)\.ts'/g)].map((m) => m[1]).sort();
  t.same(built, programs, 'build:host makes one executable per package bin');

  const shipped = new Map<string, string>();
  for (const c of copies(runtime).filter((c) => c.from === 'build')) {
    t.equal(c.sources.length, 1);
    shipped.set(path.posix.relative(path.posix.join(workdir, 'dist', 'host'), c.sources[0]), c.dest);
  }
  t.same([...shipped.keys()].sort(), programs, 'each one is copied from dist/host/ of the build stage');

  const pod = ds.spec.template.spec;
  const main = pod.containers[0];
  t.equal(main.command[0], shipped.get('macvtap-deviceplugin'), 'the daemon container runs the shipped device plugin');
  const script: string = pod.initContainers[0].command.at(-1);
  const cp = /cp (\S+) "\$tmp"/.exec(script);
  t.equal(cp?.[1], shipped.get('macvtap'), 'the init container installs the shipped CNI plugin');
  const cmd = runtime.instructions.find((i) => i.op === 'CMD');
  t.same(JSON.parse(cmd!.args), [shipped.get('macvtap-deviceplugin')]);
});

const noDpkg = spawnSync('dpkg-query', ['--version']).error
  ? 'dpkg is not installed: cannot tell which Debian package provides a file'
  : false;
const packageOf = (file: string): string => {
  const out = spawnSync('dpkg', ['-S', file], { encoding: 'utf8' });
  const owner = out.stdout.split('\n').find((l) => l && !l.startsWith('diversion '));
  return out.status === 0 && owner ? owner.split(':')[0] : '';
};
const field = (pkg: string, f: string): string => spawnSync('dpkg-query', ['-W', `-f=\${${f}}`, pkg], { encoding: 'utf8' }).stdout;

t.test('the runtime base has the tools the DaemonSet calls', { skip: noDaemonSet || noDpkg }, async (t) => {
  // Shell lines of the DaemonSet: the init script and the probes.
  const pod = ds.spec.template.spec;
  const lines: string[] = [
    pod.initContainers[0].command.at(-1),
    ...[pod.containers[0].readinessProbe, pod.containers[0].livenessProbe].map((p) => p.exec.command.at(-1)),
  ];
  const shellWords = new Set(['set', 'trap', 'echo', 'then', 'fi', 'if', 'tmp=', 'EXIT', '-']);
  const tools = new Set<string>(['sh']);
  // Commands quoted for later (trap's handler) count too.
  for (const line of [...lines, ...lines.flatMap((l) => [...l.matchAll(/'([^']*)'/g)].map((m) => m[1]))]) {
    for (const cmd of line.split(/\n|;|\$\(|&&|\|\|/)) {
      const word = cmd
        .trim()
        .replace(/^tmp="/, '')
        .split(/\s+/)[0];
      if (word && /^[a-z][\w-]*$/.test(word) && !shellWords.has(word)) tools.add(word);
    }
  }
  t.same([...tools].sort(), ['chmod', 'cp', 'ls', 'mktemp', 'mv', 'rm', 'sh'], 'the tools found in the shell lines');
  for (const tool of tools) {
    const pkg = packageOf(`/bin/${tool}`);
    t.equal(field(pkg, 'Essential'), 'yes', `${tool} comes from ${pkg || '?'}, an Essential package (in every Debian image)`);
  }
});

// The executables are a copy of this node binary with a blob injected, so they link what it links; use the
// built one when present (test files run in parallel, so it may not be built yet).
const hostExe = path.join(ROOT, 'dist', 'host', 'macvtap');
const exe = fs.existsSync(hostExe) ? hostExe : process.execPath;

t.test('the runtime base has the libraries the executables link', { skip: noDpkg }, async (t) => {
  // libc6, libgcc-s1 and libstdc++6 are not Essential, but apt (in every debian:*-slim) depends on them.
  const needed = [...spawnSync('readelf', ['-d', exe], { encoding: 'utf8' }).stdout.matchAll(/\(NEEDED\)\s+Shared library: \[(.+)\]/g)].map(
    (m) => m[1],
  );
  t.ok(needed.length > 0);
  const aptDepends = field('apt', 'Depends')
    .split(/,|\|/)
    .map((d) => d.trim().split(/\s/)[0]);
  for (const lib of needed) {
    const found = spawnSync('sh', ['-c', `ldconfig -p | awk '$1 == "${lib}" && /x86-64/ {print $NF; exit}'`], {
      encoding: 'utf8',
    }).stdout.trim();
    const candidates = found ? [found, `/usr${found}`] : [`/lib64/${lib}`, `/usr/lib64/${lib}`];
    const pkg = candidates.map(packageOf).find(Boolean);
    t.ok(pkg && (field(pkg, 'Essential') === 'yes' || aptDepends.includes(pkg)), `${lib} (${pkg || '?'}) is in debian slim`);
  }
});

t.test("the init container's install script replaces the CNI executable by rename", { skip: noDaemonSet }, async (t) => {
  const script: string = ds.spec.template.spec.initContainers[0].command.at(-1);
  const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'macvtap-install-'));
  t.teardown(() => fs.rmSync(scratch, { recursive: true, force: true }));
  const binDir = path.join(scratch, 'opt-cni-bin');
  fs.mkdirSync(binDir);
  const source = path.join(scratch, 'macvtap-new');
  fs.writeFileSync(source, '#!/bin/sh\necho new\n', { mode: 0o644 });
  const target = path.join(binDir, 'macvtap');
  fs.writeFileSync(target, '#!/bin/sh\necho old\n', { mode: 0o755 });
  const oldIno = fs.statSync(target).ino;
  const oldFd = fs.openSync(target, 'r');
  t.teardown(() => fs.closeSync(oldFd));

  const run = (src: string) =>
    spawnSync('/bin/sh', ['-ec', script.replaceAll('/host/opt/cni/bin', binDir).replaceAll('/usr/local/bin/macvtap', src)], {
      encoding: 'utf8',
    });

  // A failed copy leaves the installed executable alone and no temporary file behind.
  const failed = run(path.join(scratch, 'missing'));
  t.not(failed.status, 0, 'a missing source fails the init container');
  t.same(fs.readdirSync(binDir), ['macvtap'], 'no temporary file left');
  t.equal(fs.statSync(target).ino, oldIno);
  t.equal(fs.readFileSync(target, 'utf8'), '#!/bin/sh\necho old\n');

  const ok = run(source);
  t.equal(ok.status, 0, ok.stderr);
  t.same(fs.readdirSync(binDir), ['macvtap'], 'no temporary file left');
  const st = fs.statSync(target);
  t.equal(fs.readFileSync(target, 'utf8'), '#!/bin/sh\necho new\n');
  t.equal(st.mode & 0o777, 0o755, 'executable');
  t.not(st.ino, oldIno, 'a new inode took the name (rename), not a rewrite in place');
  const buf = Buffer.alloc(64);
  const n = fs.readSync(oldFd, buf, 0, 64, 0);
  t.equal(buf.subarray(0, n).toString(), '#!/bin/sh\necho old\n', 'a runtime still executing the old file sees it whole');
});
