/** rtnetlink constants from the kernel's uapi headers (linux/netlink.h, linux/rtnetlink.h, linux/if_link.h). */

export const NLM_F_REQUEST = 0x01;
export const NLM_F_ACK = 0x04;
export const NLM_F_ECHO = 0x08;
export const NLM_F_DUMP = 0x300;
export const NLM_F_EXCL = 0x200;
export const NLM_F_CREATE = 0x400;

export const RTM_NEWLINK = 16;
export const RTM_DELLINK = 17;
export const RTM_GETLINK = 18;
export const RTM_SETLINK = 19;

export const RTNLGRP_LINK = 1;
/** Multicast group bitmask for bind(): group N is bit N-1. */
export const RTMGRP_LINK = 1 << (RTNLGRP_LINK - 1);

export const AF_UNSPEC = 0;
export const NLMSG_HDRLEN = 16;
export const IFINFOMSG_LEN = 16;

export const IFF_UP = 0x1;
export const IFF_LOOPBACK = 0x8;
export const IFF_PROMISC = 0x100;
export const IFF_LOWER_UP = 0x10000;

export const IFLA_ADDRESS = 1;
export const IFLA_IFNAME = 3;
export const IFLA_MTU = 4;
export const IFLA_LINK = 5;
export const IFLA_TXQLEN = 13;
export const IFLA_OPERSTATE = 16;
export const IFLA_LINKINFO = 18;
export const IFLA_NET_NS_PID = 19;
export const IFLA_IFALIAS = 20;
export const IFLA_NET_NS_FD = 28;
export const IFLA_EXT_MASK = 29;
export const IFLA_LINK_NETNSID = 37;
export const IFLA_NEW_IFINDEX = 49;

export const IFLA_INFO_KIND = 1;
export const IFLA_INFO_DATA = 2;

export const IFLA_MACVLAN_MODE = 1;
export const IFLA_MACVLAN_FLAGS = 2;
export const IFLA_MACVLAN_MACADDR_MODE = 3;
export const IFLA_MACVLAN_MACADDR = 4;
export const IFLA_MACVLAN_MACADDR_DATA = 5;
export const IFLA_MACVLAN_MACADDR_COUNT = 6;

export const MACVLAN_MACADDR_SET = 3;
export const MACVLAN_FLAG_NOPROMISC = 1;

export const RTEXT_FILTER_SKIP_STATS = 1 << 3;
export const NLA_F_NESTED = 1 << 15;
export const NLA_TYPE_MASK = ~((1 << 15) | (1 << 14));

/** Kernel macvlan/macvtap mode values. */
export const MACVLAN_MODES = {
  private: 1,
  vepa: 2,
  bridge: 4,
  passthru: 8,
  source: 16,
} as const;

export const OPERSTATES = ['unknown', 'notpresent', 'down', 'lowerlayerdown', 'testing', 'dormant', 'up'] as const;
