/**
 * Names shared by the device plugin and the CNI plugin, compatible with kubevirt's macvtap-cni so that a
 * node can switch images: resource names, device IDs and the host-side link name of each device.
 */
import { xxhash64 } from '../netlink/hash';

/** Resource names are `macvtap.network.kubevirt.io/<name>`. */
export const RESOURCE_PREFIX = 'macvtap.network.kubevirt.io';

export function resourceName(name: string): string {
  return `${RESOURCE_PREFIX}/${name}`;
}

/** Device IDs of a resource: `<name>Mvp<i>` for i in 0..capacity-1. */
export function deviceId(name: string, i: number): string {
  return `${name}Mvp${i}`;
}

/**
 * The host link name of a device: `mvt` + 12 hex digits of xxhash64(deviceID) & 0xffffffffffff (15 bytes: the
 * longest name Linux allows). Synchronous: the addon computes XXH64 (kubevirt's `TemporaryInterfaceName`).
 */
export function hostLinkName(id: string): string {
  const hash = xxhash64(id);
  return `mvt${(hash & 0xffffffffffffn).toString(16).padStart(12, '0')}`;
}

/**
 * The name a device's macvtap carries while its Allocate is not yet committed: `mvn` + the same 12 hex digits as
 * its host name. The kernel holds this mark atomically with the link, so after a crash a link of this form is
 * known to be unanswered work of this device plugin (never kubevirt's, never an operator's).
 */
export function pendingLinkName(id: string): string {
  return `mvn${hostLinkName(id).slice(3)}`;
}

const PENDING_RE = /^mvn[0-9a-f]{12}$/;

/** The host name a pending link gets once committed, or undefined if `name` is not a pending link name. */
export function committedNameOf(name: string): string | undefined {
  return PENDING_RE.test(name) ? `mvt${name.slice(3)}` : undefined;
}

/** The name a retired link carries until it is deleted (a stale link of a device's name, set aside). */
export function retiredName(ifindex: number): string {
  return `mvr${ifindex}`;
}
