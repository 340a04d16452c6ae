/**
 * Benchmark of reading a macvtap's char device (major:minor) in another network namespace
 * (`npm run bench:tapdevice`). sysfs shows the namespace of whoever mounted it, so the library must mount a
 * sysfs of the target namespace. Ways, interleaved round by round, each timed per call (median over all calls):
 *   per-call mount   (the old way, still the fallback) one CLONE_VM child per call: setns, unshare a mount
 *                    namespace, mount sysfs, read
 *   fresh handle     what one CNI invocation pays: Netns.open + tapDeviceSync (fsopen/fsmount of the
 *                    namespace's sysfs from a child task, then openat) + close
 *   open + close     the baseline of "fresh handle": Netns.open + close alone
 *   cached mount     tapDeviceSync on a long-lived handle: one openat+read on the kept detached mount
 * Options: `--calls N` / BENCH_CALLS (default 200), `--rounds R` / BENCH_ROUNDS (default 5). Needs root.
 * Its two scratch namespaces are removed at exit, on error and on Ctrl-C.
 */
import { execFileSync } from 'node:child_process';
import { performance } from 'node:perf_hooks';
import { Netns } from '../lib/netlink';
import { native } from '../lib/netlink/native';
import { median } from './stats';

function option(name: string, envName: string, fallback: number): number {
  const at = process.argv.indexOf(`--${name}`);
  const raw = at >= 0 ? process.argv[at + 1] : process.env[envName];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < 1 || value > 100000)
    throw new RangeError(`--${name} / ${envName} must be an integer from 1 to 100000, got ${JSON.stringify(raw)}`);
  return value;
}

const ns = `mvt-bench-tap-${process.pid}`;
const cleanup = (): void => {
  try {
    Netns.remove(ns);
  } catch {
    /* not made yet, or gone */
  }
};

function main(): void {
  const calls = option('calls', 'BENCH_CALLS', 200);
  const rounds = option('rounds', 'BENCH_ROUNDS', 5);
  const handle = Netns.create(ns);
  execFileSync('ip', ['-n', ns, 'link', 'add', 'lower0', 'type', 'veth', 'peer', 'name', 'peer0']);
  // Above the test fixtures' ifindex range, so /dev/tap<ifindex> nodes never meet theirs.
  const link = handle.createMacvtapSync({ name: 'mvbench', lower: 'lower0', index: 61999 });
  const file = `/sys/class/net/${link.name}/tap${link.index}/dev`;
  const path = `/var/run/netns/${ns}`;
  const ways: Record<string, () => string> = {
    'per-call mount': () => native().sysfsRead(handle.fd, file),
    'fresh handle': () => {
      const h = Netns.open(path);
      try {
        const d = h.tapDeviceSync(link);
        return `${d.major}:${d.minor}`;
      } finally {
        h.close();
      }
    },
    'open + close': () => {
      Netns.open(path).close();
      return '';
    },
    'cached mount': () => {
      const d = handle.tapDeviceSync(link);
      return `${d.major}:${d.minor}`;
    },
  };
  const expected = native().sysfsRead(handle.fd, file).trim();
  const times = new Map<string, number[]>(Object.keys(ways).map((k) => [k, []]));
  for (let r = 0; r < rounds; r++) {
    for (const [name, run] of Object.entries(ways)) {
      for (let i = 0; i < calls; i++) {
        const start = performance.now();
        const got = run();
        (times.get(name) as number[]).push(performance.now() - start);
        if (got && got.trim() !== expected) throw new Error(`${name}: read ${got}, expected ${expected}`);
      }
    }
  }
  handle.close();
  const m = (k: string): number => median(times.get(k) as number[]);
  const base = m('per-call mount');
  console.log(`bench:tapdevice — ${calls} calls x ${rounds} rounds per way, medians per call (node ${process.version})`);
  console.log('| way | per call | vs per-call mount |');
  console.log('|---|---|---|');
  for (const k of Object.keys(ways)) console.log(`| ${k} | ${(m(k) * 1000).toFixed(1)} µs | ${(m(k) / base).toFixed(2)}× |`);
  const fresh = m('fresh handle') - m('open + close');
  console.log(`\nfresh handle minus open + close (first tapDevice of a handle): ${(fresh * 1000).toFixed(1)} µs`);
}

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    cleanup();
    process.exit(130);
  });
}
try {
  main();
} finally {
  cleanup();
}
