/**
 * Network namespace handles: the public face of every link operation. A handle owns the namespace fd, its
 * sockets (sockets.ts) and its sysfs view (sysfs.ts); operating through it never moves any Node thread into
 * another namespace. Each operation is a generator in ops/ run by one of the two drivers of operation.ts:
 * `...Sync` (blocking, for short-lived CLIs such as the CNI plugin) or the Promise twin (for daemons).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { SerialQueue } from '../util/serial';
import { NetlinkError } from './errors';
import type { Link, LinkRef } from './link';
import { native } from './native';
import { NsTarget, Operation, runAsync, runSync } from './operation';
import { createMacvtapOp, MacvtapOptions, validateCreate } from './ops/create';
import { deleteLinkOp } from './ops/delete';
import { MoveOptions, moveLinkOp, validateMoveOptions } from './ops/move';
import { getLinkOp, listLinksOp, requireLinkOp } from './ops/read';
import { LinkChanges, setLinkOp, validateChanges } from './ops/set';
import { decodeTapDevice, TAP_OPERATION, TapDevice, tapDeviceFile } from './ops/tap-device';
import { HandleSockets } from './sockets';
import { NamespaceSysfs } from './sysfs';
import { assertInteger, assertLinkRef, assertNsName, describe, isLinkRecord } from './validate';
import { LinkWatcher } from './watcher';

export type { LinkChanges, MacvtapOptions, MoveOptions, TapDevice };

/** Where named namespaces live, as in iproute2. */
export const NETNS_RUN_DIR = '/var/run/netns';

/** Where {@link Netns.moveLink} sends a link. */
export type NetnsTarget = Netns | { fd: number } | { path: string } | { pid: number };

const ECANCELED = 125;
const EINVAL = 22;

/**
 * A handle on one network namespace. Close it when done: it holds the namespace fd, up to two sockets and,
 * after the first tapDevice() of another namespace, one sysfs mount.
 */
export class Netns {
  /** The namespace file this handle was opened from (`/proc/self/ns/net` for the current one). */
  readonly path: string;
  private nsFd: number;
  private readonly sockets: HandleSockets;
  private readonly sysfs: NamespaceSysfs;
  /** One request in flight per socket. */
  private readonly queue = new SerialQueue();
  private closed = false;

  private constructor(nsPath: string, fd: number, isCurrent: boolean) {
    this.path = nsPath;
    this.nsFd = fd;
    this.sockets = new HandleSockets(fd, isCurrent);
    this.sysfs = new NamespaceSysfs(fd, isCurrent);
  }

  /** The namespace this process runs in. */
  static current(): Netns {
    return new Netns('/proc/self/ns/net', native().nsOpen('/proc/self/ns/net'), true);
  }

  /**
   * Opens a network namespace by path (`/var/run/netns/NAME`, `/proc/PID/ns/net`). Never blocks. Fails with a
   * NetlinkError EINVAL naming what the path is when it is not a network namespace (a FIFO, socket, device,
   * directory, ordinary file or another kind of namespace; judged by type, nsfs magic and NS_GET_NSTYPE), or
   * with the open's errno (ENOENT, EACCES...).
   * Equivalent to: ip netns exec NAME ... / nsenter --net=PATH ...
   */
  static open(nsPath: string): Netns {
    if (typeof nsPath !== 'string' || nsPath.length === 0)
      throw new TypeError(`namespace path must be a non-empty string, got ${describe(nsPath)}`);
    if (nsPath.includes('\0')) {
      // The C path would end at the NUL and name another file.
      const what = JSON.stringify(nsPath);
      throw new NetlinkError(
        `open network namespace ${what}: path contains a NUL byte`,
        EINVAL,
        'EINVAL',
        'open network namespace',
        nsPath,
      );
    }
    const fd = native().nsOpen(nsPath);
    let current = false;
    try {
      const a = fs.fstatSync(fd);
      const b = fs.statSync('/proc/self/ns/net');
      current = a.dev === b.dev && a.ino === b.ino;
    } catch {
      // No /proc/self: treat it as another namespace, which is always correct, only slower.
    }
    return new Netns(nsPath, fd, current);
  }

  /** The namespace of process `pid`. Equivalent to: nsenter --net=/proc/PID/ns/net */
  static fromPid(pid: number): Netns {
    assertInteger(pid, 'pid', 1, 0x7fffffff);
    return Netns.open(`/proc/${pid}/ns/net`);
  }

  /** Creates a named namespace and opens it. Equivalent to: ip netns add NAME */
  static create(name: string, dir = NETNS_RUN_DIR): Netns {
    assertNsName(name);
    native().nsCreate(dir, name);
    return Netns.open(path.join(dir, name));
  }

  /** Removes a named namespace (its links go when its last user leaves). Equivalent to: ip netns del NAME */
  static remove(name: string, dir = NETNS_RUN_DIR): void {
    assertNsName(name);
    native().nsRemove(dir, name);
  }

  /** The namespace fd (valid until close()); usable as a move target. */
  get fd(): number {
    this.assertOpen();
    return this.nsFd;
  }

  /**
   * Closes the namespace fd, sockets and sysfs mount. Pending async operations fail with ECANCELED. Idempotent.
   * The async socket's fd is released on the next turn of the event loop (after its poll handle closes).
   */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.sockets.close();
    this.sysfs.close();
    native().closeFd(this.nsFd);
    this.nsFd = -1;
  }

  private assertOpen(): void {
    if (this.closed) throw new Error(`namespace handle ${this.path} is closed`);
  }

  private runSync<T>(op: Operation<T>): T {
    this.assertOpen();
    return runSync(op, this.sockets);
  }

  private runAsync<T>(op: () => Operation<T>): Promise<T> {
    this.assertOpen();
    return this.queue.run(() => {
      if (this.closed) {
        const message = `netlink request in ${this.path}: handle closed before the request was sent`;
        return Promise.reject(new NetlinkError(message, ECANCELED, 'ECANCELED', 'netlink request', this.path));
      }
      return runAsync(op(), this.sockets);
    });
  }

  /** A link by name or ifindex, or `null` if there is none. Equivalent to: ip -d link show DEV */
  getLinkSync(ref: LinkRef): Link | null {
    assertLinkRef(ref, 'link');
    return this.runSync(getLinkOp(ref));
  }

  /** Async twin of {@link getLinkSync}. */
  async getLink(ref: LinkRef): Promise<Link | null> {
    assertLinkRef(ref, 'link');
    return this.runAsync(() => getLinkOp(ref));
  }

  /** Every link in the namespace. Equivalent to: ip -d link show */
  listLinksSync(): Link[] {
    return this.runSync(listLinksOp());
  }

  /** Async twin of {@link listLinksSync}. */
  async listLinks(): Promise<Link[]> {
    return this.runAsync(() => listLinksOp());
  }

  /**
   * Creates a macvtap and returns it.
   * Equivalent to: ip link add link LOWER name NAME [index N] [address MAC] [mtu N] [txqueuelen N]
   *   type macvtap mode MODE [nopromisc] [macaddr set MACS...] && ip link set NAME up
   */
  createMacvtapSync(opts: MacvtapOptions): Link {
    validateCreate(opts);
    return this.runSync(createMacvtapOp(opts));
  }

  /** Async twin of {@link createMacvtapSync}. */
  async createMacvtap(opts: MacvtapOptions): Promise<Link> {
    validateCreate(opts);
    return this.runAsync(() => createMacvtapOp(opts));
  }

  /**
   * Applies MAC, MTU, promisc, up/down, name and alias in one RTM_SETLINK.
   * Equivalent to: ip link set DEV [address MAC] [mtu N] [promisc on|off] [up|down] [name NEW] [alias TEXT]
   */
  setLinkSync(ref: LinkRef, changes: LinkChanges): void {
    assertLinkRef(ref, 'link');
    validateChanges(changes);
    this.runSync(setLinkOp(ref, changes));
  }

  /** Async twin of {@link setLinkSync}. */
  async setLink(ref: LinkRef, changes: LinkChanges): Promise<void> {
    assertLinkRef(ref, 'link');
    validateChanges(changes);
    return this.runAsync(() => setLinkOp(ref, changes));
  }

  /**
   * Moves a link into another namespace and, in the same RTM_SETLINK, gives it its new name, ifindex, MAC, MTU,
   * promisc and up state there (without `up` it arrives down). On failure the link is back where it was, as it
   * was (name, ifindex, MAC, MTU, promisc, up): the kernel stops at the first refused attribute after it has
   * moved the link, and the library then moves it back. `ref` may be a fresh `Link` record of the link, which
   * saves the lookup that a rename or configuration on arrival otherwise needs.
   * Equivalent to: ip link set DEV netns NS && ip -n NS link set DEV name NEW address MAC mtu N promisc on up
   */
  moveLinkSync(ref: LinkRef | Link, target: NetnsTarget, opts: MoveOptions = {}): void {
    if (!isLinkRecord(ref)) assertLinkRef(ref, 'link');
    validateMoveOptions(opts);
    const opened = this.openTarget(target);
    try {
      this.runSync(moveLinkOp(ref, opened.target, opts, this.fd));
    } finally {
      opened.release();
    }
  }

  /** Async twin of {@link moveLinkSync}; undoing a half-done move is asynchronous too. */
  async moveLink(ref: LinkRef | Link, target: NetnsTarget, opts: MoveOptions = {}): Promise<void> {
    if (!isLinkRecord(ref)) assertLinkRef(ref, 'link');
    validateMoveOptions(opts);
    const opened = this.openTarget(target);
    try {
      await this.runAsync(() => moveLinkOp(ref, opened.target, opts, this.nsFd));
    } finally {
      opened.release();
    }
  }

  private openTarget(target: NetnsTarget): { target: NsTarget; release: () => void } {
    const keep = (): void => undefined;
    if (target instanceof Netns) return { target: { fd: target.fd }, release: keep };
    if (typeof target === 'object' && target !== null) {
      if ('pid' in target) {
        assertInteger(target.pid, 'target pid', 1, 0x7fffffff);
        return { target: { pid: target.pid }, release: keep };
      }
      if ('fd' in target) {
        assertInteger(target.fd, 'target fd', 0, 0x7fffffff);
        return { target: { fd: target.fd }, release: keep };
      }
      if ('path' in target) {
        const ns = Netns.open(target.path);
        return { target: { fd: ns.fd }, release: () => ns.close() };
      }
    }
    throw new TypeError(`move target must be a Netns, {fd}, {path} or {pid}, got ${describe(target)}`);
  }

  /** Deletes a link; a missing link fails with code ENODEV. Equivalent to: ip link del DEV */
  deleteLinkSync(ref: LinkRef): void {
    assertLinkRef(ref, 'link');
    this.runSync(deleteLinkOp(ref));
  }

  /** Async twin of {@link deleteLinkSync}. */
  async deleteLink(ref: LinkRef): Promise<void> {
    assertLinkRef(ref, 'link');
    return this.runAsync(() => deleteLinkOp(ref));
  }

  /**
   * The character device of a macvtap in this namespace, read from sysfs as this namespace sees it.
   * Given a `Link` this namespace has just reported (from create, get or list), no lookup is made: only sysfs is
   * read, at the path its name and ifindex give (a link renamed since then fails with ENOENT).
   * Equivalent to: ip netns exec NS cat /sys/class/net/DEV/tap$(cat /sys/class/net/DEV/ifindex)/dev
   */
  tapDeviceSync(ref: LinkRef | Link): TapDevice {
    if (isLinkRecord(ref)) return this.tapDeviceOf(ref);
    assertLinkRef(ref, 'link');
    return this.tapDeviceOf(this.runSync(requireLinkOp(ref, TAP_OPERATION)));
  }

  /** Async twin of {@link tapDeviceSync} (the link lookup is asynchronous, the short sysfs read is not). */
  async tapDevice(ref: LinkRef | Link): Promise<TapDevice> {
    if (isLinkRecord(ref)) return this.tapDeviceOf(ref);
    assertLinkRef(ref, 'link');
    return this.tapDeviceOf(await this.runAsync(() => requireLinkOp(ref, TAP_OPERATION)));
  }

  private tapDeviceOf(link: Link): TapDevice {
    this.assertOpen();
    return decodeTapDevice(link, this.sysfs.read(tapDeviceFile(link), TAP_OPERATION));
  }

  /**
   * Watches link events (RTNLGRP_LINK) in this namespace. Events arrive on the main loop.
   * Equivalent to: ip monitor link
   */
  watchLinks(): LinkWatcher {
    this.assertOpen();
    return new LinkWatcher(this.sockets.isCurrentNamespace ? -1 : this.nsFd, this.path);
  }
}
