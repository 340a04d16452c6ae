/** A macvtap's character device, read from sysfs (`/sys/class/net/NAME/tapIFINDEX/dev`, "major:minor"). */
import { NetlinkError } from '../errors';
import type { Link } from '../link';

/** A macvtap's character device. */
export interface TapDevice {
  /** ifindex of the macvtap, which names the node: `/dev/tap<ifindex>`. */
  ifindex: number;
  major: number;
  minor: number;
  /** `/dev/tap<ifindex>`. */
  path: string;
}

export const TAP_OPERATION = 'find tap device';

/** The sysfs file, relative to the sysfs root, that holds `link`'s major:minor. Refuses non-macvtaps. */
export function tapDeviceFile(link: Link): string {
  if (link.kind !== 'macvtap') {
    throw new NetlinkError(
      `${TAP_OPERATION} ${link.name}: not a macvtap (kind ${link.kind ?? 'none'})`,
      22,
      'EINVAL',
      TAP_OPERATION,
      link.name,
    );
  }
  return `class/net/${link.name}/tap${link.index}/dev`;
}

export function decodeTapDevice(link: Link, text: string): TapDevice {
  const match = /^(\d+):(\d+)\s*$/.exec(text);
  if (!match) {
    throw new NetlinkError(
      `${TAP_OPERATION} ${link.name}: unexpected sysfs content ${JSON.stringify(text)}`,
      5,
      'EIO',
      TAP_OPERATION,
      link.name,
    );
  }
  return { ifindex: link.index, major: Number(match[1]), minor: Number(match[2]), path: `/dev/tap${link.index}` };
}
