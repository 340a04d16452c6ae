/**
 * Retired links: a stale macvtap of a device's host name is not deleted inside Allocate but retired (set down and
 * renamed `mvr<ifindex>`, one fast request) and deleted here, in the background, through a netlink socket of its
 * own. Deleting a netdevice waits for RCU grace periods with the kernel's RTNL lock held (about 20 ms here), which
 * would otherwise dominate an Allocate that replaces links.
 *
 * Safety: a retired link is deleted **by name**, after checking that the link of that name is a macvtap whose
 * name is `mvr` + its own ifindex. A retired link can vanish behind our back (deleting its lower device takes its
 * macvtaps with it) and a newer Allocate can then get its ifindex (with `--ifindex-range`, the lowest free index is
 * the normal choice): deleting by ifindex would delete that newer, answered device. By name it cannot: the newer
 * link is called `mvt...`, and only this module's owner renames links to `mvr...`.
 *
 * Progress: deletion prefers moments when no Allocate is in flight, but a retired link waits at most
 * REAP_DEFER_MS for one; under a storm of Allocates (never idle) links are then deleted alongside them, so they
 * cannot pile up.
 */
import { setTimeout as delay } from 'node:timers/promises';
import { retiredName } from '../naming';
import { type Link, NetlinkError, type Netns } from '../netlink';
import { errorMessage, type Logger } from '../util/log';

/** How long a retired link waits for an idle allocator before it is deleted anyway. */
export const REAP_DEFER_MS = 200;

/** Whether a link is one this plugin retired (and may delete). */
export function isRetired(link: Pick<Link, 'name' | 'kind' | 'index'>): boolean {
  return link.kind === 'macvtap' && link.name === retiredName(link.index);
}

interface Retired {
  name: string;
  /** When it was queued (performance.now()). */
  since: number;
}

export interface ReaperOptions {
  /** A handle on the daemon's namespace of the reaper's own (its requests never queue behind Allocate's). */
  netns: Netns;
  log: Logger;
  /** Allocates queued or running right now. */
  busy(): number;
  /** Resolves when no Allocate is queued or running. */
  idle(): Promise<void>;
}

export class Reaper {
  private readonly queue: Retired[] = [];
  private running: Promise<void> | undefined;
  private stopped = false;

  constructor(private readonly opts: ReaperOptions) {}

  /** Retired links waiting for deletion. */
  get pending(): number {
    return this.queue.length;
  }

  /** Queues the retired link `name` (`mvr<ifindex>`) for deletion. */
  add(name: string): void {
    if (this.stopped) return;
    this.queue.push({ name, since: performance.now() });
    this.running ??= this.run().finally(() => (this.running = undefined));
  }

  /** Resolves when every queued link has been dealt with (or the reaper stopped). */
  async drain(): Promise<void> {
    while (this.running) await this.running;
  }

  /** Stops deleting; links still queued are deleted at the next start (they keep their `mvr` names). */
  stop(): void {
    this.stopped = true;
    this.queue.length = 0;
  }

  private async run(): Promise<void> {
    while (!this.stopped) {
      const next = this.queue[0];
      if (!next) return;
      const wait = next.since + REAP_DEFER_MS - performance.now();
      if (this.opts.busy() > 0 && wait > 0) {
        const ac = new AbortController();
        await Promise.race([this.opts.idle(), delay(wait, undefined, { signal: ac.signal }).catch(() => undefined)]);
        ac.abort();
        continue;
      }
      this.queue.shift();
      await this.delete(next.name);
    }
  }

  /** Deletes the link called `name` if it is still a retired macvtap; a link that vanished is not an error. */
  private async delete(name: string): Promise<void> {
    const { netns, log } = this.opts;
    try {
      const link = await netns.getLink(name);
      if (!link) return;
      if (!isRetired(link)) {
        log.warn('not deleting a link named like a retired one: it is not one', { link: name, ifindex: link.index, kind: link.kind });
        return;
      }
      // By name: the kernel resolves the name at deletion time, so a link that took a vanished retired link's
      // ifindex is never hit.
      await netns.deleteLink(name);
    } catch (err) {
      if (err instanceof NetlinkError && (err.code === 'ENODEV' || err.code === 'ECANCELED')) return;
      log.warn('cannot delete a retired link', { link: name, err: errorMessage(err) });
    }
  }
}
