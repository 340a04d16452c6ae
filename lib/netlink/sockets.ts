/**
 * The sockets of one namespace handle: a sync and an async NETLINK_ROUTE socket created inside the namespace
 * on first use (the addon creates them from a short-lived task that entered it), plus short-lived sockets in
 * other namespaces for steps that must run there (undoing a move).
 */
import { native, NativeNetlinkSocket } from './native';
import type { NsTarget, SocketSource } from './operation';

export class HandleSockets implements SocketSource {
  private syncSocket: NativeNetlinkSocket | undefined;
  private asyncSocket: NativeNetlinkSocket | undefined;

  /** `nsFd` is the handle's namespace; for the current namespace sockets are made in place (-1). */
  constructor(
    private readonly nsFd: number,
    private readonly isCurrent: boolean,
  ) {}

  get isCurrentNamespace(): boolean {
    return this.isCurrent;
  }

  own(kind: 'sync' | 'async'): NativeNetlinkSocket {
    const existing = kind === 'sync' ? this.syncSocket : this.asyncSocket;
    if (existing) return existing;
    const created = new (native().NetlinkSocket)(this.isCurrent ? -1 : this.nsFd, 0);
    if (kind === 'sync') this.syncSocket = created;
    else this.asyncSocket = created;
    return created;
  }

  foreign(target: NsTarget): NativeNetlinkSocket {
    const addon = native();
    if (target.pid === undefined) return new addon.NetlinkSocket(target.fd ?? -1, 0);
    const fd = addon.nsOpen(`/proc/${target.pid}/ns/net`);
    try {
      return new addon.NetlinkSocket(fd, 0);
    } finally {
      addon.closeFd(fd);
    }
  }

  /** Closes both sockets; an async request in flight fails with ECANCELED. */
  close(): void {
    this.syncSocket?.close();
    this.asyncSocket?.close();
    this.syncSocket = this.asyncSocket = undefined;
  }
}
