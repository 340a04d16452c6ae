/**
 * The tap node of a device, `/dev/tap<ifindex>`: made the macvtap's own char device with the configured owner
 * after ADD moved it (a namespace change re-registers the device, possibly with another minor, and devtmpfs
 * recreates the node owned by root), and put back as it was when ADD is rolled back.
 */
import { lstatSync } from 'node:fs';
import { charDeviceOf, ensureTapNode, type Link, type Netns, type TapDevice } from '../netlink';

/** Owner, group and mode of a tap node before ADD changed them. */
export interface NodeState {
  uid: number;
  gid: number;
  mode: number;
}

/** The node's owner and mode, if it is a char device (undefined when missing or something else). */
export function tapNodeState(ifindex: number): NodeState | undefined {
  try {
    const st = lstatSync(`/dev/tap${ifindex}`);
    return st.isCharacterDevice() ? { uid: st.uid, gid: st.gid, mode: st.mode & 0o7777 } : undefined;
  } catch {
    return undefined;
  }
}

/** Makes `/dev/tap<ifindex>` the char device of `link` where it is now (in `ns`), owned `uid:gid`, mode 0600. */
export function makeTapNode(ns: Netns, link: Link, owner: { uid: number; gid: number }): TapDevice {
  const tap = ns.tapDeviceSync(link);
  ensureTapNode(tap, owner);
  return tap;
}

/** Puts the node back as `before` for the macvtap `ifindex` in `host` (rollback of ADD). */
export function restoreTapNode(host: Netns, ifindex: number, before: NodeState): void {
  const dev = host.tapDeviceSync(ifindex);
  const now = tapNodeState(ifindex);
  const current = charDeviceOf(dev.path);
  const same = now !== undefined && current?.major === dev.major && current?.minor === dev.minor;
  if (!same || now.uid !== before.uid || now.gid !== before.gid || now.mode !== before.mode) ensureTapNode(dev, before);
}
