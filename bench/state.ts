/**
 * What durable node state costs (needs root; scratch namespaces, removed at the end).
 *
 *   fsync        the primitives on this disk: fsync of a fresh 400-byte file, fsync of its directory, and a whole
 *                durable record write (temp, fsync, rename, fsync dir), synchronous and on the thread pool
 *   ADD          the plugin's ADD, in-process (runPlugin: no process start, so only the plugin's own work and the
 *                kernel's), with durable writes and with MACVTAP_TEST_NO_FSYNC=1 (the same code without its
 *                fsyncs), interleaved call by call; each ADD is followed by a DEL
 *
 * The state directory is on the disk `os.tmpdir()` is on (here the root file system), as /var/lib is on a node.
 * Usage: npm run build && node dist/bench/state.js [--iterations N]
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { lowerWithMacvtaps } from './hostns';
import { median } from './stats';

const FIRST_INDEX = 45000;

function ip(...args: string[]): void {
  const r = spawnSync('ip', args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`ip ${args.join(' ')}: ${r.stderr}`);
}

function iterations(): number {
  const i = process.argv.indexOf('--iterations');
  return i >= 0 ? Number(process.argv[i + 1]) : 40;
}

function ms(x: number): string {
  return `${x.toFixed(3)} ms`;
}

/** The primitives, in this process, on a fresh directory. */
async function primitives(dir: string, n: number): Promise<void> {
  const { NodeState } = await import('../lib/state');
  const { Logger } = await import('../lib/util/log');
  const linkName = (await import('../lib/naming')).hostLinkName('benchMvp0');
  const fileSync: number[] = [];
  const dirSync: number[] = [];
  const dfd = fs.openSync(dir, 'r');
  const data = Buffer.alloc(400, 0x61);
  for (let i = 0; i < n; i++) {
    const f = path.join(dir, `probe${i}`);
    const fd = fs.openSync(f, 'wx', 0o600);
    fs.writeSync(fd, data);
    let t0 = performance.now();
    fs.fsyncSync(fd);
    fileSync.push(performance.now() - t0);
    fs.closeSync(fd);
    fs.renameSync(f, path.join(dir, `probe${i}.done`));
    t0 = performance.now();
    fs.fsyncSync(dfd);
    dirSync.push(performance.now() - t0);
  }
  fs.closeSync(dfd);
  const state = NodeState.open(path.join(dir, 'state'), { log: new Logger({ level: 'error' }) });
  const record = (i: number): Parameters<typeof state.allocations.write>[0] => ({
    version: 1,
    deviceID: 'benchMvp0',
    resource: 'macvtap.network.kubevirt.io/bench',
    linkName,
    lowerDevice: 'eth1',
    mode: 'bridge',
    ifindex: 1000 + i,
    txqueuelen: 1000,
    allocatedAt: new Date().toISOString(),
  });
  const sync: number[] = [];
  const asyncBlocked: number[] = [];
  const asyncTotal: number[] = [];
  for (let i = 0; i < n; i++) {
    let t0 = performance.now();
    state.allocations.write(record(i));
    sync.push(performance.now() - t0);
    t0 = performance.now();
    const p = state.allocations.writeAsync(record(i));
    asyncBlocked.push(performance.now() - t0);
    await p;
    asyncTotal.push(performance.now() - t0);
  }
  state.close();
  console.log(`fsync on this disk (${n} each, medians):`);
  console.log(`  fsync of a new 400-byte file   ${ms(median(fileSync))}`);
  console.log(`  fsync of its directory         ${ms(median(dirSync))}`);
  console.log(`  durable record write, sync     ${ms(median(sync))}   (temp, fsync, rename, fsync dir)`);
  console.log(`  the same on the thread pool    ${ms(median(asyncBlocked))} blocking the caller, ${ms(median(asyncTotal))} until durable`);
}

/** ADD/DEL in-process, inside the scratch host namespace, durable vs. without fsync, interleaved. */
async function inner(podNs: string, stateDir: string, n: number): Promise<void> {
  await primitives(path.join(stateDir, 'probe'), n);
  const { runPlugin } = await import('../lib/cni/plugin');
  const config = JSON.stringify({ cniVersion: '1.1.0', name: 'bench', type: 'macvtap', deviceID: 'mvbench0', mtu: 1400 });
  const env = {
    CNI_CONTAINERID: 'bench01',
    CNI_IFNAME: 'net1',
    CNI_NETNS: `/var/run/netns/${podNs}`,
    CNI_PATH: '/opt/cni/bin',
    MACVTAP_CNI_STATE_DIR: path.join(stateDir, 'state'),
  };
  const times: Record<'durable' | 'nofsync', number[]> = { durable: [], nofsync: [] };
  const run = async (variant: 'durable' | 'nofsync'): Promise<void> => {
    if (variant === 'nofsync') process.env.MACVTAP_TEST_NO_FSYNC = '1';
    else delete process.env.MACVTAP_TEST_NO_FSYNC;
    const t0 = performance.now();
    const add = await runPlugin({ ...env, CNI_COMMAND: 'ADD' }, () => config);
    times[variant].push(performance.now() - t0);
    const del = await runPlugin({ ...env, CNI_COMMAND: 'DEL' }, () => config);
    if (add.exitCode !== 0 || del.exitCode !== 0) throw new Error(`ADD/DEL failed: ${add.stdout} ${del.stdout}`);
  };
  await run('durable'); // warm-up: module loading, first netlink sockets
  await run('nofsync');
  times.durable.length = 0;
  times.nofsync.length = 0;
  for (let i = 0; i < n; i++) {
    await run(i % 2 ? 'nofsync' : 'durable');
    await run(i % 2 ? 'durable' : 'nofsync');
  }
  delete process.env.MACVTAP_TEST_NO_FSYNC;
  const d = median(times.durable);
  const b = median(times.nofsync);
  console.log(`\nADD in-process (${n} each, interleaved, medians; each followed by a DEL):`);
  console.log(`  without fsync (baseline)      ${ms(b)}`);
  console.log(`  durable (fsyncs overlap move) ${ms(d)}`);
  console.log(`  added by durability           ${ms(d - b)}  (${(d / b).toFixed(3)}x)`);
}

function outer(): void {
  if (process.getuid?.() !== 0) throw new Error('bench/state needs root (it creates network namespaces)');
  const tag = `mvsb-${process.pid}`;
  const hostNs = `${tag}-host`;
  const podNs = `${tag}-pod`;
  const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'macvtap-bench-state-'));
  const cleanup = (): void => {
    for (const ns of [podNs, hostNs]) spawnSync('ip', ['netns', 'del', ns], { stdio: 'ignore' });
    fs.rmSync(stateDir, { recursive: true, force: true });
    fs.rmSync(`/dev/tap${FIRST_INDEX}`, { force: true });
  };
  try {
    ip('netns', 'add', hostNs);
    ip('netns', 'add', podNs);
    for (const args of lowerWithMacvtaps(hostNs, [{ name: 'mvbench0', index: FIRST_INDEX }])) ip(...args);
    fs.mkdirSync(path.join(stateDir, 'probe'), { mode: 0o700 });
    const r = spawnSync('ip', ['netns', 'exec', hostNs, process.execPath, __filename, '--inner', podNs, stateDir, String(iterations())], {
      stdio: 'inherit',
    });
    if (r.status !== 0) process.exitCode = r.status ?? 1;
  } finally {
    cleanup();
  }
}

if (process.argv[2] === '--inner') {
  inner(process.argv[3], process.argv[4], Number(process.argv[5])).catch((err: unknown) => {
    console.error(err);
    process.exit(1);
  });
} else {
  outer();
}
