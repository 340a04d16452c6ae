/**
 * Fixtures shared by the netlink suites: a scratch namespace with a veth lower device, opened as a library
 * handle, plus oracle helpers on top of test/support/kernel.ts. Everything is released at teardown.
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import { Netns } from '../../lib/netlink';
import { claimIfindexes, ip, ipLink, ipLinkNames, IpLink, makeLowerNetns, makeNetns } from '../support/kernel';

type Teardown = { teardown(fn: () => void | Promise<void>): void };

export interface Scratch {
  /** Namespace name (for the `ip -n` oracle). */
  ns: string;
  /** Library handle on it, closed at teardown. */
  h: Netns;
  lower: string;
  lowerIndex: number;
  /** Claimed ifindexes for the macvtaps this test creates. */
  idx: number[];
}

export function openNamed(t: Teardown, ns: string): Netns {
  const h = Netns.open(`/var/run/netns/${ns}`);
  t.teardown(() => h.close());
  return h;
}

/** A namespace with veth lower0/peer0 (both up), a handle on it and `count` claimed ifindexes. */
export function scratch(t: Teardown, opts: { mtu?: number; count?: number } = {}): Scratch {
  const { ns, lower } = makeLowerNetns(t, { mtu: opts.mtu });
  const h = openNamed(t, ns);
  return { ns, h, lower, lowerIndex: oracle(ns, lower).ifindex, idx: claimIfindexes(t, opts.count ?? 8) };
}

/** The oracle's view of a link that must exist: throws (failing the test by name) when ip does not list it. */
export function oracle(ns: string, name: string): IpLink {
  const link = ipLink(ns, name);
  if (!link) throw new Error(`ip does not list ${name} in namespace ${ns}`);
  return link;
}

/** A second, empty namespace with a handle. */
export function emptyNetns(t: Teardown): { ns: string; h: Netns } {
  const ns = makeNetns(t);
  return { ns, h: openNamed(t, ns) };
}

/** Link names per the oracle, or [] for a namespace that is gone. */
export function names(ns: string): string[] {
  return ipLinkNames(ns);
}

/** Oracle flag check: does `ip -j -d link` list the flag (e.g. UP, PROMISC)? */
export function hasFlag(ns: string, name: string, flag: string): boolean {
  const link = ipLink(ns, name);
  return Array.isArray(link?.flags) && link.flags.includes(flag);
}

/** A `sleep` running inside namespace `ns` (for pid targets); killed at teardown. */
export async function sleeperIn(t: Teardown, ns: string): Promise<number> {
  const child = spawn('ip', ['netns', 'exec', ns, 'sleep', '600'], { stdio: 'ignore' });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  t.teardown(async () => {
    child.kill('SIGKILL');
    await exited;
  });
  // `ip netns exec` execs sleep in place: wait until the pid's namespace is the target one.
  const want = fs.statSync(`/var/run/netns/${ns}`).ino;
  for (let i = 0; i < 200; i++) {
    try {
      if (child.pid && fs.statSync(`/proc/${child.pid}/ns/net`).ino === want) return child.pid;
    } catch {
      /* not yet */
    }
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error('sleeper did not enter the namespace');
}

/** Runs a sync twin as a promise, so that its throw becomes a rejection, as the async twin's does. */
export function settled<T>(fn: () => T): Promise<T> {
  return new Promise<T>((resolve) => resolve(fn()));
}

/** Lets pending uv_close callbacks run: a closed async socket's fd is released on the next loop turn. */
export async function settle(): Promise<void> {
  for (let i = 0; i < 3; i++) await new Promise((resolve) => setImmediate(resolve));
}

export { claimIfindexes, ip, ipLink };
