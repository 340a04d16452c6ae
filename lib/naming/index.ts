/**
 * Names shared by the device plugin and the CNI plugin, compatible with kubevirt's macvtap-cni so that a
 * node can switch images: resource names, device IDs and the host-side link name of each device.
 */
import { native } from '../netlink/native';

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
  const hash = native().xxhash64(Buffer.from(id, 'utf8'));
  return `mvt${(hash & 0xffffffffffffn).toString(16).padStart(12, '0')}`;
}
