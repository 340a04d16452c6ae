/**
 * Drives the built plugin exactly as a runtime does: `node dist/bin/macvtap.js` with CNI_* env and the network
 * configuration on stdin, run inside a scratch "host" namespace (`ip netns exec HOST`, so sysfs is HOST's and the
 * device's macvtap lives there as if HOST were the node's namespace), with the pod's namespace separate.
 * Everything made here is removed at teardown.
 */
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { hostLinkName } from '../../lib/naming';
import { AllocationRecord, NodeState } from '../../lib/state';
import { Logger } from '../../lib/util/log';
import { claimIfindexes, ip, ipLink, IpLink, makeLowerNetns, makeNetns } from '../support/kernel';

export const PLUGIN = path.resolve(__dirname, '..', '..', 'dist', 'bin', 'macvtap.js');

type Teardown = { teardown(fn: () => void | Promise<void>): void };

export interface Scene {
  host: string;
  pod: string;
  netns: string;
  lower: string;
  stateDir: string;
  indexes: number[];
}

/** HOST (veth lower0/peer0, up), POD, a temp state dir and a block of ifindexes. */
export function makeScene(t: Teardown, opts: { mtu?: number; indexes?: number } = {}): Scene {
  const { ns: host, lower } = makeLowerNetns(t, { mtu: opts.mtu, prefix: 'mvch' });
  const pod = makeNetns(t, 'mvcp');
  const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'macvtap-cni-test-'));
  t.teardown(() => fs.rmSync(stateDir, { recursive: true, force: true }));
  const indexes = claimIfindexes(t, opts.indexes ?? 8);
  return { host, pod, netns: `/var/run/netns/${pod}`, lower, stateDir, indexes };
}

/** A macvtap in HOST with an explicit ifindex, as the device plugin (or an operator) would make it. */
export function addMacvtap(scene: Scene, name: string, index: number, mode = 'bridge', extra: string[] = []): void {
  ip('-n', scene.host, 'link', 'add', 'link', scene.lower, 'name', name, 'index', String(index), ...extra, 'type', 'macvtap', 'mode', mode);
}

/** The scene's state directory, opened as the programs open it (close it when done). */
export function openState(scene: Scene): NodeState {
  return NodeState.open(scene.stateDir, { log: new Logger({ level: 'error' }) });
}

/** An allocation record as the device plugin writes it at Allocate; its link is `hostLinkName(deviceID)`. */
export function writeAllocation(scene: Scene, rec: Partial<AllocationRecord> & { deviceID: string; ifindex: number }): AllocationRecord {
  const full: AllocationRecord = {
    version: 1,
    resource: 'macvtap.network.kubevirt.io/dataplane',
    linkName: hostLinkName(rec.deviceID),
    lowerDevice: scene.lower,
    mode: 'bridge',
    txqueuelen: 1000,
    allocatedAt: new Date().toISOString(),
    ...rec,
  };
  const state = openState(scene);
  try {
    state.allocations.write(full);
  } finally {
    state.close();
  }
  return full;
}

/** Path of the attachment record of (device, container, ifname). */
export function attachmentFile(scene: Scene, deviceID: string, containerId = 'c0ffee01', ifname = 'net1'): string {
  return path.join(scene.stateDir, 'attachments', `${deviceID}+${containerId}+${ifname}.json`);
}

/** Entries of a state subdirectory ([] when it does not exist). */
export function stateEntries(scene: Scene, dir: 'attachments' | 'locks' | 'allocations'): string[] {
  const full = path.join(scene.stateDir, dir);
  return fs.existsSync(full) ? fs.readdirSync(full).sort() : [];
}

export interface CniCall {
  command: string;
  config?: unknown;
  /** Raw stdin (overrides config). */
  stdin?: string;
  containerId?: string;
  ifname?: string;
  netns?: string | null;
  args?: string;
  /** Extra or overriding env; `undefined` values unset the variable. */
  env?: Record<string, string | undefined>;
}

/** What the plugin prints: a result (ADD), an error, or a VERSION answer; fields as the spec names them. */
export interface CniJson {
  cniVersion?: string;
  code?: number;
  msg?: string;
  details?: string;
  interfaces?: { name: string; mac: string; sandbox?: string; mtu?: number }[];
  supportedVersions?: string[];
  [key: string]: unknown;
}

export interface CniResult {
  status: number | null;
  stdout: string;
  stderr: string;
  json: CniJson | undefined;
}

function envFor(scene: Scene, call: CniCall): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH,
    CNI_COMMAND: call.command,
    CNI_CONTAINERID: call.containerId ?? 'c0ffee01',
    CNI_IFNAME: call.ifname ?? 'net1',
    CNI_PATH: '/opt/cni/bin',
    // The state directory is host configuration (the runtime's environment), not the network configuration's.
    MACVTAP_CNI_STATE_DIR: scene.stateDir,
    // These tests have no kubelet; the ownership check (K8S_POD_UID against its checkpoint) is test/security's.
    MACVTAP_CNI_OWNERSHIP: 'off',
    CNI_ARGS:
      call.args ?? 'IgnoreUnknown=true;K8S_POD_NAMESPACE=default;K8S_POD_NAME=vm;K8S_POD_INFRA_CONTAINER_ID=c0ffee01;K8S_POD_UID=1234',
  };
  if (call.netns !== null) env.CNI_NETNS = call.netns ?? scene.netns;
  for (const [k, v] of Object.entries(call.env ?? {})) {
    if (v === undefined) delete env[k];
    else env[k] = v;
  }
  return env;
}

function stdinFor(call: CniCall): string {
  return call.stdin ?? (call.config === undefined ? '' : JSON.stringify(call.config));
}

function result(status: number | null, stdout: string, stderr: string): CniResult {
  let json: CniJson | undefined;
  try {
    json = stdout.trim() ? (JSON.parse(stdout) as CniJson) : undefined;
  } catch {
    json = undefined;
  }
  return { status, stdout, stderr, json };
}

/** Runs the plugin in HOST and waits. */
export function cni(scene: Scene, call: CniCall): CniResult {
  const r = spawnSync('ip', ['netns', 'exec', scene.host, process.execPath, PLUGIN], {
    env: envFor(scene, call),
    input: stdinFor(call),
    encoding: 'utf8',
  });
  return result(r.status, r.stdout, r.stderr);
}

/** The same, without blocking (for parallel runs). */
export function cniAsync(scene: Scene, call: CniCall): Promise<CniResult> {
  return new Promise((resolve, reject) => {
    const child = spawn('ip', ['netns', 'exec', scene.host, process.execPath, PLUGIN], { env: envFor(scene, call) });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d) => (stderr += d));
    child.on('error', reject);
    child.on('close', (status) => resolve(result(status, stdout, stderr)));
    child.stdin.end(stdinFor(call));
  });
}

/** A network configuration (the scene's state dir comes from the environment, see envFor). */
export function conf(_scene: Scene, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { cniVersion: '1.1.0', name: 'dataplane', type: 'macvtap', ...extra };
}

/** The oracle's view of a link that must exist (fails the test with a clear message when it does not). */
export function linkOf(ns: string, name: string): IpLink {
  const link = ipLink(ns, name);
  if (!link) throw new Error(`no link ${name} in namespace ${ns}`);
  return link;
}

/** Everything iproute2 reports about a namespace's links, for "nothing changed" comparisons. */
export function snapshot(ns: string): string {
  const links = JSON.parse(ip('-n', ns, '-j', '-d', 'link', 'show')) as IpLink[];
  return JSON.stringify(links.sort((a, b) => a.ifindex - b.ifindex));
}

/**
 * Both namespaces, plus each given tap node: whether it is the char device of the macvtap with that ifindex (the
 * kernel may give a macvtap another minor whenever it changes namespace, so the raw number is not compared), its
 * owner and mode.
 */
export function world(scene: Scene, indexes: number[] = []): { host: string; pod: string; nodes: string } {
  const host = snapshot(scene.host);
  const pod = snapshot(scene.pod);
  const nodes = indexes.map((i) => {
    let st: fs.Stats;
    try {
      st = fs.lstatSync(`/dev/tap${i}`);
    } catch {
      return `${i}:none`;
    }
    if (!st.isCharacterDevice()) return `${i}:${st.isDirectory() ? 'dir' : 'other'}`;
    let owner = 'no macvtap';
    for (const [ns, links] of [
      [scene.host, host],
      [scene.pod, pod],
    ] as const) {
      const link = (JSON.parse(links) as IpLink[]).find((l) => l.ifindex === i && l.linkinfo?.info_kind === 'macvtap');
      if (link) owner = sysfsDev(ns, link.ifname, i) === nodeDev(i) ? `${ns === scene.host ? 'host' : 'pod'} ${link.ifname}` : 'stale';
    }
    return `${i}:${owner}:${st.uid}:${st.gid}:${(st.mode & 0o7777).toString(8)}`;
  });
  return { host, pod, nodes: nodes.join(',') };
}

/** Major:minor of /dev/tapN as a string, or undefined. */
export function nodeDev(index: number): string | undefined {
  try {
    const st = fs.statSync(`/dev/tap${index}`);
    if (!st.isCharacterDevice()) return undefined;
    const major = Number((BigInt(st.rdev) >> 8n) & 0xfffn);
    const minor = Number((BigInt(st.rdev) & 0xffn) | ((BigInt(st.rdev) >> 12n) & ~0xffn));
    return `${major}:${minor}`;
  } catch {
    return undefined;
  }
}

export function nodeOwner(index: number): string | undefined {
  try {
    const st = fs.statSync(`/dev/tap${index}`);
    return `${st.uid}:${st.gid}`;
  } catch {
    return undefined;
  }
}

/** sysfs of the namespace the link lives in: its char device. */
export function sysfsDev(ns: string, name: string, index: number): string {
  return execFileSync('ip', ['netns', 'exec', ns, 'cat', `/sys/class/net/${name}/tap${index}/dev`], { encoding: 'utf8' }).trim();
}

/** Asserts no stack trace leaked (a line like "    at foo (file:1:2)"). */
export function noStack(r: CniResult): boolean {
  return !/^\s+at .+[:(]/m.test(r.stdout + r.stderr);
}

export { ip, ipLink };
