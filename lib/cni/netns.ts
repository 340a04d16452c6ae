/**
 * Opening the namespaces a verb works in: CNI_NETNS (which must exist for ADD and CHECK) and recorded namespaces
 * that may be gone (DEL, GC). The host namespace is the one the plugin runs in.
 */
import { statSync } from 'node:fs';
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

/** True if `nsPath` is the namespace this process runs in (the host's), judged by inode, not by spelling. */
export function isHostNamespace(nsPath: string): boolean {
  try {
    const a = statSync(nsPath);
    const b = statSync('/proc/self/ns/net');
    return a.dev === b.dev && a.ino === b.ino;
  } catch {
    return false;
  }
}

/**
 * Opens a namespace if it still exists and is one; undefined otherwise (for DEL and GC, where gone is fine). The
 * host namespace is never a pod's: a release from it would move (or delete) host links, so it counts as gone.
 */
export function openIfAlive(nsPath: string): Netns | undefined {
  if (!nsPath) return undefined;
  if (isHostNamespace(nsPath)) {
    log.warn('refusing to release from the host namespace', { netns: nsPath });
    return undefined;
  }
  try {
    return Netns.open(nsPath);
  } catch (err) {
    log.info('namespace is gone', { netns: nsPath, err });
    return undefined;
  }
}
