/**
 * Benchmark of the netlink library against iproute2 (`npm run bench:netlink`).
 *
 * One cycle, per link: create a macvtap on a veth in namespace A -> set MAC + MTU + promisc + up -> move it
 * to namespace B -> delete it (in B). The same N cycles run four ways, interleaved round by round so that
 * machine noise hits every way alike:
 *   lib-sync   this library, synchronous calls
 *   lib-async  this library, Promise calls
 *   ip-spawn   one spawned `ip` per step (4 processes per cycle), as Node tooling does today
 *   ip-batch   iproute2 in C, one process: `ip -n A -batch -` runs every create/set/move line, then
 *              `ip -n B -batch -` runs the deletes (a batch applies to one namespace, and `ip link del`
 *              cannot reach into another one, so the delete needs a second process; both are timed)
 *
 * The headline figure per way is "per cycle": the wall time of a round divided by N, median over rounds. It is
 * the only figure ip-batch can have (its cycles are not separable); the library and ip-spawn also get the
 * median of individually timed cycles. Ratios are of the per-cycle figures.
 *
 * Every way creates the link with the same explicit ifindex, mode bridge, and txqueuelen of the lower device
 * (the library copies it by default; the ip commands pass it explicitly, as a fair equivalent).
 *
 * Options (argv or env): `--links N` / BENCH_LINKS (default 200), `--rounds R` / BENCH_ROUNDS (default 3).
 * Needs root. Everything it creates lives in two scratch namespaces, removed at exit, on error and on Ctrl-C.
 */
import { execFileSync } from 'node:child_process';
import { performance } from 'node:perf_hooks';
import { setImmediate as yieldToLoop } from 'node:timers/promises';
import { Netns } from '../lib/netlink';
import { median } from './stats';

interface Config {
  links: number;
  rounds: number;
}

/** Above the range test fixtures claim (20000-60000), so /dev/tap<ifindex> nodes never meet theirs. */
const FIRST_INDEX = 61000;
const LOWER = 'lower0';
const MTU = 1400;

function option(name: string, envName: string, fallback: number): number {
  const at = process.argv.indexOf(`--${name}`);
  const raw = at >= 0 ? process.argv[at + 1] : process.env[envName];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < 1 || value > 10000) {
    throw new RangeError(`--${name} / ${envName} must be an integer from 1 to 10000, got ${JSON.stringify(raw)}`);
  }
  return value;
}

function ip(args: string[], input?: string): void {
  execFileSync('ip', args, { input, stdio: [input === undefined ? 'ignore' : 'pipe', 'ignore', 'pipe'] });
}

const linkName = (i: number): string => `mvb${i}`;
const linkMac = (i: number): string =>
  `02:00:00:00:${((i >> 8) & 0xff).toString(16).padStart(2, '0')}:${(i & 0xff).toString(16).padStart(2, '0')}`;

class Interrupted extends Error {
  constructor(readonly signal: string) {
    super(`interrupted by ${signal}`);
  }
}

let interrupted: string | undefined;
function checkInterrupt(): void {
  if (interrupted) throw new Interrupted(interrupted);
}

interface Scratch {
  nsA: string;
  nsB: string;
  a: Netns;
  b: Netns;
  txqueuelen: number;
}

/** A round's result: wall time of the whole round and, where separable, each cycle's and step's time (ms). */
interface Round {
  totalMs: number;
  cycleMs: number[];
  stepMs: Record<Step, number[]>;
}

const STEPS = ['create', 'set', 'move', 'delete'] as const;
type Step = (typeof STEPS)[number];

/** Times the steps of one cycle: call `step(name)` after each step; returns the cycle's total. */
function stepTimer(into: Record<Step, number[]>): { step(name: Step): void; total(): number } {
  const start = performance.now();
  let last = start;
  return {
    step(name) {
      const now = performance.now();
      into[name].push(now - last);
      last = now;
    },
    total: () => last - start,
  };
}

const emptySteps = (): Record<Step, number[]> => ({ create: [], set: [], move: [], delete: [] });

function libSyncRound(s: Scratch, n: number): Round {
  const round: Round = { totalMs: 0, cycleMs: [], stepMs: emptySteps() };
  const start = performance.now();
  for (let i = 0; i < n; i++) {
    const timer = stepTimer(round.stepMs);
    const link = s.a.createMacvtapSync({ name: linkName(i), lower: LOWER, mode: 'bridge', index: FIRST_INDEX + i });
    timer.step('create');
    s.a.setLinkSync(link.index, { mac: linkMac(i), mtu: MTU, promisc: true, up: true });
    timer.step('set');
    s.a.moveLinkSync(link.index, s.b);
    timer.step('move');
    s.b.deleteLinkSync(link.index);
    timer.step('delete');
    round.cycleMs.push(timer.total());
  }
  round.totalMs = performance.now() - start;
  return round;
}

async function libAsyncRound(s: Scratch, n: number): Promise<Round> {
  const round: Round = { totalMs: 0, cycleMs: [], stepMs: emptySteps() };
  const start = performance.now();
  for (let i = 0; i < n; i++) {
    const timer = stepTimer(round.stepMs);
    const link = await s.a.createMacvtap({ name: linkName(i), lower: LOWER, mode: 'bridge', index: FIRST_INDEX + i });
    timer.step('create');
    await s.a.setLink(link.index, { mac: linkMac(i), mtu: MTU, promisc: true, up: true });
    timer.step('set');
    await s.a.moveLink(link.index, s.b);
    timer.step('move');
    await s.b.deleteLink(link.index);
    timer.step('delete');
    round.cycleMs.push(timer.total());
    checkInterrupt();
  }
  round.totalMs = performance.now() - start;
  return round;
}

function createArgs(s: Scratch, i: number): string[] {
  return [
    'link',
    'add',
    'link',
    LOWER,
    'name',
    linkName(i),
    'index',
    String(FIRST_INDEX + i),
    'txqueuelen',
    String(s.txqueuelen),
    'type',
    'macvtap',
    'mode',
    'bridge',
  ];
}
const setArgs = (i: number): string[] => ['link', 'set', linkName(i), 'address', linkMac(i), 'mtu', String(MTU), 'promisc', 'on', 'up'];

async function ipSpawnRound(s: Scratch, n: number): Promise<Round> {
  const round: Round = { totalMs: 0, cycleMs: [], stepMs: emptySteps() };
  for (let i = 0; i < n; i++) {
    const timer = stepTimer(round.stepMs);
    ip(['-n', s.nsA, ...createArgs(s, i)]);
    timer.step('create');
    ip(['-n', s.nsA, ...setArgs(i)]);
    timer.step('set');
    ip(['-n', s.nsA, 'link', 'set', linkName(i), 'netns', s.nsB]);
    timer.step('move');
    ip(['-n', s.nsB, 'link', 'del', linkName(i)]);
    timer.step('delete');
    round.cycleMs.push(timer.total());
    round.totalMs += timer.total();
    // Lets a Ctrl-C handler run between cycles (outside the timed region).
    await yieldToLoop();
    checkInterrupt();
  }
  return round;
}

function ipBatchRound(s: Scratch, n: number): Round {
  const inA: string[] = [];
  const inB: string[] = [];
  for (let i = 0; i < n; i++) {
    inA.push(createArgs(s, i).join(' '), setArgs(i).join(' '), `link set ${linkName(i)} netns ${s.nsB}`);
    inB.push(`link del ${linkName(i)}`);
  }
  const scriptA = `${inA.join('\n')}\n`;
  const scriptB = `${inB.join('\n')}\n`;
  const start = performance.now();
  ip(['-n', s.nsA, '-batch', '-'], scriptA);
  ip(['-n', s.nsB, '-batch', '-'], scriptB);
  return { totalMs: performance.now() - start, cycleMs: [], stepMs: emptySteps() };
}

/** Fails loudly if a round left anything behind, so that no way is timed against a dirtier namespace. */
function assertClean(s: Scratch, way: string): void {
  const leftA = s.a.listLinksSync().filter((l) => l.kind === 'macvtap');
  const leftB = s.b.listLinksSync().filter((l) => l.name !== 'lo');
  if (leftA.length || leftB.length) {
    throw new Error(`${way} left links behind: ${[...leftA, ...leftB].map((l) => l.name).join(', ')}`);
  }
}

async function run(cfg: Config, s: Scratch): Promise<void> {
  type Way = 'lib-sync' | 'lib-async' | 'ip-spawn' | 'ip-batch';
  const ways: Record<Way, (s: Scratch, n: number) => Round | Promise<Round>> = {
    'lib-sync': libSyncRound,
    'lib-async': libAsyncRound,
    'ip-batch': ipBatchRound,
    'ip-spawn': ipSpawnRound,
  };
  const results = new Map<Way, Round[]>();

  // Warm-up: one short pass of each way (loads the addon and the ip binary, creates the library's sockets).
  for (const [way, fn] of Object.entries(ways) as [Way, (typeof ways)[Way]][]) {
    await fn(s, Math.min(cfg.links, 10));
    assertClean(s, way);
  }
  for (let r = 1; r <= cfg.rounds; r++) {
    for (const [way, fn] of Object.entries(ways) as [Way, (typeof ways)[Way]][]) {
      const round = await fn(s, cfg.links);
      assertClean(s, way);
      results.set(way, [...(results.get(way) ?? []), round]);
      await yieldToLoop();
      checkInterrupt();
    }
    process.stderr.write(`round ${r}/${cfg.rounds} done\n`);
  }

  const perCycle = (way: Way): number => median((results.get(way) ?? []).map((r) => r.totalMs / cfg.links));
  const cycleMedian = (way: Way): number | undefined => {
    const all = (results.get(way) ?? []).flatMap((r) => r.cycleMs);
    return all.length ? median(all) : undefined;
  };
  const batch = perCycle('ip-batch');
  const spawn = perCycle('ip-spawn');
  const rows = (Object.keys(ways) as Way[]).map((way) => {
    const pc = perCycle(way);
    const cm = cycleMedian(way);
    return {
      way,
      'per cycle ms': pc.toFixed(3),
      'cycle median ms': cm === undefined ? '-' : cm.toFixed(3),
      'vs ip-batch': `${(pc / batch).toFixed(2)}x`,
      'ip-spawn / this': `${(spawn / pc).toFixed(1)}x`,
    };
  });
  console.log(
    `netlink benchmark: ${cfg.links} links x ${cfg.rounds} rounds; cycle = create -> set mac+mtu+promisc+up -> move netns -> delete`,
  );
  console.log(
    `kernel ${execFileSync('uname', ['-r'], { encoding: 'utf8' }).trim()}, node ${process.version}, ${execFileSync('ip', ['-V'], { encoding: 'utf8' }).trim()}`,
  );
  console.table(rows);
  const stepRows = (['lib-sync', 'lib-async', 'ip-spawn'] as Way[]).map((way) => {
    const row: Record<string, string> = { way };
    for (const step of STEPS) row[`${step} ms`] = median((results.get(way) ?? []).flatMap((r) => r.stepMs[step])).toFixed(3);
    return row;
  });
  console.log('per-step medians (ip-batch steps are not separable):');
  console.table(stepRows);
  const worst = Math.max(perCycle('lib-sync'), perCycle('lib-async'));
  const best = Math.min(perCycle('lib-sync'), perCycle('lib-async'));
  console.log(
    `goal: library within 1.2x of ip-batch per cycle: ${worst / batch <= 1.2 ? 'met' : 'MISSED'} (sync ${(perCycle('lib-sync') / batch).toFixed(2)}x, async ${(perCycle('lib-async') / batch).toFixed(2)}x)`,
  );
  console.log(
    `goal: library >= 20x faster than spawning ip: ${spawn / worst >= 20 ? 'met' : 'MISSED'} (${(spawn / worst).toFixed(1)}x to ${(spawn / best).toFixed(1)}x)`,
  );
}

async function main(): Promise<number> {
  if (process.getuid?.() !== 0) {
    console.error('bench:netlink needs root (it creates network namespaces and macvtap links)');
    return 1;
  }
  let cfg: Config;
  try {
    cfg = { links: option('links', 'BENCH_LINKS', 200), rounds: option('rounds', 'BENCH_ROUNDS', 3) };
  } catch (err) {
    console.error(`bench:netlink: ${(err as Error).message}`);
    return 2;
  }
  const nsA = `mvtbench-${process.pid}-a`;
  const nsB = `mvtbench-${process.pid}-b`;
  const opened: Netns[] = [];
  const made: string[] = [];
  const onSignal = (signal: NodeJS.Signals): void => {
    interrupted = signal;
  };
  process.on('SIGINT', onSignal).on('SIGTERM', onSignal);
  try {
    for (const name of [nsA, nsB]) {
      opened.push(Netns.create(name));
      made.push(name);
    }
    const [a, b] = opened;
    ip(['-n', nsA, 'link', 'add', LOWER, 'type', 'veth', 'peer', 'name', 'peer0']);
    ip(['-n', nsA, 'link', 'set', LOWER, 'up']);
    ip(['-n', nsA, 'link', 'set', 'peer0', 'up']);
    const lower = a.getLinkSync(LOWER);
    if (!lower) throw new Error(`${LOWER} vanished`);
    await run(cfg, { nsA, nsB, a, b, txqueuelen: lower.txqueuelen });
    return 0;
  } catch (err) {
    // A Ctrl-C also reaches a spawned `ip`, which then fails before our handler has run.
    const signal = err instanceof Interrupted ? err.signal : (err as { signal?: string }).signal;
    if (signal === 'SIGINT' || signal === 'SIGTERM') {
      console.error(`bench:netlink: interrupted by ${signal}; cleaned up`);
      return 130;
    }
    console.error(`bench:netlink: ${err instanceof Error ? err.message : String(err)}`);
    return 1;
  } finally {
    for (const ns of opened) ns.close();
    // Removing the namespaces destroys every link left in them (and with them their /dev/tap nodes).
    for (const name of made) {
      try {
        Netns.remove(name);
      } catch (err) {
        console.error(`bench:netlink: could not remove namespace ${name}: ${(err as Error).message}`);
      }
    }
  }
}

main().then(
  (code) => {
    process.exitCode = code;
    process.removeAllListeners('SIGINT').removeAllListeners('SIGTERM');
  },
  (err: unknown) => {
    console.error(`bench:netlink: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
    process.exitCode = 1;
  },
);
