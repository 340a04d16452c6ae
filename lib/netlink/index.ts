/** The public netlink library: network namespaces, macvtap links, link events and tap device nodes. */
export { NetlinkError } from './errors';
export type { Link, LinkRef, MacvtapMode, OperState } from './link';
export { MACVTAP_MODES } from './link';
export { Netns, NETNS_RUN_DIR } from './netns';
export type { LinkChanges, MacvtapOptions, MoveOptions, NetnsTarget, TapDevice } from './netns';
export { SYNC_REPLY_TIMEOUT_MS } from './operation';
export { LinkWatcher } from './watcher';
export type { LinkEvent } from './watcher';
export { charDeviceOf, ensureTapNode } from './tap';
export type { TapNodeOptions, TapNodeResult } from './tap';
export { formatMac, interfaceNameProblem, parseMac, parseUnicastMac } from './validate';
export { xxhash64 } from './hash';
