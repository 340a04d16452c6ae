/**
 * Finding, recreating and releasing a device's host-side macvtap. Shared by ADD, DEL, CHECK and GC.
 *
 * A deviceID resolves to a host link name in this order:
 *   1. the device plugin's allocation record (`<stateDir>/allocations/<deviceID>.json`): its `linkName`;
 *   2. the deviceID itself, when it is the name of an existing host link (kubevirt-compatible usage);
 *   3. the device plugin's naming rule, `hostLinkName(deviceID)` (mvt + 12 hex digits of xxhash64).
 * When the record's link is missing (its sandbox namespace died with it, or the node rebooted), ADD recreates
 * it from the record: same name, lower device, mode, txqueuelen and ifindex, hence the same /dev/tap<ifindex>
 * the kubelet keeps handing to the pod.
 */
import { lstatSync } from 'node:fs';
import { AllocationRecord, AllocationStore } from '../naming/allocations';
import type { Link } from '../netlink/link';
import { Netns } from '../netlink/netns';
import { interfaceNameProblem } from '../netlink/validate';
import { AttachmentRecord, LinkSettings } from './attachments';
import { CniError, describeError, ErrorCode } from './errors';
import { log } from './log';

/** Opens CNI_NETNS: code 3 if nothing is there, code 4 if it is not a network namespace. */
export function openPodNetns(nsPath: string): Netns {
  try {
    return Netns.open(nsPath);
  } catch (err) {
    const code = (err as { code?: string }).code;
    if (code === 'ENOENT') throw new CniError(ErrorCode.ContainerUnknown, `CNI_NETNS ${nsPath} does not exist`, describeError(err));
    throw new CniError(ErrorCode.InvalidEnvironment, `CNI_NETNS ${nsPath} is not a network namespace`, describeError(err));
  }
}

/** Opens a namespace if it still exists and is one; undefined otherwise (for DEL and GC, where gone is fine). */
export function openIfAlive(nsPath: string): Netns | undefined {
  if (!nsPath) return undefined;
  try {
    return Netns.open(nsPath);
  } catch (err) {
    log.info(`namespace ${nsPath} is gone (${describeError(err)})`);
    return undefined;
  }
}

export function readAllocation(stateDir: string, deviceID: string): AllocationRecord | undefined {
  try {
    return new AllocationStore(stateDir).read(deviceID);
  } catch {
    return undefined; // a deviceID that cannot name a record file has none
  }
}

/** The device plugin's name for a device (loads the hasher only when needed: it is not on ADD's fast path). */
export async function derivedLinkName(deviceID: string): Promise<string> {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const naming = require('../naming') as typeof import('../naming');
  return naming.hostLinkName(deviceID);
}

/** The host link name of a device, without looking at links (for DEL, whose link is not in the host). */
export async function hostNameOf(deviceID: string, record: AllocationRecord | undefined): Promise<string> {
  if (record) return record.linkName;
  if (!interfaceNameProblem(deviceID)) return deviceID;
  return derivedLinkName(deviceID);
}

export function settingsOf(link: Link): LinkSettings {
  return { mac: link.mac, mtu: link.mtu, promisc: link.flags.promisc, up: link.flags.up };
}

/** Checks the requested MAC and MTU against the lower device (before anything changes). */
export function validateAgainstLower(lower: Link | undefined, mtu: number | undefined, mac: string | undefined): void {
  if (!lower) return;
  if (mtu !== undefined && mtu > lower.mtu) {
    throw new CniError(
      ErrorCode.InvalidConfig,
      `mtu ${mtu} is above the MTU of the lower device ${lower.name} (${lower.mtu})`,
      `a macvtap's MTU must be within 68..${lower.mtu}`,
    );
  }
  if (mac !== undefined && mac === lower.mac) {
    throw new CniError(
      ErrorCode.InvalidConfig,
      `mac ${mac} is the MAC of the lower device ${lower.name}`,
      "a macvtap cannot share its lower device's address",
    );
  }
}

export interface HostDevice {
  link: Link;
  lower: Link | undefined;
  record: AllocationRecord | undefined;
  recreated: boolean;
}

export interface ResolveOptions {
  stateDir: string;
  deviceID: string;
  mtu: number | undefined;
  mac: string | undefined;
  /** Called before a missing link is recreated: throws if the device is still attached elsewhere. */
  beforeRecreate: () => void;
}

/**
 * The device's macvtap in the host namespace, recreated from its allocation record when missing or when the
 * link under the record's name is not what the device plugin answered (other ifindex, lower or mode).
 * Validates MAC and MTU against the lower device before creating anything.
 */
export async function resolveHostDevice(host: Netns, opts: ResolveOptions): Promise<HostDevice> {
  const { deviceID } = opts;
  const record = readAllocation(opts.stateDir, deviceID);
  let link: Link | null = null;
  if (record) {
    link = host.getLinkSync(record.linkName);
  } else {
    if (!interfaceNameProblem(deviceID)) link = host.getLinkSync(deviceID);
    if (!link) link = host.getLinkSync(await derivedLinkName(deviceID));
    if (!link) {
      throw new CniError(
        ErrorCode.DeviceNotFound,
        `no macvtap for deviceID ${JSON.stringify(deviceID)}`,
        `no host link of that name, no allocation record in ${opts.stateDir}/allocations, and no link under the device plugin's name for it`,
      );
    }
  }
  if (link && link.kind !== 'macvtap') {
    throw new CniError(
      ErrorCode.NotMacvtap,
      `host link ${link.name} for deviceID ${JSON.stringify(deviceID)} is not a macvtap (kind ${link.kind ?? 'none'})`,
    );
  }

  let lower: Link | undefined;
  if (record) {
    lower = host.getLinkSync(record.lowerDevice) ?? undefined;
    if (!lower && link && link.parentIndex && link.parentNetnsId === undefined) {
      // The link exists, so its lower does too, under another name (renamed since the Allocate).
      lower = host.getLinkSync(link.parentIndex) ?? undefined;
      log.warn(`lower device ${record.lowerDevice} of ${deviceID} is now named ${lower?.name}`);
    }
  } else if (link && (opts.mtu !== undefined || opts.mac !== undefined) && link.parentIndex && link.parentNetnsId === undefined) {
    lower = host.getLinkSync(link.parentIndex) ?? undefined;
  }

  if (!record || (link && matchesRecord(link, record, lower))) {
    validateAgainstLower(lower, opts.mtu, opts.mac);
    return { link: link as Link, lower, record, recreated: false };
  }

  // The record's link is missing or is not the allocated one: rebuild it exactly as allocated.
  if (!lower) {
    throw new CniError(
      ErrorCode.LowerDeviceMissing,
      `lower device ${record.lowerDevice} of deviceID ${JSON.stringify(deviceID)} does not exist`,
      `its macvtap ${record.linkName} is gone and cannot be recreated until ${record.lowerDevice} is back`,
    );
  }
  validateAgainstLower(lower, opts.mtu, opts.mac);
  opts.beforeRecreate();
  if (link) {
    log.warn(
      `host link ${link.name} (ifindex ${link.index}, mode ${link.macvtap?.mode}) differs from the allocation of ${deviceID} (ifindex ${record.ifindex} on ${record.lowerDevice}, mode ${record.mode}); recreating it`,
    );
    host.deleteLinkSync(link.index);
  } else {
    log.info(
      `recreating ${record.linkName} for ${deviceID} from its allocation record (ifindex ${record.ifindex} on ${record.lowerDevice}, mode ${record.mode})`,
    );
  }
  const created = host.createMacvtapSync({
    name: record.linkName,
    lower: lower.index,
    mode: record.mode,
    index: record.ifindex,
    txqueuelen: record.txqueuelen,
  });
  return { link: created, lower, record, recreated: true };
}

function matchesRecord(link: Link, record: AllocationRecord, lower: Link | undefined): boolean {
  return (
    link.index === record.ifindex &&
    link.macvtap?.mode === record.mode &&
    lower !== undefined &&
    link.parentIndex === lower.index &&
    link.parentNetnsId === undefined
  );
}

/**
 * True if the recorded attachment's link is still in its namespace: that namespace exists and holds a macvtap
 * with the recorded ifindex.
 */
export function stillAttached(att: AttachmentRecord): boolean {
  const ns = openIfAlive(att.netns);
  if (!ns) return false;
  try {
    const link = ns.getLinkSync(att.ifindex);
    return link !== null && link.kind === 'macvtap';
  } catch {
    return false;
  } finally {
    ns.close();
  }
}

/**
 * Returns a macvtap from a sandbox namespace to the host under `hostName` (keeping its ifindex, so its
 * /dev/tap<ifindex> stays valid) and, when known, restores its pre-ADD settings. If the host already has a link
 * of that name or ifindex (the device was recreated meanwhile), the sandbox's copy is deleted instead.
 */
export function releaseToHost(
  host: Netns,
  pod: Netns,
  link: Link,
  hostName: string,
  original: LinkSettings | undefined,
): 'moved' | 'deleted' {
  const byName = host.getLinkSync(hostName);
  const byIndex = byName?.index === link.index ? byName : host.getLinkSync(link.index);
  if (byName || byIndex) {
    log.warn(
      `host already has ${byName ? `a link named ${hostName}` : `ifindex ${link.index}`}; deleting the sandbox's ${link.name} instead of returning it`,
    );
    pod.deleteLinkSync(link.index);
    return 'deleted';
  }
  pod.moveLinkSync(link.index, host, { name: hostName, index: link.index });
  if (original) {
    try {
      host.setLinkSync(link.index, { mac: original.mac, mtu: original.mtu, promisc: original.promisc, up: original.up });
    } catch (err) {
      log.warn(`returned ${hostName} to the host but could not restore its settings: ${describeError(err)}`);
    }
  }
  return 'moved';
}

/** Owner, group and mode of a tap node before ADD changed them, to restore on rollback. */
export interface NodeState {
  rdev: number;
  uid: number;
  gid: number;
  mode: number;
}

export function nodeState(file: string): NodeState | undefined {
  try {
    const st = lstatSync(file);
    return st.isCharacterDevice() ? { rdev: st.rdev, uid: st.uid, gid: st.gid, mode: st.mode & 0o7777 } : undefined;
  } catch {
    return undefined;
  }
}
