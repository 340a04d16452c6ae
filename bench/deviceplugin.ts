/**
 * The device plugin against kubevirt's Go plugin, side by side in one run (`npm run bench:deviceplugin`),
 * each driven over its real sockets by the same kubelet stand-in (test/support/kubelet.ts), each in a scratch
 * namespace of its own (see bench/dpprocs.ts for how each is run). Ours is the host executable as it ships.
 *
 * Measured (medians; ratios ours/upstream):
 *   - Allocate latency, 1 device and 20 devices a request, alternating between the two plugins;
 *   - RSS after start and after 1,000 Allocates, next to the embedded runtime idling (`bare`);
 *   - ours under a storm: 10,000 Allocates back to back (one in flight, as a kubelet sends them; every tenth
 *     of 20 devices) while 1,000 scrapes of /metrics run: RSS growth,
 *     peak RSS (VmHWM) and scrape time (measured inside the namespace, request to last byte);
 *   - lower device set down -> the stand-in has the Unhealthy list; kubelet restart -> re-registration;
 *   - idle CPU over --idle-seconds (default 60) from /proc/PID/stat, both plugins and bare at once.
 *
 * Options: --ours PATH (default dist/host/macvtap-deviceplugin), --upstream PATH (default
 * $MACVTAP_UPSTREAM_DIR or ../shared/upstream, then bin/upstream-macvtap-deviceplugin; skipped with a message
 * when absent), --rounds N (1-device requests, 200), --batches N (20-device requests, 50), --allocs N (1000),
 * --storm N (10000), --scrapes N (1000), --health-rounds N (5), --restarts N (3), --idle-seconds N (60).
 * Needs root. Everything lives in scratch namespaces and a temp directory, removed at exit, on error and on Ctrl-C.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Netns } from '../lib/netlink';
import type { KubeletStandIn } from '../test/support/kubelet';
import { NsHttp } from '../test/support/nshttp';
import {
  Cleanup,
  deployedNodeOptions,
  embeddedRuntime,
  METRICS_PORT,
  Node,
  procStat,
  RES,
  startBare,
  startOurs,
  startUpstream,
} from './dpprocs';
import { median } from './stats';

const ROOT = path.resolve(__dirname, '..', '..');
const MiB = 1048576;
const IDS = Array.from({ length: 100 }, (_, i) => `dataplaneMvp${i}`);

function option(name: string, fallback: number): number {
  const at = process.argv.findIndex((a) => a === `--${name}` || a.startsWith(`--${name}=`));
  if (at < 0) return fallback;
  const raw = process.argv[at].includes('=') ? process.argv[at].split('=')[1] : process.argv[at + 1];
  const value = Number(raw);
  if (!Number.isInteger(value) || value < 1 || value > 1000000)
    throw new RangeError(`--${name} must be a positive integer, got ${JSON.stringify(raw)}`);
  return value;
}
function pathOption(name: string): string | undefined {
  const at = process.argv.findIndex((a) => a === `--${name}` || a.startsWith(`--${name}=`));
  if (at < 0) return undefined;
  return process.argv[at].includes('=') ? process.argv[at].slice(process.argv[at].indexOf('=') + 1) : process.argv[at + 1];
}

const now = (): bigint => process.hrtime.bigint();
const ms = (from: bigint, to: bigint = now()): number => Number(to - from) / 1e6;
const sleep = (n: number): Promise<void> => new Promise((r) => setTimeout(r, n));
const p = (xs: number[], q: number): number => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(q * xs.length))];
const mib = (b: number): string => `${(b / MiB).toFixed(1)} MiB`;
const msf = (x: number): string => (Number.isFinite(x) ? `${x.toFixed(x < 10 ? 2 : 0)} ms` : 'never');

/** Time from setting lower0 down to the stand-in holding the all-Unhealthy list (Infinity: not within timeoutMs). */
async function healthDown(node: Node, handle: Netns, timeoutMs: number): Promise<number> {
  const t0 = now();
  handle.setLinkSync('lower0', { up: false });
  let took = Infinity;
  try {
    await node.kubelet.waitForDevices(RES, (l) => l.length === 100 && l.every((d) => d.health === 'Unhealthy'), timeoutMs);
    took = ms(t0, node.kubelet.updates(RES)[node.kubelet.updates(RES).length - 1].at);
  } catch {
    /* never reported */
  }
  handle.setLinkSync('lower0', { up: true });
  await node.kubelet.waitForDevices(RES, (l) => l.length === 100 && l.every((d) => d.health === 'Healthy'), 30000).catch(() => undefined);
  return took;
}

/** Time from a kubelet restart (every socket deleted, a fresh kubelet.sock) to the plugin's Register. */
async function restart(kubelet: KubeletStandIn, timeoutMs: number): Promise<number> {
  const t0 = now();
  await kubelet.restart();
  try {
    const reg = await kubelet.waitForRegistration(RES, timeoutMs);
    await kubelet.waitForDevices(RES, (l) => l.length === 100, timeoutMs);
    return ms(t0, reg.at);
  } catch {
    return Infinity;
  }
}

async function allocateTimed(node: Node, ids: string[]): Promise<number> {
  const t0 = now();
  await node.kubelet.allocate(RES, [ids]);
  return ms(t0);
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('needs root (it creates network namespaces and macvtaps)');
  const oursExe = path.resolve(pathOption('ours') ?? path.join(ROOT, 'dist/host/macvtap-deviceplugin'));
  if (!fs.existsSync(oursExe)) throw new Error(`${oursExe} is missing: run \`npm run build:host\` first`);
  const upstreamDir = process.env.MACVTAP_UPSTREAM_DIR ?? path.resolve(ROOT, '../shared/upstream');
  const upstreamExe = path.resolve(pathOption('upstream') ?? path.join(upstreamDir, 'bin/upstream-macvtap-deviceplugin'));
  const haveUpstream = fs.existsSync(upstreamExe) && !process.argv.includes('--no-upstream');
  const o = {
    rounds: option('rounds', 200),
    batches: option('batches', 50),
    allocs: option('allocs', 1000),
    storm: option('storm', 10000),
    scrapes: option('scrapes', 1000),
    health: option('health-rounds', 5),
    restarts: option('restarts', 3),
    idle: option('idle-seconds', 60),
  };
  const cleanups: Cleanup[] = [];
  const cleanup = async (): Promise<void> => {
    for (const fn of cleanups.reverse()) await Promise.resolve(fn()).catch(() => undefined);
    cleanups.length = 0;
  };
  const onSignal = (): void => void cleanup().then(() => process.exit(130));
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mvtbench-dp-'));
    cleanups.push(() => fs.rmSync(dir, { recursive: true, force: true }));
    const nodeOptions = pathOption('node-options') ?? deployedNodeOptions(ROOT);
    const runtime = embeddedRuntime(path.dirname(oursExe));
    console.log(`device plugin benchmark: ${os.cpus().length} CPUs, kernel ${os.release()}`);
    console.log(
      `ours: ${path.relative(process.cwd(), oursExe)} (NODE_OPTIONS=${JSON.stringify(nodeOptions)}); bare runtime: ${path.relative(process.cwd(), runtime)}`,
    );
    if (process.argv.includes('--no-upstream')) console.log('upstream: skipped (--no-upstream)');
    else if (!haveUpstream) console.log(`upstream: ${upstreamExe} not found: comparison skipped (set MACVTAP_UPSTREAM_DIR or --upstream)`);
    else console.log(`upstream: ${path.relative(process.cwd(), upstreamExe)}`);
    console.log('');

    const bare = startBare(cleanups, runtime);
    // Ours in 100000-199999: above every test's and benchmark's range, and room for the links retired by a storm.
    const ours = await startOurs(cleanups, dir, oursExe, nodeOptions, 100000);
    const up = haveUpstream ? await startUpstream(cleanups, dir, upstreamExe, 64000) : undefined;
    const nodes = up ? [ours, up] : [ours];
    await sleep(3000);
    const startStats = nodes.map((n) => procStat(n.pid));
    const atStart = startStats.map((s) => s.rss);
    const bareStat = procStat(bare.pid as number);
    const bareRss = bareStat.rss;

    // Warm-up, then latency, alternating between the plugins request by request.
    for (const n of nodes) for (let i = 0; i < 5; i++) await n.kubelet.allocate(RES, [[IDS[i]]]);
    const one = nodes.map((): number[] => []);
    for (let i = 0; i < o.rounds; i++) for (const [k, n] of nodes.entries()) one[k].push(await allocateTimed(n, [IDS[1 + (i % 99)]]));
    const twenty = nodes.map((): number[] => []);
    for (let b = 0; b < o.batches; b++)
      for (const [k, n] of nodes.entries()) twenty[k].push(await allocateTimed(n, IDS.slice((b % 5) * 20, (b % 5) * 20 + 20)));

    // RSS after --allocs single-device Allocates (counting those above), settled.
    for (const n of nodes) for (let i = o.rounds + o.batches; i < o.allocs; i++) await n.kubelet.allocate(RES, [[IDS[i % 100]]]);
    await sleep(5000);
    const allocStats = nodes.map((n) => procStat(n.pid));
    const afterAllocs = allocStats.map((s) => s.rss);

    // Ours under a storm: Allocates back to back (a kubelet sends one at a time) while /metrics is scraped.
    const http = NsHttp.open({ teardown: (fn) => cleanups.push(fn) }, ours.ns, runtime);
    const idleScrapes: number[] = [];
    for (let i = 0; i < 100; i++) idleScrapes.push((await http.request(METRICS_PORT, '/metrics')).ms);
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < o.storm) {
        const i = next++;
        await ours.kubelet.allocate(RES, [i % 10 === 0 ? IDS.slice(0, 20) : [IDS[i % 100]]]);
      }
    };
    const stormScrapes: number[] = [];
    const scraper = async (): Promise<void> => {
      for (let i = 0; i < o.scrapes; i++) {
        const r = await http.request(METRICS_PORT, '/metrics');
        if (r.status !== 200) throw new Error(`/metrics answered ${r.status}`);
        stormScrapes.push(r.ms);
        if (next >= o.storm) await sleep(1);
      }
    };
    const t0 = now();
    await Promise.all([worker(), scraper()]);
    const stormMs = ms(t0);
    await sleep(10000);
    const afterStorm = procStat(ours.pid);

    // Health and restarts.
    const healthTimes = nodes.map((): number[] => []);
    for (const [k, n] of nodes.entries()) {
      const handle = Netns.open(`/var/run/netns/${n.ns}`);
      cleanups.push(() => handle.close());
      for (let r = 0; r < (k === 0 ? o.health : Math.min(o.health, 2)); r++) healthTimes[k].push(await healthDown(n, handle, 10000));
    }
    const restartTimes = nodes.map((): number[] => []);
    for (const [k, n] of nodes.entries()) for (let r = 0; r < o.restarts; r++) restartTimes[k].push(await restart(n.kubelet, 30000));

    // Idle, all at once.
    await sleep(10000);
    const pids = [...nodes.map((n) => n.pid), bare.pid as number];
    const before = pids.map(procStat);
    await sleep(o.idle * 1000);
    const after = pids.map(procStat);
    const idleCpu = pids.map((_, i) => ((after[i].cpu - before[i].cpu) / o.idle) * 100);

    const rows: string[][] = [['measurement', 'ours', 'upstream', 'ours / upstream', 'goal']];
    const row = (what: string, xs: number[], f: (x: number) => string, goal: string): void => {
      rows.push([
        what,
        f(xs[0]),
        up ? f(xs[1]) : 'n/a',
        up && Number.isFinite(xs[0] / xs[1]) ? `${(xs[0] / xs[1]).toFixed(2)}x` : '',
        goal,
      ]);
    };
    row('Allocate, 1 device a request (median)', one.map(median), msf, '<= upstream');
    row(
      'Allocate, 1 device a request (p90)',
      one.map((x) => p(x, 0.9)),
      msf,
      '',
    );
    row('Allocate, 20 devices a request (median)', twenty.map(median), msf, '<= upstream');
    row('RSS after start', atStart, mib, `<= 1.5x upstream; <= bare + 16 MiB = ${mib(bareRss + 16 * MiB)}`);
    row(`RSS after ${o.allocs} Allocates`, afterAllocs, mib, `<= bare + 16 MiB = ${mib(bareRss + 16 * MiB)}`);
    row('lower device down -> Unhealthy at the kubelet (median)', healthTimes.map(median), msf, '<= upstream');
    row('kubelet restart -> re-registration (median)', restartTimes.map(median), msf, '<= upstream');
    row(`idle CPU over ${o.idle} s`, idleCpu, (x) => `${x.toFixed(3)} %`, `~0 (bare: ${idleCpu[idleCpu.length - 1].toFixed(3)} %)`);
    row(
      'RSS after idling',
      after.slice(0, nodes.length).map((s) => s.rss),
      mib,
      '',
    );
    row(
      '  of which anonymous (RssAnon), after start',
      startStats.map((s) => s.anon),
      mib,
      `bare: ${mib(bareStat.anon)}`,
    );
    row(
      `  of which anonymous, after ${o.allocs} Allocates`,
      allocStats.map((s) => s.anon),
      mib,
      '',
    );
    row(
      '  of which anonymous, after idling',
      after.slice(0, nodes.length).map((s) => s.anon),
      mib,
      '',
    );
    rows.push([`bare runtime RSS`, mib(bareRss), '', '', `anonymous ${mib(bareStat.anon)}`]);
    rows.push([
      `storm: ${o.storm} Allocates + ${o.scrapes} scrapes in ${(stormMs / 1000).toFixed(1)} s: RSS after`,
      mib(afterStorm.rss),
      '',
      '',
      `growth vs after ${o.allocs}: ${mib(afterStorm.rss - afterAllocs[0])}`,
    ]);
    rows.push(['storm: peak RSS (VmHWM)', mib(afterStorm.peak), '', '', `<= bare + 32 MiB = ${mib(bareRss + 32 * MiB)}`]);
    rows.push([
      'storm: anonymous RSS after',
      mib(afterStorm.anon),
      '',
      '',
      `growth vs after ${o.allocs}: ${mib(afterStorm.anon - allocStats[0].anon)}`,
    ]);
    rows.push([
      'scrape /metrics, idle (median / p99)',
      `${msf(median(idleScrapes))} / ${msf(p(idleScrapes, 0.99))}`,
      'no metrics',
      '',
      '< 5 ms',
    ]);
    rows.push([
      'scrape /metrics, under the storm (median / p99)',
      `${msf(median(stormScrapes))} / ${msf(p(stormScrapes, 0.99))}`,
      '',
      '',
      '',
    ]);
    const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => r[c].length)));
    for (const [i, r] of rows.entries()) {
      console.log(`| ${r.map((cell, c) => cell.padEnd(widths[c])).join(' | ')} |`);
      if (i === 0) console.log(`|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`);
    }
    console.log(
      `\n${o.rounds} + ${o.batches} requests a plugin for latency; health rounds ${o.health} (upstream at most 2, 10 s timeout); ${o.restarts} restarts (30 s timeout)`,
    );
  } finally {
    await cleanup();
  }
}

main().catch((err: unknown) => {
  console.error(`bench:deviceplugin failed: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
