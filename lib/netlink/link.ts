/** The typed link record and its decoding from RTM_NEWLINK messages. */
import {
  IFF_LOOPBACK,
  IFF_LOWER_UP,
  IFF_PROMISC,
  IFF_UP,
  IFINFOMSG_LEN,
  IFLA_ADDRESS,
  IFLA_IFALIAS,
  IFLA_IFNAME,
  IFLA_INFO_DATA,
  IFLA_INFO_KIND,
  IFLA_LINK,
  IFLA_LINK_NETNSID,
  IFLA_LINKINFO,
  IFLA_MACVLAN_FLAGS,
  IFLA_MACVLAN_MACADDR,
  IFLA_MACVLAN_MACADDR_DATA,
  IFLA_MACVLAN_MODE,
  IFLA_MTU,
  IFLA_OPERSTATE,
  IFLA_TXQLEN,
  MACVLAN_FLAG_NOPROMISC,
  MACVLAN_MODES,
  NLMSG_HDRLEN,
  OPERSTATES,
} from './constants';
import { nested, parseAttributes, readS32, readString, readU16, readU32, readU8 } from './message';
import { formatMac } from './validate';

export type MacvtapMode = keyof typeof MACVLAN_MODES;
export const MACVTAP_MODES = Object.keys(MACVLAN_MODES) as MacvtapMode[];

export type OperState = (typeof OPERSTATES)[number];

/** A link as the kernel reports it. Re-read it rather than trusting an old copy. */
export interface Link {
  /** ifindex, unique within its namespace. */
  index: number;
  name: string;
  /** IFLA_INFO_KIND: `macvtap`, `veth`, `bridge`, ...; undefined for physical NICs and loopback. */
  kind: string | undefined;
  /** Lower-case `aa:bb:cc:dd:ee:ff`; empty string for links without a hardware address. */
  mac: string;
  mtu: number;
  flags: { up: boolean; promisc: boolean; lowerUp: boolean; loopback: boolean };
  /** Raw `ifi_flags`. */
  rawFlags: number;
  operstate: OperState;
  /** IFLA_LINK: the lower device's ifindex (in `parentNetnsId`'s namespace when that is set). */
  parentIndex: number | undefined;
  /** IFLA_LINK_NETNSID: set when the parent lives in another namespace (e.g. a moved macvtap). */
  parentNetnsId: number | undefined;
  txqueuelen: number;
  alias: string | undefined;
  /** For macvtap (and macvlan) links. */
  macvtap?: { mode: MacvtapMode | 'unknown'; nopromisc: boolean; sourceMacs: string[] };
}

/** Decodes one RTM_NEWLINK message (header included). */
export function decodeLink(msg: Buffer): Link {
  const base = NLMSG_HDRLEN;
  const index = msg.readInt32LE(base + 4);
  const rawFlags = msg.readUInt32LE(base + 8);
  const attrs = parseAttributes(msg, base + IFINFOMSG_LEN, msg.readUInt32LE(0));
  const info = nested(attrs.get(IFLA_LINKINFO));
  const kind = readString(info.get(IFLA_INFO_KIND));
  const address = attrs.get(IFLA_ADDRESS);
  const link: Link = {
    index,
    name: readString(attrs.get(IFLA_IFNAME)) ?? '',
    kind,
    mac: address && address.length === 6 ? formatMac(address) : '',
    mtu: readU32(attrs.get(IFLA_MTU)) ?? 0,
    flags: {
      up: (rawFlags & IFF_UP) !== 0,
      promisc: (rawFlags & IFF_PROMISC) !== 0,
      lowerUp: (rawFlags & IFF_LOWER_UP) !== 0,
      loopback: (rawFlags & IFF_LOOPBACK) !== 0,
    },
    rawFlags,
    operstate: OPERSTATES[readU8(attrs.get(IFLA_OPERSTATE)) ?? 0] ?? 'unknown',
    parentIndex: attrs.has(IFLA_LINK) ? readU32(attrs.get(IFLA_LINK)) : undefined,
    parentNetnsId: readS32(attrs.get(IFLA_LINK_NETNSID)),
    txqueuelen: readU32(attrs.get(IFLA_TXQLEN)) ?? 0,
    alias: readString(attrs.get(IFLA_IFALIAS)),
  };
  if (kind === 'macvtap' || kind === 'macvlan') {
    const macAttrs: Buffer[] = [];
    const data = nested(info.get(IFLA_INFO_DATA));
    nested(data.get(IFLA_MACVLAN_MACADDR_DATA), { type: IFLA_MACVLAN_MACADDR, out: macAttrs });
    const modeValue = readU32(data.get(IFLA_MACVLAN_MODE)) ?? 0;
    const mode = MACVTAP_MODES.find((m) => MACVLAN_MODES[m] === modeValue) ?? 'unknown';
    link.macvtap = {
      mode,
      nopromisc: ((readU16(data.get(IFLA_MACVLAN_FLAGS)) ?? 0) & MACVLAN_FLAG_NOPROMISC) !== 0,
      sourceMacs: macAttrs.filter((b) => b.length === 6).map(formatMac),
    };
  }
  return link;
}

/** A link given by name or by ifindex. */
export type LinkRef = string | number;

export function describeRef(ref: LinkRef): string {
  return typeof ref === 'number' ? `ifindex ${ref}` : ref;
}
