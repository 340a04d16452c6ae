/** Changing a link in place (RTM_SETLINK): MAC, MTU, promisc, up/down, name, alias. */
import {
  IFF_PROMISC,
  IFF_UP,
  IFLA_ADDRESS,
  IFLA_IFALIAS,
  IFLA_IFNAME,
  IFLA_MTU,
  NLM_F_ACK,
  NLM_F_REQUEST,
  RTM_SETLINK,
} from '../constants';
import { describeRef, LinkRef } from '../link';
import { MessageBuilder } from '../message';
import type { Operation } from '../operation';
import { assertBoolean, assertInteger, assertInterfaceName, assertObject, describe, parseUnicastMac } from '../validate';
import { requireLinkOp } from './read';

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

export function validateChanges(changes: LinkChanges): void {
  assertObject(changes, 'link changes');
  if (changes.mac !== undefined) parseUnicastMac(changes.mac, 'mac');
  if (changes.mtu !== undefined) assertInteger(changes.mtu, 'mtu', 68, 65535);
  assertBoolean(changes.promisc, 'promisc');
  assertBoolean(changes.up, 'up');
  if (changes.name !== undefined) assertInterfaceName(changes.name, 'name');
  if (changes.alias !== undefined) {
    if (typeof changes.alias !== 'string') throw new TypeError(`alias must be a string, got ${describe(changes.alias)}`);
    if (Buffer.byteLength(changes.alias) > 255) throw new RangeError('alias must be at most 255 bytes');
    if (changes.alias.includes('\0')) throw new RangeError('alias must not contain a NUL byte');
  }
}

/** ifi_flags / ifi_change for the up and promisc changes (unset ones are left alone). */
export function flagChanges(changes: { up?: boolean; promisc?: boolean }): { flags: number; change: number } {
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
  return { flags, change };
}

export function setLinkRequest(ref: LinkRef, changes: LinkChanges): Buffer {
  const { flags, change } = flagChanges(changes);
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

/** The ack is the whole reply: nothing to decode. */
export function* setLinkOp(ref: LinkRef, changes: LinkChanges): Operation<void> {
  let target = ref;
  if (changes.name !== undefined && typeof ref === 'string') target = (yield* requireLinkOp(ref, 'set link')).index;
  if (changes.name !== undefined && changes.up === false) {
    // The kernel renames before it changes flags, and kernels before 6.2 refuse to rename an up link (EBUSY):
    // a rename that also asks for "down" goes down first.
    yield { request: setLinkRequest(target, { up: false }), operation: 'set link', link: describeRef(ref) };
  }
  yield { request: setLinkRequest(target, changes), operation: 'set link', link: describeRef(ref) };
}
