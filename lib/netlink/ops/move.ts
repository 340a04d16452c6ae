/**
 * Moving a link into another namespace and configuring it there, in one RTM_SETLINK; and undoing a move that
 * the kernel carried out before refusing a later attribute.
 *
 * What the kernel (do_setlink, checked by test/netlink/attach.test.ts) does with such a request, in order:
 * validate every attribute → move (keeping the ifindex unless IFLA_NEW_IFINDEX; the link arrives down; the
 * requested name is used on arrival only if the current one is taken there) → MAC → MTU → rename → flags
 * (up is attempted, then promisc is applied even if up failed). It stops at the first failure and keeps
 * what it did before it: a refused MAC leaves the link moved.
 */
import {
  IFLA_ADDRESS,
  IFLA_IFNAME,
  IFLA_MTU,
  IFLA_NET_NS_FD,
  IFLA_NET_NS_PID,
  IFLA_NEW_IFINDEX,
  NLM_F_ACK,
  NLM_F_REQUEST,
  RTM_SETLINK,
} from '../constants';
import { NetlinkError } from '../errors';
import { describeRef, Link, LinkRef } from '../link';
import { MessageBuilder } from '../message';
import type { NsTarget, Operation } from '../operation';
import { assertBoolean, assertInteger, assertInterfaceName, assertObject, parseUnicastMac } from '../validate';
import { getLinkOp, requireLinkOp } from './read';
import { flagChanges } from './set';

/** Options of {@link Netns.moveLink}: what the link becomes on arrival, all in the one request. */
export interface MoveOptions {
  /** New name in the target (`ip link set DEV netns NS name NEW`). */
  name?: string;
  /** New ifindex in the target (kernel 5.14+); by default the kernel keeps the index if free there. */
  index?: number;
  /** Unicast MAC to set after the move. */
  mac?: string;
  mtu?: number;
  promisc?: boolean;
  /** Bring the link up in the target (a moved link arrives down). */
  up?: boolean;
}

export function validateMoveOptions(opts: MoveOptions): void {
  assertObject(opts, 'move options');
  if (opts.name !== undefined) assertInterfaceName(opts.name, 'name');
  if (opts.index !== undefined) assertInteger(opts.index, 'index', 1, 0x7fffffff);
  if (opts.mac !== undefined) parseUnicastMac(opts.mac, 'mac');
  if (opts.mtu !== undefined) assertInteger(opts.mtu, 'mtu', 68, 65535);
  assertBoolean(opts.promisc, 'promisc');
  assertBoolean(opts.up, 'up');
}

/** Whether the kernel could fail after it moved the link (everything but the move and a new ifindex). */
export function canFailAfterMove(opts: MoveOptions): boolean {
  return opts.name !== undefined || opts.mac !== undefined || opts.mtu !== undefined || opts.promisc !== undefined || opts.up !== undefined;
}

/** The one RTM_SETLINK. A rename needs the link by ifindex (IFLA_IFNAME then carries the new name). */
export function moveLinkRequest(ref: LinkRef, target: NsTarget, opts: MoveOptions): Buffer {
  const { flags, change } = flagChanges(opts);
  const m = new MessageBuilder(RTM_SETLINK, NLM_F_REQUEST | NLM_F_ACK).ifinfo(typeof ref === 'number' ? ref : 0, flags, change);
  if (typeof ref === 'string') {
    if (opts.name !== undefined) throw new Error('internal: rename on arrival requires an ifindex');
    m.string(IFLA_IFNAME, ref);
  }
  if (target.pid !== undefined) m.u32(IFLA_NET_NS_PID, target.pid);
  else m.u32(IFLA_NET_NS_FD, target.fd ?? -1);
  if (opts.name !== undefined) m.string(IFLA_IFNAME, opts.name);
  if (opts.index !== undefined) m.s32(IFLA_NEW_IFINDEX, opts.index);
  if (opts.mac !== undefined) m.attr(IFLA_ADDRESS, parseUnicastMac(opts.mac));
  if (opts.mtu !== undefined) m.u32(IFLA_MTU, opts.mtu);
  return m.finish();
}

/**
 * Moves and configures; on failure the link is where it was, as it was (see undoMoveOp). `ref` may be a fresh
 * `Link` record of the link (then no lookup is made) or a name/ifindex (looked up first when the request can
 * fail half-way, to know what to restore).
 */
export function* moveLinkOp(ref: LinkRef | Link, target: NsTarget, opts: MoveOptions, sourceNsFd: number): Operation<void> {
  const record = typeof ref === 'object' ? ref : undefined;
  const before = record ?? (canFailAfterMove(opts) ? yield* requireLinkOp(ref as LinkRef, 'move link') : undefined);
  const address: LinkRef = before ? before.index : (ref as LinkRef);
  const link = before ? before.name : describeRef(ref as LinkRef);
  try {
    yield { request: moveLinkRequest(address, target, opts), operation: 'move link', link };
  } catch (err) {
    if (before && err instanceof NetlinkError) yield* undoMoveOp(before, target, opts, sourceNsFd, err);
    throw err;
  }
}

/** Is `candidate` (read in the target) our link, as the move and the applied options can have changed it? */
function isMovedLink(candidate: Link | null, before: Link, opts: MoveOptions): candidate is Link {
  if (!candidate) return false;
  const names = [before.name, opts.name];
  const macs = [before.mac, opts.mac?.toLowerCase().replace(/-/g, ':')];
  return (
    candidate.kind === before.kind &&
    candidate.parentIndex === before.parentIndex &&
    names.includes(candidate.name) &&
    macs.includes(candidate.mac)
  );
}

/** The RTM_SETLINK, sent in the target, that brings the link back and restores what the move request changed. */
export function undoMoveRequest(found: Link, before: Link, opts: MoveOptions, sourceNsFd: number): Buffer {
  const { flags, change } = flagChanges({
    up: before.flags.up ? true : undefined,
    promisc: opts.promisc !== undefined && found.flags.promisc !== before.flags.promisc ? before.flags.promisc : undefined,
  });
  const m = new MessageBuilder(RTM_SETLINK, NLM_F_REQUEST | NLM_F_ACK).ifinfo(found.index, flags, change);
  m.u32(IFLA_NET_NS_FD, sourceNsFd);
  if (found.index !== before.index) m.s32(IFLA_NEW_IFINDEX, before.index);
  if (found.name !== before.name) m.string(IFLA_IFNAME, before.name);
  if (found.mac !== before.mac && before.mac) m.attr(IFLA_ADDRESS, parseUnicastMac(before.mac));
  if (found.mtu !== before.mtu) m.u32(IFLA_MTU, before.mtu);
  return m.finish();
}

/**
 * After a refused move request: if the link is still in the source, the kernel refused before moving and
 * nothing changed. Otherwise the link is found in the target (by the ifindex it should have, then by its old and
 * new names, checked to be the same device) and sent back with its name, ifindex, MAC, MTU, promisc and up state
 * restored, in one request made through a socket in the target (asynchronously on the async path).
 */
function* undoMoveOp(before: Link, target: NsTarget, opts: MoveOptions, sourceNsFd: number, cause: NetlinkError): Operation<void> {
  const here = yield* getLinkOp(before.index);
  if (here && here.name === before.name && here.kind === before.kind) return;
  let found: Link | null = null;
  for (const ref of [opts.index ?? before.index, before.name, opts.name]) {
    if (ref === undefined) continue;
    const candidate = yield* getLinkOp(ref, target);
    if (isMovedLink(candidate, before, opts)) {
      found = candidate;
      break;
    }
  }
  if (!found) throw leftBehind(cause, 'the link is in neither namespace under a name it could have');
  try {
    yield { request: undoMoveRequest(found, before, opts, sourceNsFd), operation: 'undo move link', link: before.name, in: target };
  } catch (err) {
    throw leftBehind(
      cause,
      `undoing the move failed (${err instanceof Error ? err.message : String(err)}); it may be in the target namespace as ${found.name}`,
    );
  }
}

function leftBehind(cause: NetlinkError, why: string): NetlinkError {
  return new NetlinkError(`${cause.message}; ${why}`, cause.errno, cause.code, cause.operation, cause.link, cause.extack);
}
