/**
 * `--ifindex-range FROM-TO`: Allocate creates macvtaps only with ifindexes in the range, so their
 * /dev/tap<ifindex> names never collide with another namespace's (tests, several plugins on one machine).
 */
import * as fs from 'node:fs';
import { type MacvtapOptions, type Link, NetlinkError, type Netns } from '../netlink';
import { AllocateError } from './allocate-types';

/** An inclusive range of ifindexes Allocate picks from (`--ifindex-range FROM-TO`). */
export interface IfindexRange {
  from: number;
  to: number;
}

/** Parses `FROM-TO` (1 <= FROM <= TO <= 2^31-1); returns a message instead when it is not one. */
export function parseIfindexRange(text: string): IfindexRange | string {
  const m = /^(\d{1,10})-(\d{1,10})$/.exec(text);
  if (!m) return `expected FROM-TO (two ifindexes), got ${JSON.stringify(text)}`;
  const from = Number(m[1]);
  const to = Number(m[2]);
  if (from < 1 || to > 0x7fffffff || from > to) return `expected 1 <= FROM <= TO <= 2147483647, got ${text}`;
  return { from, to };
}

/**
 * Creates the macvtap with the first free ifindex of `range` (`taken`: the namespace's indexes, kept current).
 * Indexes whose /dev/tap<i> name is unused come first, so no other namespace's node is replaced.
 */
export async function createInRange(
  netns: Netns,
  opts: Omit<MacvtapOptions, 'index'>,
  range: IfindexRange,
  taken: Set<number>,
  devDir: string,
): Promise<Link> {
  const free: number[] = [];
  const nodeTaken: number[] = [];
  for (let i = range.from; i <= range.to; i++) {
    if (taken.has(i)) continue;
    (fs.existsSync(`${devDir}/tap${i}`) ? nodeTaken : free).push(i);
    if (free.length >= 64) break;
  }
  for (const index of [...free, ...nodeTaken]) {
    try {
      const link = await netns.createMacvtap({ ...opts, index });
      taken.add(link.index);
      return link;
    } catch (err) {
      // EEXIST: the index was taken since the dump; try the next.
      if (!(err instanceof NetlinkError && err.code === 'EEXIST')) throw err;
      taken.add(index);
    }
  }
  throw new AllocateError('internal', `no free ifindex left in --ifindex-range ${range.from}-${range.to}`);
}
