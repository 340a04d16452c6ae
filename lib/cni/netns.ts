/**
 * Opening the namespaces a verb works in: CNI_NETNS (which must exist for ADD and CHECK) and recorded namespaces
 * that may be gone (DEL, GC). The host namespace is the one the plugin runs in.
 */
import { statSync, type Stats } from 'node:fs';
import { Netns } from '../netlink';
import { CniError, describeError, ErrorCode } from './errors';
import { log } from './log';

/**
 * Opens CNI_NETNS: code 3 if nothing is there, code 4 if it is not a network namespace or is the host's own (a
 * pod's interface never lives there). Never blocks: a FIFO, socket or device there is refused without opening it.
 */
export function openPodNetns(nsPath: string): Netns {
  refuseHost(nsPath);
  try {
    return Netns.open(nsPath);
  } catch (err) {
    const code = (err as { code?: string }).code;
    if (code === 'ENOENT') throw new CniError(ErrorCode.ContainerUnknown, `CNI_NETNS ${nsPath} does not exist`, describeError(err));
    throw new CniError(ErrorCode.InvalidEnvironment, `CNI_NETNS ${nsPath} is not a network namespace`, describeError(err));
  }
}

function refuseHost(nsPath: string): void {
  if (isHostNamespace(nsPath))
    throw new CniError(
      ErrorCode.InvalidEnvironment,
      `CNI_NETNS ${nsPath} is the host's network namespace`,
      "a pod's interface is never in the host namespace; nothing was changed",
    );
}

/** What a path that is not a namespace is, for messages (undefined: a regular file, possibly a namespace). */
function kindOf(st: Stats): string | undefined {
  if (st.isFIFO()) return 'a FIFO';
  if (st.isSocket()) return 'a socket';
  if (st.isCharacterDevice() || st.isBlockDevice()) return 'a device';
  if (st.isDirectory()) return 'a directory';
  return undefined;
}

/**
 * DEL's CNI_NETNS, checked before anything: the host namespace, a FIFO, socket, device or directory is code 4 (as
 * for ADD); a path that is gone, or no longer a namespace (its mount went with the sandbox), is fine.
 */
export function checkDelNetns(nsPath: string): void {
  if (!nsPath) return;
  refuseHost(nsPath);
  let st: Stats | undefined;
  try {
    st = statSync(nsPath, { throwIfNoEntry: false });
  } catch {
    return;
  }
  const kind = st && kindOf(st);
  if (kind) throw new CniError(ErrorCode.InvalidEnvironment, `CNI_NETNS ${nsPath} is ${kind}, not a network namespace`);
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
