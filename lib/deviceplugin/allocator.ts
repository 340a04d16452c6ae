/**
 * Allocate: turns device IDs into macvtaps on the resource's lower device and the tap device nodes the
 * kubelet hands to the container. All or nothing per request: a failure removes every link, node and record
 * this request made.
 *
 * A stale link of a device's name is retired rather than deleted on the spot: set down and renamed to
 * `mvr<ifindex>` (one fast request), then deleted in the background through a second netlink socket, only
 * while no Allocate is in flight. Deleting a netdevice waits for RCU grace periods with the kernel's RTNL lock
 * held (about 20 ms here), which would otherwise dominate an Allocate that replaces links and stall every other
 * link operation meanwhile. Retired links left by a crash are deleted at the next start.
 */
import * as fs from 'node:fs';
import { charDeviceOf, ensureTapNode, Link, NetlinkError, Netns } from '../netlink';
import { hostLinkName, resourceName } from '../naming';
import { AllocationRecord, AllocationStore } from '../naming/allocations';
import { SerialQueue } from '../util/serial';
import type { ResourceConfig } from './config';
import { errorMessage, Logger } from '../util/log';

/** Why an Allocate failed; `kind` maps to a gRPC status code. */
export class AllocateError extends Error {
  readonly kind: 'invalid' | 'precondition' | 'internal';
  constructor(kind: AllocateError['kind'], message: string) {
    super(message);
    this.name = 'AllocateError';
    this.kind = kind;
  }
}

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

/** What Allocate made for one device. */
export interface AllocatedDevice {
  deviceID: string;
  linkName: string;
  ifindex: number;
  tapPath: string;
}

export interface AllocatorOptions {
  netns: Netns;
  /** A second handle on the same namespace, for background deletion of retired links. */
  reaper: Netns;
  log: Logger;
  store: AllocationStore;
  ifindexRange?: IfindexRange;
  /** Directory of the tap nodes; `/dev`. */
  devDir?: string;
}

interface Made {
  linkName: string;
  ifindex: number;
  node?: { path: string; major: number; minor: number };
  record?: string;
}

export class Allocator {
  private readonly netns: Netns;
  private readonly reaper: Netns;
  private readonly log: Logger;
  private readonly retired: number[] = [];
  private reaping: Promise<void> | undefined;
  private readonly store: AllocationStore;
  private readonly range: IfindexRange | undefined;
  private readonly devDir: string;
  /** Requests run one at a time: two requests never race for a link name or an ifindex. The reaper deletes
   * only while it is idle. */
  private readonly queue = new SerialQueue();

  constructor(opts: AllocatorOptions) {
    this.netns = opts.netns;
    this.reaper = opts.reaper;
    this.log = opts.log;
    this.store = opts.store;
    this.range = opts.ifindexRange;
    this.devDir = opts.devDir ?? '/dev';
  }

  /** Allocates `ids` (already checked to belong to `resource`) for one container, all or nothing. */
  allocate(resource: ResourceConfig, ids: string[], log: Logger): Promise<AllocatedDevice[]> {
    return this.queue.run(() => this.run(resource, ids, log));
  }

  private async run(resource: ResourceConfig, ids: string[], log: Logger): Promise<AllocatedDevice[]> {
    const lower = resource.lowerDevice === undefined ? null : await this.netns.getLink(resource.lowerDevice);
    if (!lower)
      throw new AllocateError(
        'precondition',
        `lower device ${resource.lowerDevice ?? '(none configured)'} of ${resourceName(resource.name)} does not exist`,
      );
    const made: Made[] = [];
    const out: AllocatedDevice[] = [];
    const taken = this.range ? new Set((await this.netns.listLinks()).map((l) => l.index)) : undefined;
    try {
      for (const id of ids) {
        const linkName = hostLinkName(id);
        const step = (what: string, err: unknown): AllocateError =>
          new AllocateError(
            err instanceof AllocateError ? err.kind : 'internal',
            `device ${id}: ${what} ${linkName}: ${errorMessage(err)}`,
          );
        try {
          await this.retireStale(linkName);
        } catch (err) {
          throw step('remove stale link', err);
        }
        let link: Link;
        try {
          link = await this.create(linkName, lower, resource, taken);
        } catch (err) {
          throw step(`create macvtap (mode ${resource.mode}) on ${lower.name} as`, err);
        }
        const entry: Made = { linkName, ifindex: link.index };
        made.push(entry);
        try {
          const tap = this.netns.tapDeviceSync(link);
          ensureTapNode(tap, { devDir: this.devDir });
          entry.node = { path: `${this.devDir}/tap${tap.ifindex}`, major: tap.major, minor: tap.minor };
        } catch (err) {
          throw step('make tap device node for', err);
        }
        const record: AllocationRecord = {
          version: 1,
          deviceID: id,
          resource: resourceName(resource.name),
          linkName,
          lowerDevice: lower.name,
          mode: resource.mode,
          ifindex: link.index,
          txqueuelen: link.txqueuelen,
          allocatedAt: new Date().toISOString(),
        };
        try {
          this.store.write(record);
          entry.record = id;
        } catch (err) {
          throw step('record allocation of', err);
        }
        out.push({ deviceID: id, linkName, ifindex: link.index, tapPath: `/dev/tap${link.index}` });
        log.debug('device allocated', { deviceID: id, link: linkName, ifindex: link.index });
      }
    } catch (err) {
      await this.undo(made, log);
      throw err;
    }
    return out;
  }

  /** Runs `fn` while no Allocate is in flight (later requests wait for it): for work that must not race one. */
  exclusive<T>(fn: () => Promise<T>): Promise<T> {
    return this.queue.run(fn);
  }

  /** Retires a leftover macvtap of this name (a pod that went away leaves its link behind on failures). */
  private async retireStale(linkName: string): Promise<void> {
    const stale = await this.netns.getLink(linkName);
    if (!stale) return;
    if (stale.kind !== 'macvtap')
      throw new AllocateError(
        'internal',
        `link ${linkName} exists and is not a macvtap (kind ${stale.kind ?? 'none'}); refusing to delete it`,
      );
    try {
      await this.netns.setLink(stale.index, { up: false, name: retiredName(stale.index) });
    } catch (err) {
      if (err instanceof NetlinkError && err.code === 'ENODEV') return;
      throw err;
    }
    this.reap(stale.index);
  }

  /** Queues a retired link (by ifindex) for deletion in the background. */
  reap(ifindex: number): void {
    this.retired.push(ifindex);
    this.reaping ??= this.reapAll().finally(() => (this.reaping = undefined));
  }

  private async reapAll(): Promise<void> {
    for (;;) {
      while (this.queue.pending > 0) await this.queue.idle();
      const index = this.retired.shift();
      if (index === undefined) return;
      try {
        await this.reaper.deleteLink(index);
      } catch (err) {
        if (!(err instanceof NetlinkError && (err.code === 'ENODEV' || err.code === 'ECANCELED'))) {
          this.log.warn('cannot delete a retired link', { ifindex: index, err: errorMessage(err) });
        }
      }
    }
  }

  /** Resolves when every queued retired link has been deleted. */
  async drain(): Promise<void> {
    while (this.reaping) await this.reaping;
  }

  private async create(linkName: string, lower: Link, resource: ResourceConfig, taken: Set<number> | undefined): Promise<Link> {
    // Up from the start, as kubevirt's plugin makes it: a pod that consumes only /dev/tapN (no CNI call)
    // must get a tap that passes frames; the CNI brings it up again in the pod after the move anyway.
    const opts = { name: linkName, lower: lower.index, mode: resource.mode, txqueuelen: lower.txqueuelen, up: true };
    if (!this.range || !taken) return this.netns.createMacvtap(opts);
    // Prefer indexes whose /dev/tap<i> name is unused, so no other namespace's node is replaced.
    const free: number[] = [];
    const nodeTaken: number[] = [];
    for (let i = this.range.from; i <= this.range.to; i++) {
      if (taken.has(i)) continue;
      (fs.existsSync(`${this.devDir}/tap${i}`) ? nodeTaken : free).push(i);
      if (free.length >= 64) break;
    }
    for (const index of [...free, ...nodeTaken]) {
      try {
        const link = await this.netns.createMacvtap({ ...opts, index });
        taken.add(link.index);
        return link;
      } catch (err) {
        // EEXIST: the index was taken since the dump; try the next.
        if (!(err instanceof NetlinkError && err.code === 'EEXIST')) throw err;
        taken.add(index);
      }
    }
    throw new AllocateError('internal', `no free ifindex left in --ifindex-range ${this.range.from}-${this.range.to}`);
  }

  private async undo(made: Made[], log: Logger): Promise<void> {
    for (const m of made.reverse()) {
      try {
        await this.netns.deleteLink(m.ifindex);
      } catch (err) {
        if (!(err instanceof NetlinkError && err.code === 'ENODEV'))
          log.error('cannot remove half-made link', { link: m.linkName, err: errorMessage(err) });
      }
      if (m.node) {
        const now = charDeviceOf(m.node.path);
        if (now && now.major === m.node.major && now.minor === m.node.minor) fs.rmSync(m.node.path, { force: true });
      }
      if (m.record) this.store.remove(m.record);
    }
  }
}

/** The name a retired link carries until it is deleted. */
export function retiredName(ifindex: number): string {
  return `mvr${ifindex}`;
}

/** Whether a link is one this plugin retired (and may delete). */
export function isRetired(link: Pick<Link, 'name' | 'kind' | 'index'>): boolean {
  return link.kind === 'macvtap' && link.name === retiredName(link.index);
}
