/** Creating macvtaps (RTM_NEWLINK with IFLA_LINKINFO kind "macvtap"), and the new link's record. */
import {
  IFF_UP,
  IFLA_ADDRESS,
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
  IFLA_TXQLEN,
  MACVLAN_FLAG_NOPROMISC,
  MACVLAN_MACADDR_SET,
  MACVLAN_MODES,
  NLM_F_ACK,
  NLM_F_CREATE,
  NLM_F_ECHO,
  NLM_F_EXCL,
  NLM_F_REQUEST,
  RTM_NEWLINK,
} from '../constants';
import { decodeLink, Link, LinkRef, MACVTAP_MODES, MacvtapMode } from '../link';
import { MessageBuilder } from '../message';
import type { Operation } from '../operation';
import {
  assertBoolean,
  assertInteger,
  assertInterfaceName,
  assertLinkRef,
  assertObject,
  describe,
  parseMac,
  parseUnicastMac,
} from '../validate';
import { requireLinkOp } from './read';

/** Options of {@link Netns.createMacvtap}. */
export interface MacvtapOptions {
  /** Name of the new link (1-15 bytes, no `/`, `:`, whitespace or NUL). */
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

export function validateCreate(opts: MacvtapOptions): void {
  assertObject(opts, 'macvtap options');
  assertInterfaceName(opts.name, 'name');
  assertLinkRef(opts.lower, 'lower');
  const mode = opts.mode ?? 'bridge';
  if (!MACVTAP_MODES.includes(mode)) {
    throw new RangeError(`mode must be one of ${MACVTAP_MODES.join(', ')}, got ${describe(opts.mode)}`);
  }
  if (opts.sourceMacs !== undefined) {
    if (mode !== 'source') throw new RangeError(`sourceMacs is only valid with mode "source", not "${mode}"`);
    if (!Array.isArray(opts.sourceMacs)) throw new TypeError(`sourceMacs must be an array, got ${describe(opts.sourceMacs)}`);
    opts.sourceMacs.forEach((mac, i) => parseMac(mac, `sourceMacs[${i}]`));
  }
  assertBoolean(opts.nopromisc, 'nopromisc');
  if (opts.nopromisc && mode !== 'passthru') throw new RangeError(`nopromisc is only valid with mode "passthru", not "${mode}"`);
  if (opts.mac !== undefined) parseUnicastMac(opts.mac, 'mac');
  if (opts.mtu !== undefined) assertInteger(opts.mtu, 'mtu', 68, 65535);
  if (opts.index !== undefined) assertInteger(opts.index, 'index', 1, 0x7fffffff);
  if (opts.txqueuelen !== undefined) assertInteger(opts.txqueuelen, 'txqueuelen', 0, 0xffffffff);
  assertBoolean(opts.up, 'up');
}

/** The RTM_NEWLINK request; `lower` is the lower device's record (for its ifindex and txqueuelen). */
export function createMacvtapRequest(opts: MacvtapOptions, lower: Link): Buffer {
  const mode = opts.mode ?? 'bridge';
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
  return m.end().end().finish();
}

/** The new link as the kernel echoes it (NLM_F_ECHO, kernels since 6.3), or null. */
export function decodeCreated(echoed: Buffer[], name: string): Link | null {
  return echoed.map(decodeLink).find((l) => l.name === name) ?? null;
}

export function* createMacvtapOp(opts: MacvtapOptions): Operation<Link> {
  const lower = yield* requireLinkOp(opts.lower, 'find lower device');
  const echoed = yield { request: createMacvtapRequest(opts, lower), operation: 'create macvtap', link: opts.name };
  // Older kernels do not echo: look the link up.
  return decodeCreated(echoed, opts.name) ?? (yield* requireLinkOp(opts.name, 'get created macvtap'));
}
