/**
 * Opening the namespaces a verb works in: CNI_NETNS (which must exist for ADD and CHECK) and recorded namespaces
 * that may be gone (DEL, GC). The host namespace is the one the plugin runs in.
 */
import { Netns } from '../netlink';
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
    log.info('namespace is gone', { netns: nsPath, err });
    return undefined;
  }
}
