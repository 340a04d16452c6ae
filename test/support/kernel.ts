/**
 * Test fixtures for the real kernel: throwaway namespaces with veth lower devices, unique explicit
 * ifindexes (so /dev/tap<ifindex> nodes of parallel tests never collide), and the iproute2 oracle.
 * Everything a fixture makes is removed in t.teardown, whether the test passed or not.
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';

export const isRoot = process.getuid?.() === 0;
/** Skip reason for tests that need root (they drive the real kernel). */
export const rootOnly = isRoot ? false : 'needs root: drives the real kernel in network namespaces';

type Teardown = { teardown(fn: () => void | Promise<void>): void };

let counter = 0;
/** A namespace name unique to this process and call. */
export function uniqueName(prefix = 'mvt'): string {
  counter += 1;
  return `${prefix}-t${process.pid}-${counter}`;
}

/** Runs `ip` with arguments and returns stdout (throws with stderr on failure). */
export function ip(...args: string[]): string {
  return execFileSync('ip', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

/** What `ip -j -d link show` prints for one link (the fields the tests read; iproute2 6.1). */
export interface IpLink {
  ifindex: number;
  ifname: string;
  /** The lower device's name (or `if<N>` when it lives in another namespace). */
  link?: string;
  link_netnsid?: number;
  flags: string[];
  mtu: number;
  operstate: string;
  txqlen?: number;
  address?: string;
  ifalias?: string;
  promiscuity?: number;
  linkinfo?: {
    info_kind?: string;
    info_data?: { mode?: string; flags?: string[]; macaddr_count?: number; macaddr_data?: string[]; [key: string]: unknown };
  };
  [key: string]: unknown;
}

/** Every link of a namespace (or of this process's namespace) per iproute2. */
export function ipLinks(ns?: string): IpLink[] {
  return JSON.parse(ns ? ip('-n', ns, '-j', '-d', 'link', 'show') : ip('-j', '-d', 'link', 'show')) as IpLink[];
}

/** The oracle: iproute2's JSON view of a link in a namespace, or undefined if it does not exist. */
export function ipLink(ns: string | undefined, name: string): IpLink | undefined {
  try {
    const out = ns ? ip('-n', ns, '-j', '-d', 'link', 'show', 'dev', name) : ip('-j', '-d', 'link', 'show', 'dev', name);
    return (JSON.parse(out) as IpLink[])[0];
  } catch {
    return undefined;
  }
}

/** Every link name in a namespace, per iproute2. */
export function ipLinkNames(ns: string): string[] {
  return ipLinks(ns)
    .map((l) => l.ifname)
    .sort();
}

/** Creates a named namespace with `ip netns add` and removes it (and its links) at teardown. */
export function makeNetns(t: Teardown, prefix = 'mvt'): string {
  sweepDeadTestNamespaces();
  const name = uniqueName(prefix);
  ip('netns', 'add', name);
  t.teardown(() => removeNetns(name));
  return name;
}

export function removeNetns(name: string): void {
  try {
    ip('netns', 'del', name);
  } catch {
    /* already gone */
  }
}

/**
 * A namespace holding a veth pair: `lower` is the macvtap's lower device, `peer` its other end (the "wire").
 * Both are up.
 */
export function makeLowerNetns(t: Teardown, opts: { mtu?: number; prefix?: string } = {}): { ns: string; lower: string; peer: string } {
  const ns = makeNetns(t, opts.prefix);
  ip('-n', ns, 'link', 'add', 'lower0', 'type', 'veth', 'peer', 'name', 'peer0');
  if (opts.mtu) {
    ip('-n', ns, 'link', 'set', 'lower0', 'mtu', String(opts.mtu));
    ip('-n', ns, 'link', 'set', 'peer0', 'mtu', String(opts.mtu));
  }
  ip('-n', ns, 'link', 'set', 'lower0', 'up');
  ip('-n', ns, 'link', 'set', 'peer0', 'up');
  return { ns, lower: 'lower0', peer: 'peer0' };
}

const CLAIM_DIR = '/tmp/macvtap-cni-test-ifindex';
const FIRST_INDEX = 20000;
const LAST_INDEX = 60000;

/**
 * A block of ifindexes no other test process holds right now (claimed with O_EXCL files; claims of dead
 * processes are taken over). Released, and any /dev/tap<i> node in the block removed, at teardown.
 */
export function claimIfindexes(t: Teardown, count = 8): number[] {
  fs.mkdirSync(CLAIM_DIR, { recursive: true });
  const blockSize = 16;
  if (count > blockSize) throw new Error(`claimIfindexes: at most ${blockSize} at a time`);
  for (let base = FIRST_INDEX; base < LAST_INDEX; base += blockSize) {
    const claim = path.join(CLAIM_DIR, String(base));
    if (!tryClaim(claim)) continue;
    // A test process killed before its teardown (a timeout, SIGKILL) leaves its nodes behind; the block is
    // ours now, so whatever tap node is in it is stale.
    for (let i = base; i < base + blockSize; i++) removeOwnTapNode(i);
    const indexes = Array.from({ length: count }, (_, i) => base + i);
    t.teardown(() => {
      for (let i = base; i < base + blockSize; i++) removeOwnTapNode(i);
      fs.rmSync(claim, { force: true });
    });
    return indexes;
  }
  throw new Error('claimIfindexes: no free block');
}

function tryClaim(file: string): boolean {
  try {
    fs.writeFileSync(file, String(process.pid), { flag: 'wx' });
    return true;
  } catch {
    const owner = Number(fs.readFileSync(file, 'utf8'));
    if (owner && owner !== process.pid && !alive(owner)) {
      fs.rmSync(file, { force: true });
      return tryClaim(file);
    }
    return false;
  }
}

let swept = false;

/**
 * Removes, once per test process, the namespaces that test processes killed before their teardown left behind
 * (named `<prefix>-t<pid>-<n>` by uniqueName, with `pid` no longer running): their links would otherwise keep
 * /dev/tap<ifindex> names that later tests claim.
 */
function sweepDeadTestNamespaces(): void {
  if (swept) return;
  swept = true;
  let names: string[];
  try {
    names = fs.readdirSync('/var/run/netns');
  } catch {
    return;
  }
  for (const name of names) {
    const m = /^[a-z][a-z0-9-]*-t(\d+)-\d+$/.exec(name);
    if (m && Number(m[1]) !== process.pid && !alive(Number(m[1]))) removeNetns(name);
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Removes /dev/tap<i> if it is left over (nodes we mknod ourselves are not removed by the kernel). */
export function removeOwnTapNode(ifindex: number): void {
  fs.rmSync(`/dev/tap${ifindex}`, { force: true });
}

/** Major:minor of a macvtap's char device as sysfs in its namespace shows it (independent of the library). */
export function sysfsTapDev(ns: string, name: string, ifindex: number): string {
  return execFileSync('ip', ['netns', 'exec', ns, 'cat', `/sys/class/net/${name}/tap${ifindex}/dev`], { encoding: 'utf8' }).trim();
}

/** Open fds of this process. */
export function openFdCount(): number {
  return fs.readdirSync('/proc/self/fd').length;
}
