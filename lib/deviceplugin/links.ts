/**
 * A live mirror of the links of one network namespace, kept by link events (RTNLGRP_LINK) with no polling:
 * a full dump at start, after an overrun (the kernel dropped events) and after the subscription is
 * re-established following an error.
 */
import { EventEmitter } from 'node:events';
import { Link, LinkEvent, LinkWatcher, Netns } from '../netlink';
import { errorMessage, Logger } from '../util/log';

const RESUBSCRIBE_MIN_MS = 100;
const RESUBSCRIBE_MAX_MS = 5000;

/**
 * Emits `event` (LinkEvent) for every event and `resync` (reason) after every full re-read, for metrics.
 * Emits `change` with the set of link names whose state may have changed (a renamed link reports both names).
 * `byName()` always reflects every event delivered so far.
 */
export class LinkTable extends EventEmitter {
  private readonly netns: Netns;
  private readonly log: Logger;
  private readonly links = new Map<number, Link>();
  private watcher: LinkWatcher | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  private retryDelay = RESUBSCRIBE_MIN_MS;
  private stopped = false;
  /** Counts dumps, so a resync that raced a newer one is dropped. */
  private generation = 0;
  /** Events delivered while a dump is in flight, replayed on top of it (they may be newer than the dump). */
  private buffered: LinkEvent[] | undefined;

  constructor(netns: Netns, log: Logger) {
    super();
    this.netns = netns;
    this.log = log;
  }

  /** Subscribes and loads the current links. */
  async start(): Promise<void> {
    this.subscribe();
    await this.resync('start');
  }

  /** The link called `name`, if it exists now. */
  byName(name: string): Link | undefined {
    for (const link of this.links.values()) if (link.name === name) return link;
    return undefined;
  }

  all(): Link[] {
    return [...this.links.values()];
  }

  /** Whether the link-event subscription is open (false between a failure and the re-subscription). */
  get subscribed(): boolean {
    return this.watcher !== undefined && !this.watcher.closed;
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    this.watcher?.close();
    this.watcher = undefined;
  }

  private subscribe(): void {
    const watcher = this.netns.watchLinks();
    this.watcher = watcher;
    watcher.on('link', (e: LinkEvent) => this.apply(e));
    watcher.on('overrun', () => {
      this.log.warn('link events were dropped by the kernel; re-reading all links');
      void this.resync('overrun');
    });
    watcher.on('error', (err: Error) => {
      this.log.error('link event subscription failed; re-subscribing', { err: errorMessage(err) });
      watcher.close();
      if (this.watcher === watcher) this.watcher = undefined;
      this.scheduleResubscribe();
    });
  }

  private scheduleResubscribe(): void {
    if (this.stopped || this.retryTimer) return;
    const delay = this.retryDelay;
    this.retryDelay = Math.min(this.retryDelay * 2, RESUBSCRIBE_MAX_MS);
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      if (this.stopped) return;
      try {
        this.subscribe();
      } catch (err) {
        this.log.error('cannot subscribe to link events', { err: errorMessage(err) });
        this.scheduleResubscribe();
        return;
      }
      this.retryDelay = RESUBSCRIBE_MIN_MS;
      void this.resync('re-subscribed');
    }, delay);
  }

  private apply(e: LinkEvent): void {
    this.buffered?.push(e);
    this.emit('event', e);
    const changed = new Set<string>([e.link.name]);
    const old = this.links.get(e.link.index);
    if (old) changed.add(old.name);
    if (e.type === 'del') this.links.delete(e.link.index);
    else this.links.set(e.link.index, e.link);
    this.emit('change', changed);
  }

  /** Replaces the mirror with a fresh dump and reports every name that was or is present. */
  async resync(reason: string): Promise<void> {
    const generation = ++this.generation;
    const buffered: LinkEvent[] = [];
    this.buffered = buffered;
    let fresh: Link[];
    try {
      fresh = await this.netns.listLinks();
    } catch (err) {
      if (this.buffered === buffered) this.buffered = undefined;
      this.log.error('cannot list links', { reason, err: errorMessage(err) });
      if (reason === 'start') throw err;
      return;
    }
    if (this.stopped || generation !== this.generation) return;
    this.buffered = undefined;
    const changed = new Set<string>([...this.links.values()].map((l) => l.name));
    this.links.clear();
    for (const link of fresh) {
      this.links.set(link.index, link);
      changed.add(link.name);
    }
    // Events are in kernel order; replaying them leaves each link in its latest reported state.
    for (const e of buffered) {
      if (e.type === 'del') this.links.delete(e.link.index);
      else this.links.set(e.link.index, e.link);
      changed.add(e.link.name);
    }
    this.log.debug('links re-read', { reason, links: fresh.length });
    this.emit('resync', reason);
    this.emit('change', changed);
  }
}
