/**
 * Benchmark of the device plugin daemon (`npm run bench:deviceplugin`), run as production runs it: the built
 * daemon in a scratch "node" namespace (veth lower device), driven over its real sockets by the kubelet
 * stand-in of the test suite.
 *
 * Measured (medians):
 *   - Allocate latency, 1 ID per request and 100 IDs per request (per device), as the kubelet sees it (gRPC
 *     round trip included). Baselines in the same run: an empty gRPC call (GetDevicePluginOptions: the floor
 *     of any Allocate) and one spawned `ip link add ... type macvtap` per device (what a shell-based plugin
 *     would pay for the kernel work alone).
 *   - Health update latency: from just before the lower device is deleted (one netlink request from this
 *     process) to the stand-in receiving the Unhealthy list; and from setting it up again to Healthy.
 *   - Idle cost: the daemon's CPU time (utime+stime from /proc/PID/stat) and RSS over `--idle-seconds`
 *     (default 30) with an open ListAndWatch stream, next to a bare `node` process idling as baseline; the
 *     window starts 10 s after the last request, past the garbage collections that follow heavy work.
 *
 * Options: --rounds N (1-ID requests, default 50), --batches N (100-ID requests, default 10),
 * --health-rounds N (default 20), --idle-seconds N (default 30). Needs root and a build (`npx tsc -p .`).
 * Everything lives in a scratch namespace and temp directory, removed at exit, on error and on Ctrl-C.
 */
import { ChildProcess, execFileSync, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Netns } from '../lib/netlink';
import { ip } from '../test/support/kernel';
import { KubeletStandIn } from '../test/support/kubelet';
import { median } from './stats';

/** Above the test fixtures' range (20000-60000), bench:netlink's (61000+) and bench:cni's (62000+). */
const FIRST_INDEX = 63000;
const LAST_INDEX = 64999;
/** The iproute2 baseline's links. */
const BASE_INDEX = 65000;
const IDLE_SETTLE_MS = 10000;
const RES = 'macvtap.network.kubevirt.io/bench';
const DAEMON = path.resolve(__dirname, '../bin/macvtap-deviceplugin.js');

function option(name: string, fallback: number): number {
  const at = process.argv.findIndex((a) => a === `--${name}` || a.startsWith(`--${name}=`));
  if (at < 0) return fallback;
  const raw = process.argv[at].includes('=') ? process.argv[at].split('=')[1] : process.argv[at + 1];
  const value = Number(raw);
  if (!Number.isInteger(value) || value < 1 || value > 100000)
    throw new RangeError(`--${name} must be a positive integer, got ${JSON.stringify(raw)}`);
  return value;
}

const ms = (from: bigint, to: bigint = process.hrtime.bigint()): number => Number(to - from) / 1e6;
const fmt = (x: number, digits = 3): string => x.toFixed(digits);
const sleep = (n: number): Promise<void> => new Promise((r) => setTimeout(r, n));

const CLK_TCK = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
const PAGE = Number(execFileSync('getconf', ['PAGESIZE'], { encoding: 'utf8' }).trim()) || 4096;

/** CPU ticks (utime+stime) and RSS bytes of a process, from /proc/PID/stat. */
function procStat(pid: number): { ticks: number; rss: number } {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // Fields after the command: f[0] is field 3 (state); utime is field 14, stime 15, rss 24.
  return { ticks: Number(f[11]) + Number(f[12]), rss: Number(f[21]) * PAGE };
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) {
    console.error('bench:deviceplugin needs root (it creates network namespaces and macvtaps).');
    process.exit(1);
  }
  if (!fs.existsSync(DAEMON)) throw new Error(`${DAEMON} is missing: run \`npx tsc -p .\` first`);
  const rounds = option('rounds', 50);
  const batches = option('batches', 10);
  const healthRounds = option('health-rounds', 20);
  const idleSeconds = option('idle-seconds', 30);

  const cleanups: (() => void | Promise<void>)[] = [];
  const cleanup = async (): Promise<void> => {
    for (const fn of cleanups.reverse()) {
      try {
        await fn();
      } catch {
        /* best effort */
      }
    }
    cleanups.length = 0;
  };
  const onSignal = (): void => {
    void cleanup().then(() => process.exit(130));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  try {
    const ns = `mvtbench-dp-${process.pid}`;
    ip('netns', 'add', ns);
    cleanups.push(() => void ip('netns', 'del', ns));
    cleanups.push(() => {
      for (let i = FIRST_INDEX; i < BASE_INDEX + 50; i++) fs.rmSync(`/dev/tap${i}`, { force: true });
    });
    ip('-n', ns, 'link', 'add', 'lower0', 'type', 'veth', 'peer', 'name', 'peer0');
    ip('-n', ns, 'link', 'set', 'lower0', 'up');
    ip('-n', ns, 'link', 'set', 'peer0', 'up');
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mvtbench-dp-'));
    cleanups.push(() => fs.rmSync(dir, { recursive: true, force: true }));
    const pluginDir = path.join(dir, 'dp');
    const kubelet = await KubeletStandIn.start(pluginDir);
    cleanups.push(() => kubelet.stop());

    const conf = JSON.stringify([{ name: 'bench', lowerDevice: 'lower0', capacity: 100 }]);
    const child: ChildProcess = spawn(
      'ip',
      [
        'netns',
        'exec',
        ns,
        process.execPath,
        DAEMON,
        '--device-plugin-path',
        pluginDir,
        '--state-dir',
        path.join(dir, 'state'),
        '--ifindex-range',
        `${FIRST_INDEX}-${LAST_INDEX}`,
        '--log-level',
        'warn',
      ],
      { env: { ...process.env, DP_MACVTAP_CONF: conf }, stdio: ['ignore', 'inherit', 'inherit'] },
    );
    const exited = new Promise((r) => child.on('exit', r));
    cleanups.push(async () => {
      child.kill('SIGTERM');
      await exited;
    });
    const pid = child.pid as number;
    await kubelet.waitForDevices(RES, (l) => l.length === 100 && l.every((d) => d.health === 'Healthy'));
    const ids = Array.from({ length: 100 }, (_, i) => `benchMvp${i}`);

    console.log(`macvtap-deviceplugin benchmark (node ${process.version}, ${os.cpus().length} CPUs, kernel ${os.release()})\n`);

    // Floor: an empty unary call over the same socket.
    const floor: number[] = [];
    for (let i = 0; i < rounds; i++) {
      const t0 = process.hrtime.bigint();
      await kubelet.getDevicePluginOptions(RES);
      floor.push(ms(t0));
    }

    // Warm-up (hasher, first allocation record, JIT), not counted.
    await kubelet.allocate(RES, [[ids[0]]]);

    // Devices 1..99 have no link yet: a fresh Allocate each (after 99, links get replaced).
    const single: number[] = [];
    for (let i = 0; i < rounds; i++) {
      const t0 = process.hrtime.bigint();
      await kubelet.allocate(RES, [[ids[1 + (i % 99)]]]);
      single.push(ms(t0));
    }

    // Every device already has a link from earlier requests: each batch replaces 100 stale links.
    const batch: number[] = [];
    let batchFirst = 0;
    for (let b = 0; b < batches; b++) {
      const t0 = process.hrtime.bigint();
      const res = await kubelet.allocate(RES, [ids]);
      batch.push(ms(t0) / 100);
      if (b === 0) batchFirst = ms(t0) / 100;
      if (res.containerResponses[0].devices.length !== 100) throw new Error('Allocate answered the wrong number of devices');
    }

    // Baseline: one spawned iproute2 per device (create only; the daemon also deletes, checks and records).
    const spawnMs: number[] = [];
    for (let i = 0; i < Math.min(rounds, 50); i++) {
      const t0 = process.hrtime.bigint();
      ip(
        '-n',
        ns,
        'link',
        'add',
        'link',
        'lower0',
        'name',
        `mvbase${i}`,
        'index',
        String(BASE_INDEX + i),
        'type',
        'macvtap',
        'mode',
        'bridge',
      );
      spawnMs.push(ms(t0));
      ip('-n', ns, 'link', 'del', `mvbase${i}`);
    }

    // Health: delete the lower device / bring it back up, timed to the stand-in's receipt.
    const node = Netns.open(`/var/run/netns/${ns}`);
    cleanups.push(() => node.close());
    const removal: number[] = [];
    const afterDelete: number[] = [];
    const ret: number[] = [];
    const all = (h: string) => (l: { health: string }[]) => l.length === 100 && l.every((d) => d.health === h);
    for (let r = 0; r < healthRounds; r++) {
      const t0 = process.hrtime.bigint();
      node.deleteLinkSync('lower0');
      const returned = process.hrtime.bigint();
      await kubelet.waitForDevices(RES, all('Unhealthy'), 5000);
      const at = kubelet.updates(RES)[kubelet.updates(RES).length - 1].at;
      removal.push(ms(t0, at));
      afterDelete.push(Math.max(0, ms(returned, at)));
      ip('-n', ns, 'link', 'add', 'lower0', 'type', 'veth', 'peer', 'name', 'peer0');
      ip('-n', ns, 'link', 'set', 'peer0', 'up');
      await sleep(5);
      const t1 = process.hrtime.bigint();
      node.setLinkSync('lower0', { up: true });
      await kubelet.waitForDevices(RES, all('Healthy'), 5000);
      ret.push(ms(t1, kubelet.updates(RES)[kubelet.updates(RES).length - 1].at));
    }

    // Idle: the daemon with an open stream, next to a bare node process.
    const bare = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1 << 30)'], { stdio: 'ignore' });
    cleanups.push(() => void bare.kill('SIGKILL'));
    // Let the heavy phases' after-effects (V8's memory reducer GCs, retired-link deletion) pass first.
    await sleep(IDLE_SETTLE_MS);
    const d0 = procStat(pid);
    const b0 = procStat(bare.pid as number);
    await sleep(idleSeconds * 1000);
    const d1 = procStat(pid);
    const b1 = procStat(bare.pid as number);
    const cpu = (a: { ticks: number }, b: { ticks: number }): number => ((b.ticks - a.ticks) / CLK_TCK / idleSeconds) * 100;
    const mb = (bytes: number): string => `${fmt(bytes / 1048576, 1)} MiB`;

    const rows: [string, string, string][] = [
      ['empty gRPC call (GetDevicePluginOptions), floor', `${fmt(median(floor))} ms`, ''],
      ['Allocate, 1 ID per request (new link)', `${fmt(median(single))} ms/device`, `${fmt(median(single) / median(floor), 1)}x the floor`],
      [
        'Allocate, 100 IDs per request (replacing links)',
        `${fmt(median(batch))} ms/device`,
        `${fmt(median(batch) / median(spawnMs), 2)}x one ip spawn; first batch ${fmt(batchFirst)}`,
      ],
      ['baseline: spawned `ip link add ... type macvtap`', `${fmt(median(spawnMs))} ms/device`, ''],
      ['lower device deleted -> stand-in has Unhealthy', `${fmt(median(removal))} ms`, `max ${fmt(Math.max(...removal))} ms`],
      ['  of which after the delete request returned', `${fmt(median(afterDelete))} ms`, `max ${fmt(Math.max(...afterDelete))} ms`],
      ['lower device set up -> stand-in has Healthy', `${fmt(median(ret))} ms`, `max ${fmt(Math.max(...ret))} ms`],
      [`idle ${idleSeconds} s: daemon CPU`, `${fmt(cpu(d0, d1), 3)} %`, `bare node: ${fmt(cpu(b0, b1), 3)} %`],
      [`idle ${idleSeconds} s: daemon RSS (start -> end)`, `${mb(d0.rss)} -> ${mb(d1.rss)}`, `bare node: ${mb(b1.rss)}`],
    ];
    const w0 = Math.max(...rows.map((r) => r[0].length));
    const w1 = Math.max(...rows.map((r) => r[1].length));
    for (const [a, b, c] of rows) console.log(`${a.padEnd(w0)}  ${b.padStart(w1)}  ${c}`);
    console.log(`\nmedians of ${rounds} single-ID requests, ${batches} 100-ID requests, ${healthRounds} health rounds`);
  } finally {
    await cleanup();
  }
}

main().catch((err: unknown) => {
  console.error(`bench:deviceplugin failed: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
