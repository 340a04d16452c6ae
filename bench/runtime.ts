/**
 * The embedded runtime, old against new, in one run: the host executables built around the machine's Node
 * (the runtime they embedded before: Node 20) and around the pinned Node (deploy/runtime), with the same
 * sources, addon and build options. For each: start-up to the end of `CNI_COMMAND=VERSION`, and a full ADD
 * (then DEL, not timed) of a prepared macvtap into a pod namespace, from inside a scratch host namespace.
 * Runs alternate between the two builds so that load on the machine hits both alike. Needs root.
 *
 *   npm run bench:runtime [-- --runs=N] [-- --old-node=PATH]
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { lowerWithMacvtaps } from './hostns';
import { median } from './stats';

const ROOT = path.resolve(__dirname, '..', '..');
const IFINDEX = 59_900;

function arg(name: string): string | undefined {
  return process.argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);
}

function run(
  cmd: string,
  args: string[],
  opts: { input?: string; env?: NodeJS.ProcessEnv } = {},
): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(cmd, args, { encoding: 'utf8', input: opts.input ?? '', env: opts.env ?? process.env, timeout: 600_000 });
  return { status: r.status, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
}

function must(cmd: string, args: string[], opts: { input?: string; env?: NodeJS.ProcessEnv } = {}): string {
  const r = run(cmd, args, opts);
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.stderr || r.stdout}`);
  return r.stdout;
}

/** The machine's own Node: the first `node` on PATH outside this repository (npm puts the pinned one first). */
function machineNode(): string {
  const explicit = arg('old-node');
  if (explicit) return explicit;
  const found = must('sh', ['-c', 'which -a node nodejs || true'])
    .split('\n')
    .filter(Boolean)
    .map((p) => fs.realpathSync(p))
    .find((p) => !p.startsWith(`${ROOT}/`));
  if (!found) throw new Error('no machine Node outside the repository; pass --old-node=PATH');
  return found;
}

interface Build {
  label: string;
  dir: string;
  version: string;
}

function build(label: string, out: string, extra: string[]): Build {
  must(process.execPath, [path.join(ROOT, 'deploy', 'build-host.mjs'), `--out=${out}`, ...extra]);
  const info = JSON.parse(fs.readFileSync(path.join(out, 'macvtap.build.json'), 'utf8')) as { node: string };
  return { label, dir: out, version: info.node };
}

/**
 * A fresh copy of the build's CNI executable, as the DaemonSet's install step makes one. A file's page-cache
 * state changes how fast it starts: on this VM the same executable started 4 ms (10%) slower from a file built
 * an hour earlier than from a fresh copy of it (fewer, larger page-cache folios to map). Copying both builds
 * the same way, in the same run, keeps that out of the comparison.
 */
function installed(b: Build, dir: string): Build {
  fs.mkdirSync(dir, { recursive: true });
  fs.copyFileSync(path.join(b.dir, 'macvtap'), path.join(dir, 'macvtap'));
  fs.chmodSync(path.join(dir, 'macvtap'), 0o755);
  return { ...b, dir };
}

function ms(start: bigint): number {
  return Number(process.hrtime.bigint() - start) / 1e6;
}

/** Inside the scratch host namespace: alternate VERSION and ADD/DEL of each build. */
function inner(podNs: string, stateDir: string, builds: Build[], runs: number): void {
  const config = JSON.stringify({ cniVersion: '1.1.0', name: 'bench', type: 'macvtap', deviceID: 'mvtrt0' });
  const env = (command: string): NodeJS.ProcessEnv => ({
    PATH: '/usr/sbin:/usr/bin:/sbin:/bin',
    CNI_COMMAND: command,
    CNI_CONTAINERID: 'bench',
    CNI_NETNS: `/var/run/netns/${podNs}`,
    CNI_IFNAME: 'net1',
    MACVTAP_CNI_STATE_DIR: stateDir,
  });
  const times = builds.map(() => ({ version: [] as number[], add: [] as number[] }));
  for (let i = 0; i < runs + 2; i++) {
    builds.forEach((b, j) => {
      const exe = path.join(b.dir, 'macvtap');
      let start = process.hrtime.bigint();
      must(exe, [], { env: env('VERSION'), input: '{"cniVersion":"1.1.0"}' });
      const version = ms(start);
      start = process.hrtime.bigint();
      must(exe, [], { env: env('ADD'), input: config });
      const add = ms(start);
      must(exe, [], { env: env('DEL'), input: config });
      // The first two rounds warm the page cache and the file system; they are not counted.
      if (i >= 2) {
        times[j].version.push(version);
        times[j].add.push(add);
      }
    });
  }
  const [old, now] = times.map((t) => ({ version: median(t.version), add: median(t.add) }));
  const row = (what: string, o: number, n: number): string =>
    `| ${what} | ${o.toFixed(1)} ms | ${n.toFixed(1)} ms | ${(n / o).toFixed(2)}× |`;
  console.log(`\nmedians of ${runs} runs each, alternating, on ${os.cpus().length} CPUs (${os.loadavg()[0].toFixed(1)} load)\n`);
  console.log(`| | ${builds[0].label} (${builds[0].version}) | ${builds[1].label} (${builds[1].version}) | new / old |`);
  console.log('|---|---|---|---|');
  console.log(row('`macvtap` VERSION', old.version, now.version));
  console.log(row('`macvtap` ADD of a prepared macvtap', old.add, now.add));
}

function main(): void {
  if (process.argv[2] === '--inner') {
    const [, , , podNs, stateDir, runs, ...dirs] = process.argv;
    const builds = dirs.map((d) => JSON.parse(d) as Build);
    inner(podNs, stateDir, builds, Number(runs));
    return;
  }
  if (process.getuid?.() !== 0) throw new Error('needs root (network namespaces)');
  const runs = Number(arg('runs') ?? 30);
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'macvtap-bench-runtime-'));
  const hostNs = `mvtrt-host-${process.pid}`;
  const podNs = `mvtrt-pod-${process.pid}`;
  try {
    const oldNode = machineNode();
    const builds = [
      build('old runtime', path.join(work, 'old'), [`--node=${oldNode}`]),
      build('new runtime', path.join(ROOT, 'dist', 'host'), []),
    ].map((b, i) => installed(b, path.join(work, `installed-${i}`)));
    must('ip', ['netns', 'add', hostNs]);
    must('ip', ['netns', 'add', podNs]);
    for (const args of lowerWithMacvtaps(hostNs, [{ name: 'mvtrt0', index: IFINDEX }])) must('ip', args);
    const stateDir = path.join(work, 'state');
    const r = spawnSync(
      'ip',
      [
        'netns',
        'exec',
        hostNs,
        process.execPath,
        __filename,
        '--inner',
        podNs,
        stateDir,
        String(runs),
        ...builds.map((b) => JSON.stringify(b)),
      ],
      { stdio: 'inherit' },
    );
    if (r.status !== 0) process.exitCode = r.status ?? 1;
  } finally {
    run('ip', ['netns', 'del', podNs]);
    run('ip', ['netns', 'del', hostNs]);
    fs.rmSync(`/dev/tap${IFINDEX}`, { force: true });
    fs.rmSync(work, { recursive: true, force: true });
  }
}

main();
