/**
 * A node for the device plugin's fault and race tests (root only): a namespace with a veth lower device that plays
 * the node's, a kubelet stand-in, a state and a device-plugin directory that outlive daemon restarts, and a block
 * of ifindexes the daemon must use (`--ifindex-range`). The daemon is the built executable, spawned as production
 * runs it, optionally with a fault armed (MACVTAP_TEST_FAULT). The oracles are iproute2 (`ip -j -d link`), the
 * record files read as plain JSON, coreutils `stat` for the tap nodes and sysfs for the char devices.
 */
import { execFileSync, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Test } from 'tap';
import { claimIfindexes, IpLink, ipLinks, makeLowerNetns, sysfsTapDev } from '../support/kernel';
import { KubeletStandIn } from '../support/kubelet';
import { assertBuilt, DAEMON, DaemonProcess, PREFIX, sleep, tempDir } from './helpers';

export const RES = `${PREFIX}/dataplane`;

type Teardown = { teardown(fn: () => void | Promise<void>): void };

export interface Node {
  ns: string;
  lower: string;
  pluginDir: string;
  stateDir: string;
  kubelet: KubeletStandIn;
  /** The ifindexes the daemon may use, contiguous. */
  indexes: number[];
  capacity: number;
}

/**
 * `count` contiguous ifindexes no other test process holds (claimIfindexes hands out blocks of 16; blocks are
 * claimed until enough adjacent ones are ours).
 */
export function claimRange(t: Teardown, count: number): number[] {
  const blocks = Math.ceil(count / 16);
  const got: number[] = [];
  for (let tries = 0; tries < 64; tries++) {
    got.push(claimIfindexes(t, 16)[0]);
    const run = got.slice(-blocks);
    if (run.length === blocks && run.every((b, i) => i === 0 || b === run[i - 1] + 16))
      return Array.from({ length: count }, (_, i) => run[0] + i);
  }
  throw new Error(`claimRange: no ${blocks} adjacent blocks of ifindexes`);
}

export async function makeNode(t: Teardown, opts: { indexes?: number; capacity?: number; stateDir?: string } = {}): Promise<Node> {
  assertBuilt();
  const { ns, lower } = makeLowerNetns(t, { prefix: 'mvdf' });
  const dir = tempDir(t, 'mvtdpf-');
  const pluginDir = path.join(dir, 'dp');
  fs.mkdirSync(pluginDir);
  const kubelet = await KubeletStandIn.start(pluginDir);
  t.teardown(() => kubelet.stop());
  const indexes = claimRange(t, opts.indexes ?? 16);
  return { ns, lower, pluginDir, stateDir: opts.stateDir ?? path.join(dir, 'state'), kubelet, indexes, capacity: opts.capacity ?? 8 };
}

export function conf(node: Node): string {
  return JSON.stringify([{ name: 'dataplane', lowerDevice: node.lower, capacity: node.capacity }]);
}

export interface RunOptions {
  /** MACVTAP_TEST_FAULT, e.g. `Allocate:created:kill`. */
  fault?: string;
  /** Extra arguments (after the node's own). */
  args?: string[];
}

/** Spawns the daemon on the node; killed at teardown if still running. */
export function runDaemon(t: Teardown, node: Node, opts: RunOptions = {}): DaemonProcess {
  const env: NodeJS.ProcessEnv = { ...process.env, DP_MACVTAP_CONF: conf(node) };
  delete env.MACVTAP_TEST_FAULT;
  if (opts.fault) env.MACVTAP_TEST_FAULT = opts.fault;
  const range = `${node.indexes[0]}-${node.indexes[node.indexes.length - 1]}`;
  const args = ['--device-plugin-path', node.pluginDir, '--state-dir', node.stateDir, '--log-level', 'debug', '--ifindex-range', range];
  const child = spawn('ip', ['netns', 'exec', node.ns, process.execPath, DAEMON, ...args, ...(opts.args ?? [])], {
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const daemon = new DaemonProcess(child);
  t.teardown(async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGCONT');
    child.kill('SIGKILL');
    await daemon.exited;
  });
  return daemon;
}

/** Starts the daemon and waits until it registered with the stand-in and listed its devices. */
export async function startServing(t: Teardown, node: Node, opts: RunOptions = {}): Promise<DaemonProcess> {
  const before = node.kubelet.registrations.length;
  const daemon = runDaemon(t, node, opts);
  const deadline = Date.now() + 60_000;
  while (node.kubelet.registrations.length === before) {
    if (daemon.child.exitCode !== null) throw new Error(`the daemon exited ${daemon.child.exitCode}: ${daemon.stderr}`);
    if (Date.now() > deadline) throw new Error(`the daemon did not register; logs: ${JSON.stringify(daemon.logs.slice(-5))}`);
    await sleep(20);
  }
  await node.kubelet.waitForDevices(RES, (l) => l.length === node.capacity, 30_000);
  return daemon;
}

/** Fault lines (`macvtap-fault: <action> at <verb>:<step> pid <pid>`) the daemon wrote so far. */
export function faultCount(daemon: DaemonProcess): number {
  return daemon.stderr.split('\n').filter((l) => l.startsWith('macvtap-fault: ')).length;
}

/** Whether a process is stopped (state `T` in /proc/<pid>/stat). */
function stopped(pid: number): boolean {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).startsWith('T');
  } catch {
    return false;
  }
}

/**
 * Waits until the daemon wrote its `n`-th fault line and, for a pause, has actually stopped: the line is written
 * just before the SIGSTOP, and a SIGCONT sent in between would be lost.
 */
export async function waitForFault(daemon: DaemonProcess, n: number, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  const lines = (): string[] => daemon.stderr.split('\n').filter((l) => l.startsWith('macvtap-fault: '));
  while (lines().length < n || (lines()[n - 1].includes(' pause at ') && !stopped(daemon.pid))) {
    if (Date.now() > deadline) throw new Error(`no fault line ${n}; stderr: ${daemon.stderr}`);
    if (daemon.child.exitCode !== null || daemon.child.signalCode !== null) throw new Error(`the daemon ended: ${daemon.stderr}`);
    await sleep(5);
  }
}

/** The record files as plain JSON, by device ID. */
export function records(node: Node): Map<string, { linkName: string; ifindex: number; lowerDevice: string; mode: string }> {
  const out = new Map<string, { linkName: string; ifindex: number; lowerDevice: string; mode: string }>();
  const dir = path.join(node.stateDir, 'allocations');
  for (const name of stateFiles(node, 'allocations')) {
    if (!name.endsWith('.json')) continue;
    const rec = JSON.parse(fs.readFileSync(path.join(dir, name), 'utf8')) as { deviceID: string; linkName: string; ifindex: number };
    out.set(rec.deviceID, rec as { deviceID: string; linkName: string; ifindex: number; lowerDevice: string; mode: string });
  }
  return out;
}

export function stateFiles(node: Node, sub: 'allocations' | 'locks'): string[] {
  try {
    return fs.readdirSync(path.join(node.stateDir, sub)).sort();
  } catch {
    return [];
  }
}

/** The links the device plugin names (`mvt`, `mvn`, `mvr`) on the node, per iproute2. */
export function pluginLinks(node: Node): IpLink[] {
  return ipLinks(node.ns).filter((l) => /^mv[tnr]/.test(l.ifname));
}

/** major:minor of a node per coreutils `stat`, or undefined if it is missing or not a char device. */
export function nodeDev(file: string): string | undefined {
  try {
    const out = execFileSync('stat', ['-c', '%F %Hr:%Lr', file], { encoding: 'utf8' }).trim();
    return out.startsWith('character special file ') ? out.slice('character special file '.length) : undefined;
  } catch {
    return undefined;
  }
}

/** Waits until no retired (`mvr`) link is left (the background deletion caught up). */
export async function waitNoRetired(node: Node, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (pluginLinks(node).some((l) => l.ifname.startsWith('mvr')) && Date.now() < deadline) await sleep(20);
}

/**
 * Records match the kernel: every record names an existing macvtap on the lower device with the recorded ifindex,
 * up, whose /dev/tap<ifindex> is its char device; every `mvt` link has its record; no pending or retired link, temp
 * file or lock file is left. Returns the device IDs recorded.
 */
export function assertConsistent(t: Test, node: Node, label: string): string[] {
  const links = pluginLinks(node);
  const recs = records(node);
  t.same(
    links.filter((l) => !l.ifname.startsWith('mvt')).map((l) => l.ifname),
    [],
    `${label}: no pending or retired link left`,
  );
  for (const [id, rec] of recs) {
    const link = links.find((l) => l.ifname === rec.linkName);
    t.ok(link, `${label}: ${id}'s recorded link ${rec.linkName} exists`);
    if (!link) continue;
    t.equal(link.ifindex, rec.ifindex, `${label}: ${id}: the recorded ifindex`);
    t.equal(link.linkinfo?.info_kind, 'macvtap', `${label}: ${id}: a macvtap`);
    t.equal(link.link, node.lower, `${label}: ${id}: on the lower device`);
    t.ok(link.flags.includes('UP'), `${label}: ${id}: up`);
    t.equal(nodeDev(`/dev/tap${link.ifindex}`), sysfsTapDev(node.ns, link.ifname, link.ifindex), `${label}: ${id}: its tap node`);
  }
  const recorded = new Set([...recs.values()].map((r) => r.linkName));
  t.same(
    links.filter((l) => l.ifname.startsWith('mvt') && !recorded.has(l.ifname)).map((l) => l.ifname),
    [],
    `${label}: every mvt link has its record`,
  );
  t.same(
    stateFiles(node, 'allocations').filter((n) => !n.endsWith('.json')),
    [],
    `${label}: no temp file`,
  );
  t.same(stateFiles(node, 'locks'), [], `${label}: no lock file`);
  return [...recs.keys()].sort();
}
