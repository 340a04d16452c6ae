/** Link event watching (RTNLGRP_LINK), delivered on the main event loop by uv_poll — no threads. */
import { EventEmitter } from 'node:events';
import { RTM_DELLINK, RTM_NEWLINK, RTMGRP_LINK } from './constants';
import { NetlinkError } from './errors';
import { decodeLink, Link } from './link';
import { native, NativeNetlinkSocket } from './native';

/** One link event: `new` covers creation and every change; `del` removal (or leaving the namespace). */
export interface LinkEvent {
  type: 'new' | 'del';
  link: Link;
}

/**
 * Emits `link` (LinkEvent), `overrun` (the kernel dropped events: re-list links to resync) and `error`.
 * Also an async iterator of LinkEvents, which throws on overrun so a consumer cannot miss it.
 * Call close() to release the socket.
 */
export class LinkWatcher extends EventEmitter {
  private socket: NativeNetlinkSocket | undefined;
  /** The namespace this watcher listens in. */
  readonly netnsPath: string;

  /** @internal Use Netns.watchLinks(). */
  constructor(nsFd: number, netnsPath: string) {
    super();
    this.netnsPath = netnsPath;
    const addon = native();
    this.socket = new addon.NetlinkSocket(nsFd, RTMGRP_LINK);
    this.socket.watch((err, messages) => {
      if (err) {
        if (err.code === 'ENOBUFS') this.emit('overrun', err);
        else this.emit('error', err);
        return;
      }
      for (const msg of messages ?? []) {
        const type = msg.readUInt16LE(4);
        if (type !== RTM_NEWLINK && type !== RTM_DELLINK) continue;
        this.emit('link', { type: type === RTM_NEWLINK ? 'new' : 'del', link: decodeLink(msg) } satisfies LinkEvent);
        if (!this.socket) return; // a listener closed us
      }
    });
  }

  /** Stops watching and closes the socket. Idempotent. */
  close(): void {
    if (!this.socket) return;
    this.socket.close();
    this.socket = undefined;
    this.emit('close');
  }

  get closed(): boolean {
    return this.socket === undefined;
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<LinkEvent> {
    const queue: LinkEvent[] = [];
    let failure: NetlinkError | undefined;
    let wake: (() => void) | undefined;
    const onLink = (e: LinkEvent): void => {
      queue.push(e);
      wake?.();
    };
    const onFail = (err: NetlinkError): void => {
      failure = err;
      wake?.();
    };
    const onClose = (): void => wake?.();
    this.on('link', onLink).on('overrun', onFail).on('error', onFail).on('close', onClose);
    try {
      for (;;) {
        while (queue.length) yield queue.shift() as LinkEvent;
        if (failure) throw failure;
        if (this.closed) return;
        await new Promise<void>((resolve) => (wake = resolve));
        wake = undefined;
      }
    } finally {
      this.off('link', onLink).off('overrun', onFail).off('error', onFail).off('close', onClose);
    }
  }
}
