/**
 * Many pods at once (`npm run bench:concurrent`): N concurrent ADDs (default 50), each of its own device into
 * its own pod namespace, then N concurrent DELs; ours (dist/host/macvtap as deployed) against kubevirt's Go
 * plugin in the same run, alternating which goes first from round to round. Reports the total wall time of
 * each burst, the slowest single ADD, and that against the single-ADD median measured (sequentially,
 * interleaved) in the same run: issue 14's goal 3 is ours' total ≤ upstream's, and no ADD slower than 3× the
 * single-ADD median (per-device locks must not serialise unrelated devices).
 *
 *   npm run bench:concurrent -- [--pods N] [--rounds R] [--singles S] [--exe PATH] [--upstream PATH]
 *
 * Needs root. Scratch namespaces (one node, N pods) and a temp dir, removed at exit, on error and on signals.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import { Netns } from '../lib/netlink';
import {
  checkAddResult,
  cniEnv,
  device,
  fmt,
  intOption,
  makeLower,
  netConf,
  POD_IFNAME,
  prepare,
  ratio,
  reexecInside,
  resolvePaths,
  runAsync,
  runSync,
  Scratch,
  type Device,
} from './cni-support';
import { median } from './stats';

/** bench:cni uses 62000-62099; the test fixtures 20000-60000. Ours at FIRST, upstream's at FIRST + 100. */
const FIRST_INDEX = 62100;
const MAX_PODS = 100;

type Who = 'ours' | 'upstream';

function outer(): void {
  if (process.getuid?.() !== 0) throw new Error('bench:concurrent needs root (it creates network namespaces)');
  const pods = intOption('pods', 50, 1, MAX_PODS);
  const scratch = new Scratch();
  try {
    const node = scratch.netns(`mvcc-${process.pid}-node`);
    for (let i = 0; i < pods; i++) scratch.netns(`mvcc-${process.pid}-pod${i}`);
    const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'macvtap-bench-cc-'));
    scratch.dirs.push(stateDir);
    for (let i = 0; i < pods; i++) scratch.tapIndexes.push(FIRST_INDEX + i, FIRST_INDEX + MAX_PODS + i);
    makeLower(node);
    process.exitCode = reexecInside(node, __filename, [`mvcc-${process.pid}-pod`, stateDir]);
  } finally {
    scratch.cleanup();
  }
}

interface Burst {
  addWall: number;
  delWall: number;
  slowestAdd: number;
}

async function inner(podPrefix: string, stateDir: string): Promise<void> {
  const pods = intOption('pods', 50, 1, MAX_PODS);
  const rounds = intOption('rounds', 3, 1, 100);
  const singles = intOption('singles', 10, 3, 1000);
  const paths = resolvePaths();
  const host = Netns.current();
  const lower = host.getLinkSync('lower0');
  if (!lower) throw new Error('lower0 missing');
  const exes: Partial<Record<Who, string>> = { ours: paths.exe, upstream: paths.upstream };
  const contenders = (Object.keys(exes) as Who[]).filter((w) => exes[w] !== undefined);
  const devs = (who: Who): Device[] =>
    Array.from({ length: pods }, (_, i) => device(`bench-${who}-${i}`, FIRST_INDEX + (who === 'ours' ? 0 : MAX_PODS) + i));
  const netns = (i: number): string => `/var/run/netns/${podPrefix}${i}`;
  const env = (who: Who, cmd: string, i: number, d: Device): NodeJS.ProcessEnv =>
    cniEnv(cmd, { netns: netns(i), containerId: `cc-${who}-${i}`, stateDir, mac: d.mac });

  /** N ADDs at once, then (when all are in) N DELs at once. Links are made afresh first, untimed. */
  const burst = async (who: Who): Promise<Burst> => {
    const exe = exes[who] as string;
    const ds = devs(who);
    for (const d of ds) prepare(host, lower.index, d);
    let start = performance.now();
    const adds = await Promise.all(ds.map((d, i) => runAsync(exe, env(who, 'ADD', i, d), netConf(d.deviceID), `${who} ADD ${i}`)));
    const addWall = performance.now() - start;
    adds.forEach((a, i) => checkAddResult(a.stdout, ds[i].mac, `${who} ADD ${i}`));
    start = performance.now();
    await Promise.all(ds.map((d, i) => runAsync(exe, env(who, 'DEL', i, d), netConf(d.deviceID), `${who} DEL ${i}`)));
    const delWall = performance.now() - start;
    for (let i = 0; i < pods; i++) {
      const pod = Netns.open(netns(i));
      const left = pod.getLinkSync(POD_IFNAME);
      pod.close();
      if (left) throw new Error(`${who} DEL ${i} left ${POD_IFNAME} in the pod`);
    }
    return { addWall, delWall, slowestAdd: Math.max(...adds.map((a) => a.ms)) };
  };
  /** One ADD (and its DEL), alone: the single-ADD median's samples. */
  const single = (who: Who): number => {
    const exe = exes[who] as string;
    const d = devs(who)[0];
    prepare(host, lower.index, d);
    const ms = runSync(exe, [], env(who, 'ADD', 0, d), netConf(d.deviceID), `${who} ADD`).ms;
    runSync(exe, [], env(who, 'DEL', 0, d), netConf(d.deviceID), `${who} DEL`);
    return ms;
  };

  const singleMs = new Map<Who, number[]>(contenders.map((w) => [w, []]));
  const bursts = new Map<Who, Burst[]>(contenders.map((w) => [w, []]));
  for (const w of contenders) single(w); // warm-up
  for (let r = 0; r < rounds; r++) {
    const order = r % 2 ? [...contenders].reverse() : contenders;
    for (let s = 0; s < Math.ceil(singles / rounds); s++) for (const w of order) singleMs.get(w)?.push(single(w));
    for (const w of order) bursts.get(w)?.push(await burst(w));
  }
  host.close();

  const [load1] = os.loadavg();
  console.log(
    `\nbench:concurrent — ${pods} concurrent ADDs on distinct devices into ${pods} pods, then ${pods} DELs; ${rounds} round(s), ` +
      `medians over rounds; ${os.cpus().length} CPUs, load average ${load1.toFixed(1)} at the end\n`,
  );
  const m = (who: Who, f: (b: Burst) => number): number => median((bursts.get(who) as Burst[]).map(f));
  const line = (what: string, f: (w: Who) => number): string => {
    const cells = contenders.map((w) => fmt(f(w)));
    const rat = contenders.length === 2 ? ratio(f('ours'), f('upstream')) : '—';
    return `| ${what} | ${contenders.length === 2 ? cells[1] : '—'} | ${cells[0]} | ${rat} |`;
  };
  console.log('| | upstream (Go) | ours (host executable) | ours / upstream |');
  console.log('|---|---|---|---|');
  console.log(line(`${pods} ADDs, wall`, (w) => m(w, (b) => b.addWall)));
  console.log(line(`${pods} DELs, wall`, (w) => m(w, (b) => b.delWall)));
  console.log(line('ADDs + DELs, wall', (w) => m(w, (b) => b.addWall + b.delWall)));
  console.log(line('slowest ADD of the burst', (w) => m(w, (b) => b.slowestAdd)));
  console.log(line('single ADD median (same run)', (w) => median(singleMs.get(w) as number[])));
  const slow = (w: Who): number => m(w, (b) => b.slowestAdd) / median(singleMs.get(w) as number[]);
  console.log(
    `| slowest ADD / single ADD median | ${contenders.length === 2 ? slow('upstream').toFixed(1) : '—'}× | ${slow('ours').toFixed(1)}× | |`,
  );

  console.log('\ngoal 3 (issue 14):');
  if (contenders.length === 2) {
    const ours = m('ours', (b) => b.addWall + b.delWall);
    const up = m('upstream', (b) => b.addWall + b.delWall);
    console.log(`  total wall ≤ upstream's: ${fmt(ours)} vs ${fmt(up)} (${ratio(ours, up)}) — ${ours <= up ? 'met' : 'NOT met'}`);
  } else console.log("  total wall ≤ upstream's: skipped (no upstream plugin)");
  console.log(`  no ADD slower than 3× the single-ADD median: ${slow('ours').toFixed(1)}× — ${slow('ours') <= 3 ? 'met' : 'NOT met'}`);
}

const at = process.argv.indexOf('--inner');
const main = async (): Promise<void> => (at >= 0 ? inner(process.argv[at + 1], process.argv[at + 2]) : outer());
main().catch((err: unknown) => {
  console.error(`bench:concurrent: ${(err as Error).message}`);
  process.exitCode = 1;
});
