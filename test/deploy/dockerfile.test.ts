/**
 * deploy/Dockerfile read as text (fast, no container engine; test/deploy/image.test.ts builds and runs it):
 * the bases are build arguments defaulting to the public Debian images, every file the build stage copies
 * is in the repository and passes the context filter, every npm script it runs exists, the runtime stage
 * runs nothing and only takes the build stage's file tree, and the DaemonSet runs what that tree holds.
 */
import t from 'tap';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
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

/** ARGs before the first FROM, stages (comments dropped, continuation lines joined). */
function parseDockerfile(text: string): { globalArgs: Map<string, string>; stages: Stage[] } {
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
      const f = /^(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?$/i.exec(args);
      if (!f) throw new Error(`cannot parse FROM ${args}`);
      stages.push({ from: f[1], name: f[2], instructions: [] });
    } else {
      const stage = stages.at(-1);
      if (!stage) throw new Error(`${op} before FROM`);
      stage.instructions.push({ op, args });
    }
  }
  return { globalArgs, stages };
}

/** COPY [--from=X] src... dest -> { from, sources, dest }. */
function copies(stage: Stage): { from: string | undefined; sources: string[]; dest: string }[] {
  return stage.instructions
    .filter((i) => i.op === 'COPY')
    .map((i) => {
      const words = i.args.split(/\s+/);
      const from = words.find((f) => f.startsWith('--from='))?.slice('--from='.length);
      const rest = words.filter((w) => !w.startsWith('--'));
      return { from, sources: rest.slice(0, -1), dest: rest.at(-1) ?? '' };
    });
}

/** True if the context filter (one pattern per line, top-level names and `**` globs only) drops `rel`. */
function ignored(patterns: string[], rel: string): boolean {
  const top = rel.split('/')[0];
  return patterns.some(
    (p) => p === top || p === rel.replace(/\/$/, '') || (p.startsWith('**/') && rel.endsWith(p.slice(3).replace('*', ''))),
  );
}

const { globalArgs, stages } = parseDockerfile(fs.readFileSync(DOCKERFILE, 'utf8'));
const build = stages.find((s) => s.name === 'build');
const runtime = stages.at(-1);

t.test('the bases are build arguments that default to the public Debian images', (t) => {
  t.equal(stages.length, 2);
  t.ok(build && runtime && build !== runtime, 'a build stage and a runtime stage');
  t.equal(build?.from, '${BUILD_BASE}');
  t.equal(runtime?.from, '${RUNTIME_BASE}');
  t.match(globalArgs.get('BUILD_BASE'), /^debian:[a-z]+$/, 'the build stage defaults to a Debian release');
  t.match(globalArgs.get('RUNTIME_BASE'), /^debian:[a-z]+-slim$/, 'the runtime stage defaults to its slim image');
  t.equal(
    globalArgs.get('RUNTIME_BASE'),
    `${globalArgs.get('BUILD_BASE')}-slim`,
    'of the same release (the addon is checked against glibc 2.28, whatever the build has)',
  );
  t.end();
});

t.test('the build stage copies only what the repository has and the context filter keeps', (t) => {
  const patterns = fs
    .readFileSync(`${DOCKERFILE}.dockerignore`, 'utf8')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'));
  for (const c of copies(build!)) {
    t.equal(c.from, undefined);
    for (const src of c.sources) {
      t.ok(fs.existsSync(path.join(ROOT, src)), `${src} exists`);
      t.notOk(ignored(patterns, src), `${src} is in the build context`);
    }
  }
  for (const dropped of ['node_modules', 'dist', 'build', 'prebuilds'])
    t.ok(ignored(patterns, dropped), `${dropped} (local build output) stays out`);
  const scripts = (JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> }).scripts;
  const runs = build!.instructions
    .filter((i) => i.op === 'RUN')
    .map((i) => i.args)
    .join('\n');
  const used = [...runs.matchAll(/npm run ([\w:-]+)/g)].map((m) => m[1]);
  t.same(used, ['build:host'], 'one script builds everything: the addon, the bundles, the executables');
  for (const s of used) t.ok(scripts[s], `package.json has the ${s} script`);
  t.match(runs, /npm ci --ignore-scripts/, 'dependencies come from the lockfile, with no install scripts');
  t.end();
});

t.test('the runtime stage runs nothing and takes only the build stage file tree', (t) => {
  t.same(
    runtime!.instructions.filter((i) => i.op === 'RUN'),
    [],
    'no RUN (no package manager layer, no emulation when building for another architecture)',
  );
  t.same(
    copies(runtime!).map((c) => [c.from, c.sources, c.dest]),
    [['build', ['/out/root/'], '/']],
  );
  const cmd = runtime!.instructions.find((i) => i.op === 'CMD');
  t.same(JSON.parse(cmd?.args ?? 'null'), ['/usr/local/bin/macvtap-deviceplugin']);
  t.end();
});

function renderedDaemonSet(): { spec: { template: { spec: PodSpec } } } | undefined {
  const out = spawnSync('kubectl', ['kustomize', path.join(ROOT, 'deploy')], { encoding: 'utf8' });
  if (out.error || out.status !== 0) return undefined;
  return parseAllDocuments(out.stdout)
    .map((d) => d.toJS() as { kind: string; spec: { template: { spec: PodSpec } } })
    .find((o) => o.kind === 'DaemonSet');
}
interface PodSpec {
  initContainers: { command: string[] }[];
  containers: { command: string[] }[];
}

const ds = renderedDaemonSet();
const noDaemonSet = ds ? false : 'kubectl is not installed: cannot render the DaemonSet with kustomize';

t.test('the DaemonSet runs the files the build stage puts in the image', { skip: noDaemonSet }, (t) => {
  if (!ds) return t.end();
  const runs = build!.instructions
    .filter((i) => i.op === 'RUN')
    .map((i) => i.args)
    .join('\n');
  const installed = [...runs.matchAll(/install -D -m 0755 \S+ \$root(\S+);/g)].map((m) => m[1]).sort();
  t.same(installed, ['/usr/local/bin/install-cni', '/usr/local/bin/macvtap', '/usr/local/bin/macvtap-deviceplugin']);
  const pod = ds.spec.template.spec;
  t.equal(pod.initContainers[0].command[0], '/usr/local/bin/install-cni');
  t.equal(pod.initContainers[0].command[1], '/usr/local/bin/macvtap');
  t.equal(pod.containers[0].command[0], '/usr/local/bin/macvtap-deviceplugin');
  t.end();
});
