/**
 * Names shared by the device plugin and the CNI plugin, compatible with kubevirt's macvtap-cni so that a
 * node can switch images: resource names, device IDs and the host-side link name of each device.
 */
import xxhash from 'xxhash-wasm';

/** Resource names are `macvtap.network.kubevirt.io/<name>`. */
export const RESOURCE_PREFIX = 'macvtap.network.kubevirt.io';

export function resourceName(name: string): string {
  return `${RESOURCE_PREFIX}/${name}`;
}

/** Device IDs of a resource: `<name>Mvp<i>` for i in 0..capacity-1. */
export function deviceId(name: string, i: number): string {
  return `${name}Mvp${i}`;
}

let hasher: ReturnType<typeof xxhash> | undefined;

/**
 * The host link name of a device: `mvt` + 12 hex digits of xxhash64(deviceID) & 0xffffffffffff.
 * (15 bytes: the longest name Linux allows.)
 */
export async function hostLinkName(id: string): Promise<string> {
  hasher ??= xxhash();
  const { h64 } = await hasher;
  return `mvt${(h64(id) & 0xffffffffffffn).toString(16).padStart(12, '0')}`;
}
