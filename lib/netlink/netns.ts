/**
 * Network namespace handles and every link operation. A handle owns netlink sockets created inside its
 * namespace; operating through it never moves any Node thread into another namespace.
 *
 * Each operation is written once, as a generator of netlink requests, and driven either synchronously
 * (`...Sync`, for short-lived CLIs such as the CNI plugin) or asynchronously (Promise, for daemons).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import {
  AF_UNSPEC,
  IFF_PROMISC,
  IFF_UP,
  IFLA_ADDRESS,
  IFLA_EXT_MASK,
  IFLA_IFALIAS,
  IFLA_IFNAME,
  IFLA_INFO_DATA,
  IFLA_INFO_KIND,
  IFLA_LINK,
  IFLA_LINKINFO,
  IFLA_MACVLAN_FLAGS,
  IFLA_MACVLAN_MACADDR,
  IFLA_MACVLAN_MACADDR_DATA,
  IFLA_MACVLAN_MACADDR_MODE,
  IFLA_MACVLAN_MODE,
  IFLA_MTU,
  IFLA_NET_NS_FD,
  IFLA_NET_NS_PID,
  IFLA_NEW_IFINDEX,
  IFLA_TXQLEN,
  MACVLAN_FLAG_NOPROMISC,
  MACVLAN_MACADDR_SET,
  MACVLAN_MODES,
  NLM_F_ACK,
  NLM_F_CREATE,
  NLM_F_DUMP,
  NLM_F_ECHO,
  NLM_F_EXCL,
  NLM_F_REQUEST,
  RTEXT_FILTER_SKIP_STATS,
  RTM_DELLINK,
  RTM_GETLINK,
  RTM_NEWLINK,
  RTM_SETLINK,
} from './constants';
import { NetlinkError } from './errors';
import { decodeLink, describeRef, Link, LinkRef, MACVTAP_MODES, MacvtapMode } from './link';
import { MessageBuilder } from './message';
import { native, NativeNetlinkSocket } from './native';
import { assertInteger, assertInterfaceName, describe, parseMac, parseUnicastMac } from './validate';
import { SerialQueue } from '../util/serial';
import { LinkWatcher } from './watcher';

/** Where named namespaces live, as in iproute2. */
export const NETNS_RUN_DIR = '/var/run/netns';

/** Options of {@link Netns.createMacvtap}. */
export interface MacvtapOptions {
  /** Name of the new link (1-15 bytes, no `/`, `:` or whitespace). */
  name: string;
  /** The lower device, by name or ifindex, in this namespace. */
  lower: LinkRef;
  /** Default `bridge`. */
  mode?: MacvtapMode;
  /** Mode `source` only: the source MACs allowed to reach this macvtap. */
  sourceMacs?: string[];
  /** Unicast MAC; default: random (kernel). */
  mac?: string;
  /** Default: the lower device's MTU (kernel). */
  mtu?: number;
  /** Explicit ifindex (fails with EEXIST if taken in this namespace). Default: kernel's choice. */
  index?: number;
  /** Default: the lower device's txqueuelen (links created without one have been seen to drop traffic). */
  txqueuelen?: number;
  /** Mode `passthru` only: do not put the lower device in promiscuous mode. */
  nopromisc?: boolean;
  /** Bring the link up as it is created. Default false. */
  up?: boolean;
}

/**
 * Changes for {@link Netns.setLink}; all are applied in one RTM_SETLINK (a rename with `up: false`: two).
 * The kernel applies them in its own order (MAC, MTU, name, alias, flags) and stops at the first failure, so a
 * failed call may have applied the changes before the failing one; re-read the link.
 */
export interface LinkChanges {
  mac?: string;
  mtu?: number;
  promisc?: boolean;
  up?: boolean;
  /**
   * Rename. Kernels before 6.2 refuse to rename an up link (EBUSY); with `up: false` in the same call the link
   * is set down first (one extra request), which works everywhere.
   */
  name?: string;
  alias?: string;
}

/** Where {@link Netns.moveLink} sends a link. */
export type NetnsTarget = Netns | { fd: number } | { path: string } | { pid: number };

/** Options of {@link Netns.moveLink}. */
export interface MoveOptions {
  /**
   * New name on arrival (one request: no window with a clashing name). If the name is taken in the target the
   * move fails with EEXIST and the link is back where it was (the kernel moves before it renames; the library
   * undoes the move).
   */
  name?: string;
  /** New ifindex on arrival (kernel 5.14+); by default the kernel keeps the index if free there. */
  index?: number;
}

/** A request and how to read its reply. Operations yield these. */
interface Step {
  request: Buffer;
  operation: string;
  link: string;
}
type Operation<T> = Generator<Step, T, Buffer[]>;

const DUMP_RETRIES = 5;
const ECANCELED = 125;
const EINVAL = 22;
/** How long a synchronous request waits for the kernel's reply before failing with ETIMEDOUT. */
export const SYNC_REPLY_TIMEOUT_MS = 30000;

function isMissing(err: unknown): boolean {
  return err instanceof NetlinkError && (err.code === 'ENODEV' || err.code === 'ENOENT');
}

function getLinkRequest(ref: LinkRef): Buffer {
  const m = new MessageBuilder(RTM_GETLINK, NLM_F_REQUEST | NLM_F_ACK).ifinfo(typeof ref === 'number' ? ref : 0);
  if (typeof ref === 'string') m.string(IFLA_IFNAME, ref);
  return m.u32(IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS).finish();
}

function* getLinkOp(ref: LinkRef): Operation<Link | null> {
  try {
    const messages = yield { request: getLinkRequest(ref), operation: 'get link', link: describeRef(ref) };
    return messages.length ? decodeLink(messages[0]) : null;
  } catch (err) {
    if (isMissing(err)) return null;
    throw err;
  }
}

function* requireLinkOp(ref: LinkRef, operation: string): Operation<Link> {
  const messages = yield { request: getLinkRequest(ref), operation, link: describeRef(ref) };
  return decodeLink(messages[0]);
}

function* listLinksOp(): Operation<Link[]> {
  const request = new MessageBuilder(RTM_GETLINK, NLM_F_REQUEST | NLM_F_DUMP)
    .ifinfo(0)
    .u32(IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS)
    .finish();
  for (let attempt = 1; ; attempt++) {
    try {
      const messages = yield { request, operation: 'list links', link: '' };
      return messages.map(decodeLink);
    } catch (err) {
      // NLM_F_DUMP_INTR: links changed during the dump; the kernel asks us to dump again.
      if (!(err instanceof NetlinkError && err.code === 'EINTR') || attempt >= DUMP_RETRIES) throw err;
    }
  }
}

function validateCreate(opts: MacvtapOptions): void {
  if (typeof opts !== 'object' || opts === null) throw new TypeError(`macvtap options must be an object, got ${describe(opts)}`);
  assertInterfaceName(opts.name, 'name');
  validateRef(opts.lower, 'lower');
  const mode = opts.mode ?? 'bridge';
  if (!MACVTAP_MODES.includes(mode)) {
    throw new RangeError(`mode must be one of ${MACVTAP_MODES.join(', ')}, got ${describe(opts.mode)}`);
  }
  if (opts.sourceMacs !== undefined) {
    if (mode !== 'source') throw new RangeError(`sourceMacs is only valid with mode "source", not "${mode}"`);
    if (!Array.isArray(opts.sourceMacs)) throw new TypeError(`sourceMacs must be an array, got ${describe(opts.sourceMacs)}`);
    opts.sourceMacs.forEach((mac, i) => parseMac(mac, `sourceMacs[${i}]`));
  }
  if (opts.nopromisc !== undefined && typeof opts.nopromisc !== 'boolean')
    throw new TypeError(`nopromisc must be a boolean, got ${describe(opts.nopromisc)}`);
  if (opts.nopromisc && mode !== 'passthru') throw new RangeError(`nopromisc is only valid with mode "passthru", not "${mode}"`);
  if (opts.mac !== undefined) parseUnicastMac(opts.mac, 'mac');
  if (opts.mtu !== undefined) assertInteger(opts.mtu, 'mtu', 68, 65535);
  if (opts.index !== undefined) assertInteger(opts.index, 'index', 1, 0x7fffffff);
  if (opts.txqueuelen !== undefined) assertInteger(opts.txqueuelen, 'txqueuelen', 0, 0xffffffff);
  if (opts.up !== undefined && typeof opts.up !== 'boolean') throw new TypeError(`up must be a boolean, got ${describe(opts.up)}`);
}

function validateRef(ref: unknown, what: string): asserts ref is LinkRef {
  if (typeof ref === 'number') assertInteger(ref, `${what} ifindex`, 1, 0x7fffffff);
  else assertInterfaceName(ref, what);
}

function* createMacvtapOp(opts: MacvtapOptions): Operation<Link> {
  const mode = opts.mode ?? 'bridge';
  const lower = yield* requireLinkOp(opts.lower, 'find lower device');
  const flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL | NLM_F_ECHO;
  const m = new MessageBuilder(RTM_NEWLINK, flags).ifinfo(opts.index ?? 0, opts.up ? IFF_UP : 0, opts.up ? IFF_UP : 0);
  m.string(IFLA_IFNAME, opts.name).u32(IFLA_LINK, lower.index);
  m.u32(IFLA_TXQLEN, opts.txqueuelen ?? lower.txqueuelen);
  if (opts.mac !== undefined) m.attr(IFLA_ADDRESS, parseUnicastMac(opts.mac));
  if (opts.mtu !== undefined) m.u32(IFLA_MTU, opts.mtu);
  m.begin(IFLA_LINKINFO).string(IFLA_INFO_KIND, 'macvtap').begin(IFLA_INFO_DATA);
  m.u32(IFLA_MACVLAN_MODE, MACVLAN_MODES[mode]);
  if (opts.nopromisc) m.u16(IFLA_MACVLAN_FLAGS, MACVLAN_FLAG_NOPROMISC);
  if (mode === 'source' && opts.sourceMacs?.length) {
    m.u32(IFLA_MACVLAN_MACADDR_MODE, MACVLAN_MACADDR_SET).begin(IFLA_MACVLAN_MACADDR_DATA);
    for (const mac of opts.sourceMacs) m.attr(IFLA_MACVLAN_MACADDR, parseMac(mac));
    m.end();
  }
  m.end().end();
  const echoed = yield { request: m.finish(), operation: 'create macvtap', link: opts.name };
  // Kernels since 6.3 echo the new link (NLM_F_ECHO); older ones need a lookup.
  const mine = echoed.map(decodeLink).find((l) => l.name === opts.name);
  return mine ?? (yield* requireLinkOp(opts.name, 'get created macvtap'));
}

function validateChanges(changes: LinkChanges): void {
  if (typeof changes !== 'object' || changes === null) throw new TypeError(`link changes must be an object, got ${describe(changes)}`);
  if (changes.mac !== undefined) parseUnicastMac(changes.mac, 'mac');
  if (changes.mtu !== undefined) assertInteger(changes.mtu, 'mtu', 68, 65535);
  for (const key of ['promisc', 'up'] as const) {
    if (changes[key] !== undefined && typeof changes[key] !== 'boolean')
      throw new TypeError(`${key} must be a boolean, got ${describe(changes[key])}`);
  }
  if (changes.name !== undefined) assertInterfaceName(changes.name, 'name');
  if (changes.alias !== undefined) {
    if (typeof changes.alias !== 'string') throw new TypeError(`alias must be a string, got ${describe(changes.alias)}`);
    if (Buffer.byteLength(changes.alias) > 255) throw new RangeError('alias must be at most 255 bytes');
    if (changes.alias.includes('\0')) throw new RangeError('alias must not contain a NUL byte');
  }
}

function setLinkRequest(ref: LinkRef, changes: LinkChanges): Buffer {
  let flags = 0;
  let change = 0;
  if (changes.up !== undefined) {
    change |= IFF_UP;
    if (changes.up) flags |= IFF_UP;
  }
  if (changes.promisc !== undefined) {
    change |= IFF_PROMISC;
    if (changes.promisc) flags |= IFF_PROMISC;
  }
  const m = new MessageBuilder(RTM_SETLINK, NLM_F_REQUEST | NLM_F_ACK).ifinfo(typeof ref === 'number' ? ref : 0, flags, change);
  if (typeof ref === 'string') m.string(IFLA_IFNAME, ref);
  if (changes.mac !== undefined) m.attr(IFLA_ADDRESS, parseUnicastMac(changes.mac));
  if (changes.mtu !== undefined) m.u32(IFLA_MTU, changes.mtu);
  if (changes.alias !== undefined) m.string(IFLA_IFALIAS, changes.alias);
  if (changes.name !== undefined) {
    // A rename needs the link by index: IFLA_IFNAME then carries the new name.
    if (typeof ref === 'string') throw new Error('internal: rename requires an ifindex');
    m.string(IFLA_IFNAME, changes.name);
  }
  return m.finish();
}

function* setLinkOp(ref: LinkRef, changes: LinkChanges): Operation<void> {
  let target = ref;
  if (changes.name !== undefined && typeof ref === 'string') target = (yield* requireLinkOp(ref, 'set link')).index;
  if (changes.name !== undefined && changes.up === false) {
    // The kernel renames before it changes flags, and kernels before 6.2 refuse to rename an up link (EBUSY):
    // a rename that also asks for "down" goes down first.
    yield { request: setLinkRequest(target, { up: false }), operation: 'set link', link: describeRef(ref) };
  }
  yield { request: setLinkRequest(target, changes), operation: 'set link', link: describeRef(ref) };
}

function validateMoveOptions(opts: MoveOptions): void {
  if (typeof opts !== 'object' || opts === null) throw new TypeError(`move options must be an object, got ${describe(opts)}`);
  if (opts.name !== undefined) assertInterfaceName(opts.name, 'name');
  if (opts.index !== undefined) assertInteger(opts.index, 'index', 1, 0x7fffffff);
}

/** Where a move sends the link: a namespace fd or a pid (IFLA_NET_NS_FD / IFLA_NET_NS_PID). */
interface MoveTarget {
  fd?: number;
  pid?: number;
}

function* moveLinkOp(ref: LinkRef, target: MoveTarget, opts: MoveOptions, sourceNsFd: number): Operation<void> {
  // A rename on arrival needs the link by ifindex (IFLA_IFNAME then names the new name), and the link's
  // state in case the move has to be undone.
  const before = opts.name !== undefined ? yield* requireLinkOp(ref, 'move link') : undefined;
  const index = before ? before.index : typeof ref === 'number' ? ref : 0;
  const m = new MessageBuilder(RTM_SETLINK, NLM_F_REQUEST | NLM_F_ACK).ifinfo(index);
  if (index === 0) m.string(IFLA_IFNAME, ref as string);
  if (target.pid !== undefined) m.u32(IFLA_NET_NS_PID, target.pid);
  else m.u32(IFLA_NET_NS_FD, target.fd as number);
  if (opts.name !== undefined) m.string(IFLA_IFNAME, opts.name);
  if (opts.index !== undefined) m.s32(IFLA_NEW_IFINDEX, opts.index);
  try {
    yield { request: m.finish(), operation: 'move link', link: describeRef(ref) };
  } catch (err) {
    if (before && err instanceof NetlinkError) yield* undoMoveOp(before, target, sourceNsFd, err);
    throw err;
  }
}

/**
 * The kernel moves a link first and renames it in the target afterwards; when the new name is taken there it
 * fails with EEXIST although the link has already left. This brings such a link back (under its old name,
 * which it still has) and restores its up state, so that a failed move changes nothing.
 */
function* undoMoveOp(before: Link, target: MoveTarget, sourceNsFd: number, cause: NetlinkError): Operation<void> {
  const stillHere = yield* getLinkOp(before.index);
  if (stillHere && stillHere.name === before.name) return; // the kernel refused before moving anything
  let failure: unknown;
  try {
    const addon = native();
    const targetFd = target.fd ?? addon.nsOpen(`/proc/${target.pid}/ns/net`);
    try {
      const sock = new addon.NetlinkSocket(targetFd, 0);
      try {
        const [moved] = sock.requestSync(getLinkRequest(before.name), 'undo move link', before.name, SYNC_REPLY_TIMEOUT_MS).map(decodeLink);
        const back = new MessageBuilder(RTM_SETLINK, NLM_F_REQUEST | NLM_F_ACK).ifinfo(moved.index).u32(IFLA_NET_NS_FD, sourceNsFd);
        if (moved.index !== before.index) back.s32(IFLA_NEW_IFINDEX, before.index);
        sock.requestSync(back.finish(), 'undo move link', before.name, SYNC_REPLY_TIMEOUT_MS);
      } finally {
        sock.close();
      }
    } finally {
      if (target.fd === undefined) addon.closeFd(targetFd);
    }
    if (before.flags.up) yield { request: setLinkRequest(before.index, { up: true }), operation: 'undo move link', link: before.name };
  } catch (err) {
    failure = err;
  }
  if (failure !== undefined) {
    const why = failure instanceof Error ? failure.message : String(failure);
    throw new NetlinkError(
      `${cause.message}; the link was left in the target namespace (${why})`,
      cause.errno,
      cause.code,
      cause.operation,
      cause.link,
      cause.extack,
    );
  }
}

function* deleteLinkOp(ref: LinkRef): Operation<void> {
  const m = new MessageBuilder(RTM_DELLINK, NLM_F_REQUEST | NLM_F_ACK).ifinfo(typeof ref === 'number' ? ref : 0);
  if (typeof ref === 'string') m.string(IFLA_IFNAME, ref);
  yield { request: m.finish(), operation: 'delete link', link: describeRef(ref) };
}

/** A macvtap's character device. */
export interface TapDevice {
  /** ifindex of the macvtap, which names the node: `/dev/tap<ifindex>`. */
  ifindex: number;
  major: number;
  minor: number;
  /** `/dev/tap<ifindex>`. */
  path: string;
}

function validateNsName(name: unknown): asserts name is string {
  if (
    typeof name !== 'string' ||
    name.length === 0 ||
    name.length > 255 ||
    name.includes('/') ||
    name.includes('\0') ||
    name === '.' ||
    name === '..'
  ) {
    throw new TypeError(`namespace name must be a non-empty file name without '/' or NUL, got ${describe(name)}`);
  }
}

/**
 * A handle on one network namespace. Close it when done: it holds the namespace fd and up to two sockets.
 */
export class Netns {
  /** The namespace file this handle was opened from (`/proc/self/ns/net` for the current one). */
  readonly path: string;
  private nsFd: number;
  private readonly isCurrent: boolean;
  private syncSocket: NativeNetlinkSocket | undefined;
  private asyncSocket: NativeNetlinkSocket | undefined;
  /** A detached sysfs mount of this namespace (fd), made on the first tapDevice() of a non-current handle. */
  private sysfsFd: number | undefined;
  /** Set when the kernel has no fsopen/fsmount (or refuses it): fall back to one mounting task per read. */
  private sysfsMountUnavailable = false;
  /** One request in flight per socket. */
  private readonly queue = new SerialQueue();
  private closed = false;

  private constructor(nsPath: string, fd: number, isCurrent: boolean) {
    this.path = nsPath;
    this.nsFd = fd;
    this.isCurrent = isCurrent;
  }

  /** The namespace this process runs in. */
  static current(): Netns {
    const addon = native();
    return new Netns('/proc/self/ns/net', addon.nsOpen('/proc/self/ns/net'), true);
  }

  /**
   * Opens a network namespace by path (`/var/run/netns/NAME`, `/proc/PID/ns/net`). Fails with a NetlinkError
   * (code EINVAL) if the file is not a network namespace, judged by file system magic and NS_GET_NSTYPE.
   */
  static open(nsPath: string): Netns {
    if (typeof nsPath !== 'string' || nsPath.length === 0)
      throw new TypeError(`namespace path must be a non-empty string, got ${describe(nsPath)}`);
    if (nsPath.includes('\0')) {
      // The C path would end at the NUL and name another file.
      throw new NetlinkError(
        `open network namespace ${JSON.stringify(nsPath)}: path contains a NUL byte`,
        EINVAL,
        'EINVAL',
        'open network namespace',
        nsPath,
      );
    }
    const addon = native();
    const fd = addon.nsOpen(nsPath);
    let current = false;
    try {
      const a = fs.fstatSync(fd);
      const b = fs.statSync('/proc/self/ns/net');
      current = a.dev === b.dev && a.ino === b.ino;
    } catch {
      current = false;
    }
    return new Netns(nsPath, fd, current);
  }

  /** The namespace of process `pid`. Equivalent to opening `/proc/PID/ns/net`. */
  static fromPid(pid: number): Netns {
    assertInteger(pid, 'pid', 1, 0x7fffffff);
    return Netns.open(`/proc/${pid}/ns/net`);
  }

  /** Creates a named namespace and opens it. Equivalent to: ip netns add NAME */
  static create(name: string, dir = NETNS_RUN_DIR): Netns {
    validateNsName(name);
    native().nsCreate(dir, name);
    return Netns.open(path.join(dir, name));
  }

  /** Removes a named namespace (its links go when its last user leaves). Equivalent to: ip netns del NAME */
  static remove(name: string, dir = NETNS_RUN_DIR): void {
    validateNsName(name);
    native().nsRemove(dir, name);
  }

  /** The namespace fd (valid until close()); usable as a move target. */
  get fd(): number {
    this.assertOpen();
    return this.nsFd;
  }

  /**
   * Closes the namespace fd and sockets. Pending async operations fail with ECANCELED. Idempotent.
   * The async socket's fd is released on the next turn of the event loop (after its poll handle closes).
   */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.syncSocket?.close();
    this.asyncSocket?.close();
    this.syncSocket = this.asyncSocket = undefined;
    if (this.sysfsFd !== undefined) native().closeFd(this.sysfsFd);
    this.sysfsFd = undefined;
    native().closeFd(this.nsFd);
    this.nsFd = -1;
  }

  private assertOpen(): void {
    if (this.closed) throw new Error(`namespace handle ${this.path} is closed`);
  }

  private socket(kind: 'sync' | 'async'): NativeNetlinkSocket {
    this.assertOpen();
    const existing = kind === 'sync' ? this.syncSocket : this.asyncSocket;
    if (existing) return existing;
    const addon = native();
    const created = new addon.NetlinkSocket(this.isCurrent ? -1 : this.nsFd, 0);
    if (kind === 'sync') this.syncSocket = created;
    else this.asyncSocket = created;
    return created;
  }

  private runSync<T>(op: Operation<T>): T {
    const sock = this.socket('sync');
    let step = op.next();
    while (!step.done) {
      let messages: Buffer[];
      try {
        messages = sock.requestSync(step.value.request, step.value.operation, step.value.link, SYNC_REPLY_TIMEOUT_MS);
      } catch (err) {
        step = op.throw(err);
        continue;
      }
      step = op.next(messages);
    }
    return step.value;
  }

  private runAsync<T>(op: () => Operation<T>): Promise<T> {
    this.assertOpen();
    const run = async (): Promise<T> => {
      if (this.closed) {
        throw new NetlinkError(
          `netlink request in ${this.path}: handle closed before the request was sent`,
          ECANCELED,
          'ECANCELED',
          'netlink request',
          this.path,
        );
      }
      const sock = this.socket('async');
      const gen = op();
      let step = gen.next();
      while (!step.done) {
        const { request, operation, link } = step.value;
        let messages: Buffer[];
        try {
          messages = await new Promise<Buffer[]>((resolve, reject) => {
            sock.request(request, operation, link, (err, reply) => (err ? reject(err) : resolve(reply as Buffer[])));
          });
        } catch (err) {
          step = gen.throw(err);
          continue;
        }
        step = gen.next(messages);
      }
      return step.value;
    };
    return this.queue.run(run);
  }

  /** A link by name or ifindex, or `null` if there is none. Equivalent to: ip -d link show DEV */
  getLinkSync(ref: LinkRef): Link | null {
    validateRef(ref, 'link');
    return this.runSync(getLinkOp(ref));
  }

  /** Async twin of {@link getLinkSync}. */
  async getLink(ref: LinkRef): Promise<Link | null> {
    validateRef(ref, 'link');
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
    validateRef(ref, 'link');
    validateChanges(changes);
    this.runSync(setLinkOp(ref, changes));
  }

  /** Async twin of {@link setLinkSync}. */
  async setLink(ref: LinkRef, changes: LinkChanges): Promise<void> {
    validateRef(ref, 'link');
    validateChanges(changes);
    return this.runAsync(() => setLinkOp(ref, changes));
  }

  /**
   * Moves a link into another namespace, optionally renaming it on arrival. The link arrives down. On failure
   * the link is where it was (see {@link MoveOptions.name}).
   * Equivalent to: ip link set DEV netns NS [name NEW]   (`name` on arrival needs no second step here)
   */
  moveLinkSync(ref: LinkRef, target: NetnsTarget, opts: MoveOptions = {}): void {
    validateRef(ref, 'link');
    validateMoveOptions(opts);
    this.withTarget(target, (t) => this.runSync(moveLinkOp(ref, t, opts, this.nsFd)));
  }

  /** Async twin of {@link moveLinkSync}. */
  async moveLink(ref: LinkRef, target: NetnsTarget, opts: MoveOptions = {}): Promise<void> {
    validateRef(ref, 'link');
    validateMoveOptions(opts);
    const opened = this.openTarget(target);
    try {
      await this.runAsync(() => moveLinkOp(ref, opened.target, opts, this.nsFd));
    } finally {
      opened.release();
    }
  }

  private withTarget<T>(target: NetnsTarget, fn: (t: MoveTarget) => T): T {
    const opened = this.openTarget(target);
    try {
      return fn(opened.target);
    } finally {
      opened.release();
    }
  }

  private openTarget(target: NetnsTarget): { target: MoveTarget; release: () => void } {
    if (target instanceof Netns) return { target: { fd: target.fd }, release: () => undefined };
    if (typeof target === 'object' && target !== null) {
      if ('pid' in target) {
        assertInteger(target.pid, 'target pid', 1, 0x7fffffff);
        return { target: { pid: target.pid }, release: () => undefined };
      }
      if ('fd' in target) {
        assertInteger(target.fd, 'target fd', 0, 0x7fffffff);
        return { target: { fd: target.fd }, release: () => undefined };
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
    validateRef(ref, 'link');
    this.runSync(deleteLinkOp(ref));
  }

  /** Async twin of {@link deleteLinkSync}. */
  async deleteLink(ref: LinkRef): Promise<void> {
    validateRef(ref, 'link');
    return this.runAsync(() => deleteLinkOp(ref));
  }

  /**
   * The character device of a macvtap in this namespace, read from sysfs as this namespace sees it.
   * Given a `Link` this namespace has just reported (from create, get or list), no lookup is made: only sysfs is
   * read, at the path its name and ifindex give (a link renamed since then fails with ENOENT).
   * Equivalent to: cat /sys/class/net/DEV/tap$(cat /sys/class/net/DEV/ifindex)/dev
   */
  tapDeviceSync(ref: LinkRef | Link): TapDevice {
    if (isLinkRecord(ref)) return this.tapDeviceOf(ref);
    validateRef(ref, 'link');
    return this.tapDeviceOf(this.runSync(requireLinkOp(ref, 'find tap device')));
  }

  /** Async twin of {@link tapDeviceSync} (the link lookup is asynchronous, the short sysfs read is not). */
  async tapDevice(ref: LinkRef | Link): Promise<TapDevice> {
    if (isLinkRecord(ref)) return this.tapDeviceOf(ref);
    validateRef(ref, 'link');
    return this.tapDeviceOf(await this.runAsync(() => requireLinkOp(ref, 'find tap device')));
  }

  private tapDeviceOf(link: Link): TapDevice {
    if (link.kind !== 'macvtap') {
      throw new NetlinkError(
        `find tap device ${link.name}: not a macvtap (kind ${link.kind ?? 'none'})`,
        22,
        'EINVAL',
        'find tap device',
        link.name,
      );
    }
    const relative = `class/net/${link.name}/tap${link.index}/dev`;
    const text = this.isCurrent ? readSysfs(`/sys/${relative}`) : this.readOwnSysfs(relative);
    const [major, minor] = text.trim().split(':').map(Number);
    return { ifindex: link.index, major, minor, path: `/dev/tap${link.index}` };
  }

  /**
   * Reads a sysfs file as this namespace sees it. The first call mounts sysfs for the namespace (detached, kept
   * until close()); every later read is one openat() on it. Without the new mount API, one task per read
   * mounts sysfs in a private mount namespace.
   */
  private readOwnSysfs(relative: string): string {
    const addon = native();
    if (this.sysfsFd === undefined && !this.sysfsMountUnavailable) {
      try {
        this.sysfsFd = addon.sysfsMount(this.nsFd);
      } catch (err) {
        if (!(err instanceof NetlinkError) || !['ENOSYS', 'EPERM', 'EINVAL', 'ENODEV'].includes(err.code)) throw err;
        this.sysfsMountUnavailable = true;
      }
    }
    if (this.sysfsFd === undefined) return addon.sysfsRead(this.nsFd, `/sys/${relative}`);
    return addon.readAt(this.sysfsFd, relative);
  }

  /**
   * Watches link events (RTNLGRP_LINK) in this namespace. Events arrive on the main loop.
   * Equivalent to: ip monitor link
   */
  watchLinks(): LinkWatcher {
    this.assertOpen();
    return new LinkWatcher(this.isCurrent ? -1 : this.nsFd, this.path);
  }
}

function isLinkRecord(ref: LinkRef | Link): ref is Link {
  if (typeof ref !== 'object' || ref === null) return false;
  assertInteger(ref.index, 'link.index', 1, 0x7fffffff);
  assertInterfaceName(ref.name, 'link.name');
  return true;
}

function readSysfs(file: string): string {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    throw new NetlinkError(`find tap device ${file}: ${e.message}`, e.errno ? -e.errno : 2, e.code ?? 'ENOENT', 'find tap device', file);
  }
}
