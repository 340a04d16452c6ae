/**
 * What crash safety costs Allocate (`node dist/bench/allocate-state.js`, root): the allocator in-process against
 * the real kernel in a scratch namespace, three ways in one run, alternating round by round (medians):
 *
 *   - before: what Allocate did before the state work: create the macvtap (up), its tap node, the record written
 *     without fsync; no lock, no pending name, no rename;
 *   - after, no fsync: today's Allocate (per-device flock, pending `mvn` link, records as the commit, rename to
 *     `mvt` + up) with MACVTAP_TEST_NO_FSYNC=1: what the lock and the rename cost;
 *   - after: today's Allocate as it ships (durable records: fsync of each temp file, rename, fsync of the dir).
 *
 * Each request is for devices that have no link yet (the previous round's links are deleted untimed), so the
 * background deletion of retired links never runs while one is timed. Options: --rounds N (30), --devices N,M
 * (1,10). Tap nodes go to a temp directory, not /dev. Everything is removed at exit.
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Allocator } from '../lib/deviceplugin/allocator';
import type { ResourceConfig } from '../lib/deviceplugin/config';
import { hostLinkName, resourceName } from '../lib/naming';
import { ensureTapNode, Netns } from '../lib/netlink';
import { NodeState } from '../lib/state';
import { Logger } from '../lib/util/log';
import { median } from './stats';

function option(name: string, fallback: string): string {
  const at = process.argv.findIndex((a) => a === `--${name}` || a.startsWith(`--${name}=`));
  if (at < 0) return fallback;
  return process.argv[at].includes('=') ? process.argv[at].slice(process.argv[at].indexOf('=') + 1) : process.argv[at + 1];
}

const ROUNDS = Number(option('rounds', '30'));
const SIZES = option('devices', '1,10').split(',').map(Number);
if (!Number.isInteger(ROUNDS) || ROUNDS < 1 || SIZES.some((n) => !Number.isInteger(n) || n < 1 || n > 100))
  throw new RangeError('--rounds N (>= 1) --devices N,M (1-100 each)');

const ns = `mvtbench-as-${process.pid}`;
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mvt-bench-as-'));
const ip = (...args: string[]): string => execFileSync('ip', args, { encoding: 'utf8' });
function cleanup(): void {
  try {
    ip('netns', 'del', ns);
  } catch {
    /* not made */
  }
  fs.rmSync(dir, { recursive: true, force: true });
}
process.on('SIGINT', () => {
  cleanup();
  process.exit(130);
});

const resource: ResourceConfig = { name: 'bench', lowerDevice: 'lower0', mode: 'bridge', capacity: 100 };
const ids = (n: number): string[] => Array.from({ length: n }, (_, i) => `benchMvp${i}`);

/** The pre-change Allocate, from the same library primitives. */
async function before(netns: Netns, state: NodeState, devDir: string, devices: string[]): Promise<void> {
  const lower = await netns.getLink('lower0');
  if (!lower) throw new Error('no lower0');
  for (const id of devices) {
    const linkName = hostLinkName(id);
    const link = await netns.createMacvtap({ name: linkName, lower: lower.index, mode: 'bridge', txqueuelen: lower.txqueuelen, up: true });
    ensureTapNode(netns.tapDeviceSync(link), { devDir });
    state.allocations.write({
      version: 1,
      deviceID: id,
      resource: resourceName(resource.name),
      linkName,
      lowerDevice: lower.name,
      mode: 'bridge',
      ifindex: link.index,
      txqueuelen: link.txqueuelen,
      allocatedAt: new Date().toISOString(),
    });
  }
}

/** Untimed: the round's links, nodes and records go, so the next request retires nothing. */
async function reset(netns: Netns, state: NodeState, devDir: string, devices: string[]): Promise<void> {
  for (const id of devices) {
    await netns.deleteLink(hostLinkName(id)).catch(() => undefined);
    state.allocations.remove(id);
  }
  for (const f of fs.readdirSync(devDir)) fs.rmSync(path.join(devDir, f), { force: true });
}

async function main(): Promise<void> {
  ip('netns', 'add', ns);
  ip('-n', ns, 'link', 'add', 'lower0', 'type', 'veth', 'peer', 'name', 'peer0');
  ip('-n', ns, 'link', 'set', 'lower0', 'up');
  const netns = Netns.open(`/var/run/netns/${ns}`);
  const reaper = Netns.open(`/var/run/netns/${ns}`);
  const devDir = path.join(dir, 'dev');
  fs.mkdirSync(devDir);
  const stateDir = path.join(dir, 'state');
  const log = new Logger({ level: 'error' });
  const allocator = new Allocator({ netns, reaper, log, stateDir, devDir });
  await allocator.open();
  const state = NodeState.open(stateDir, { log });
  const variants: [string, (d: string[]) => Promise<unknown>][] = [
    ['before', (d) => before(netns, state, devDir, d)],
    [
      'after, no fsync',
      async (d) => {
        process.env.MACVTAP_TEST_NO_FSYNC = '1';
        try {
          await allocator.allocate(resource, d, log);
        } finally {
          delete process.env.MACVTAP_TEST_NO_FSYNC;
        }
      },
    ],
    ['after', (d) => allocator.allocate(resource, d, log)],
  ];
  const rows: string[] = [];
  for (const size of SIZES) {
    const devices = ids(size);
    const times = new Map<string, number[]>(variants.map(([name]) => [name, []]));
    for (let round = 0; round < ROUNDS + 1; round++) {
      for (const [name, run] of variants) {
        const start = process.hrtime.bigint();
        await run(devices);
        const ms = Number(process.hrtime.bigint() - start) / 1e6;
        if (round > 0) times.get(name)?.push(ms); // round 0 warms up
        await reset(netns, state, devDir, devices);
      }
    }
    const base = median(times.get('before') ?? []);
    for (const [name] of variants) {
      const m = median(times.get(name) ?? []);
      rows.push(`| ${size} | ${name} | ${m.toFixed(2)} ms | ${(m / size).toFixed(2)} ms | ${(m - base).toFixed(2)} ms |`);
    }
  }
  process.stdout.write(
    `Allocate, ${ROUNDS} rounds each, medians\n\n| devices | variant | per request | per device | vs before |\n|---|---|---|---|---|\n`,
  );
  process.stdout.write(`${rows.join('\n')}\n`);
  await allocator.stop();
  allocator.close();
  state.close();
  netns.close();
  reaper.close();
}

main().then(cleanup, (err: unknown) => {
  cleanup();
  process.stderr.write(`${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
