/**
 * Finding a device's macvtap in the host namespace, before ADD moves it. A deviceID resolves, in order, through:
 *   1. the device plugin's allocation record (`allocations/<deviceID>.json`): its link, `mvt` + hash;
 *   2. the deviceID itself, when it names a host link (kubevirt-compatible usage: an operator's macvtap);
 *   3. the device plugin's naming rule, `hostLinkName(deviceID)` (a device allocated by kubevirt's plugin).
 * When the record's link is missing (its sandbox namespace died with it, or the node rebooted), it is recreated
 * from the record: same name, lower device, mode, txqueuelen and ifindex, hence the same /dev/tap<ifindex> the
 * kubelet keeps handing to the pod. A link that exists is never deleted: when it differs from the record (another
 * ifindex, lower or mode: e.g. another device plugin re-allocated it), the kernel wins and the record is reported.
 */
import { hostLinkName } from '../naming';
import { interfaceNameProblem, type Link, type Netns } from '../netlink';
import type { AllocationRecord, NodeState } from '../state';
import { CniError, ErrorCode } from './errors';
import { log } from './log';

export interface HostDevice {
  link: Link;
  /** Its lower device in the host namespace. */
  lower: Link;
  allocation: AllocationRecord | undefined;
  recreated: boolean;
}

export interface DeviceRequest {
  deviceID: string;
  mtu: number | undefined;
  mac: string | undefined;
}

/** Finds (or recreates from its allocation record) the device's host macvtap, checked against the request. */
export function findHostDevice(host: Netns, state: NodeState, req: DeviceRequest): HostDevice {
  const allocation = state.allocations.read(req.deviceID);
  const link = allocation ? host.getLinkSync(allocation.linkName) : findByName(host, req.deviceID);
  if (!link) {
    if (allocation) return recreate(host, allocation, req);
    throw new CniError(
      ErrorCode.DeviceNotFound,
      `no macvtap for deviceID ${JSON.stringify(req.deviceID)}`,
      `no host link of that name or ${hostLinkName(req.deviceID)}, and no allocation record in ${state.path}/allocations`,
    );
  }
  if (link.kind !== 'macvtap') {
    throw new CniError(
      ErrorCode.NotMacvtap,
      `host link ${link.name} for deviceID ${JSON.stringify(req.deviceID)} is not a macvtap (kind ${link.kind ?? 'none'})`,
    );
  }
  const lower = link.parentIndex !== undefined && link.parentNetnsId === undefined ? host.getLinkSync(link.parentIndex) : null;
  if (!lower) {
    throw new CniError(
      ErrorCode.LowerDeviceMissing,
      `the lower device of ${link.name} (deviceID ${JSON.stringify(req.deviceID)}) is not in the host namespace`,
    );
  }
  if (allocation) reportMismatch(link, lower, allocation);
  checkAgainstLower(lower, req);
  return { link, lower, allocation, recreated: false };
}

function findByName(host: Netns, deviceID: string): Link | null {
  const own = interfaceNameProblem(deviceID) ? null : host.getLinkSync(deviceID);
  return own ?? host.getLinkSync(hostLinkName(deviceID));
}

/** The kernel's link differs from what the record says was allocated: say so, and go with the kernel. */
function reportMismatch(link: Link, lower: Link, rec: AllocationRecord): void {
  const diffs: string[] = [];
  if (link.index !== rec.ifindex) diffs.push(`ifindex ${link.index}, recorded ${rec.ifindex}`);
  if (link.macvtap?.mode !== rec.mode) diffs.push(`mode ${link.macvtap?.mode}, recorded ${rec.mode}`);
  if (lower.name !== rec.lowerDevice) diffs.push(`lower device ${lower.name}, recorded ${rec.lowerDevice}`);
  if (diffs.length)
    log.warn('the host link differs from its allocation record; using the link as the kernel has it', { link: link.name, diffs });
}

function recreate(host: Netns, rec: AllocationRecord, req: DeviceRequest): HostDevice {
  const lower = host.getLinkSync(rec.lowerDevice);
  if (!lower) {
    throw new CniError(
      ErrorCode.LowerDeviceMissing,
      `lower device ${rec.lowerDevice} of deviceID ${JSON.stringify(req.deviceID)} does not exist`,
      `its macvtap ${rec.linkName} is gone and cannot be recreated until ${rec.lowerDevice} is back`,
    );
  }
  checkAgainstLower(lower, req);
  log.info('recreating the device from its allocation record', {
    link: rec.linkName,
    ifindex: rec.ifindex,
    lower: rec.lowerDevice,
    mode: rec.mode,
  });
  const link = host.createMacvtapSync({
    name: rec.linkName,
    lower: lower.index,
    mode: rec.mode,
    index: rec.ifindex,
    txqueuelen: rec.txqueuelen,
  });
  return { link, lower, allocation: rec, recreated: true };
}

/** Checks the requested MAC and MTU against the lower device (before anything changes). */
function checkAgainstLower(lower: Link, req: DeviceRequest): void {
  if (req.mtu !== undefined && req.mtu > lower.mtu) {
    throw new CniError(
      ErrorCode.InvalidConfig,
      `mtu ${req.mtu} is above the MTU of the lower device ${lower.name} (${lower.mtu})`,
      `a macvtap's MTU must be within 68..${lower.mtu}`,
    );
  }
  if (req.mac !== undefined && req.mac === lower.mac) {
    throw new CniError(
      ErrorCode.InvalidConfig,
      `mac ${req.mac} is the MAC of the lower device ${lower.name}`,
      "a macvtap cannot share its lower device's address",
    );
  }
}
