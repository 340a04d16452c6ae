/**
 * The typed surface of the C++ addon, and its loader. Nothing outside lib/netlink sees the addon itself.
 */
import * as path from 'node:path';
import { NetlinkError } from './errors';

/** A NETLINK_ROUTE socket bound to the namespace it was created in. */
export interface NativeNetlinkSocket {
  /** The socket's fd (-1 once closed). */
  readonly fd: number;
  /** Sends one complete netlink message (its seq is stamped natively) and returns the data messages. */
  requestSync(request: Buffer, operation: string, link: string): Buffer[];
  /** Asynchronous twin of requestSync; the reply is read on the main loop (uv_poll). One at a time. */
  request(request: Buffer, operation: string, link: string, callback: (err: NetlinkError | null, messages?: Buffer[]) => void): void;
  /** Delivers multicast messages (groups given at construction) in batches on the main loop. */
  watch(callback: (err: NetlinkError | null, messages?: Buffer[]) => void): void;
  /** Stops polling and closes the fd; a pending request fails with ECANCELED. Idempotent. */
  close(): void;
}

/** What `stateStat` reports (statx, never following a symlink). */
export interface NativeStat {
  type: 'file' | 'dir' | 'symlink' | 'fifo' | 'socket' | 'char' | 'block' | 'unknown';
  /** Permission bits. */
  mode: number;
  uid: number;
  gid: number;
  size: number;
  nlink: number;
  /** `devmajor:devminor:ino`: the inode's identity. */
  id: string;
}

export interface NativeAddon {
  init(errorClass: typeof NetlinkError): void;
  NetlinkSocket: new (nsFd: number, groups: number) => NativeNetlinkSocket;
  nsOpen(path: string): number;
  nsCreate(dir: string, name: string): void;
  nsRemove(dir: string, name: string): void;
  sysfsRead(nsFd: number, path: string): string;
  closeFd(fd: number): void;
  mknod(path: string, mode: number, major: number, minor: number): void;
  // The state directory's file primitives (native/statefs.h), used only by lib/state. Names are one component
  // relative to a directory fd, never followed if a symlink; fds are O_CLOEXEC, opened O_NONBLOCK.
  stateOpenDir(dirFd: number, path: string): number;
  stateMkdir(dirFd: number, name: string, mode: number): boolean;
  stateOpen(dirFd: number, name: string, how: 'read' | 'create' | 'exclusive', mode: number): number;
  stateStat(dirFd: number, name: string): NativeStat | null;
  stateRename(dirFd: number, from: string, to: string): void;
  stateUnlink(dirFd: number, name: string, isDir: boolean): boolean;
  stateList(dirFd: number): string[];
  stateLock(fd: number): boolean;
  stateCommit(fileFd: number, dirFd: number, from: string, to: string, callback: (err: NetlinkError | null) => void): void;
}

const ADDON_FILE = 'macvtap_native.node';

/** Where the addon may be: an explicit override, the build tree (from dist/ or from sources), next to a bundle. */
function candidatePaths(): string[] {
  const candidates: string[] = [];
  const override = process.env.MACVTAP_NATIVE_ADDON;
  if (override) candidates.push(override);
  for (const up of ['..', '../..', '../../..']) {
    candidates.push(path.resolve(__dirname, up, 'build', 'Release', ADDON_FILE));
  }
  candidates.push(path.resolve(__dirname, ADDON_FILE));
  return [...new Set(candidates)];
}

let loaded: NativeAddon | undefined;
let loader: (() => NativeAddon) | undefined;

/**
 * Lets a host (the single-executable build) supply the addon itself, e.g. from an embedded asset.
 * Must be called before the first netlink operation.
 */
export function setNativeLoader(load: () => NativeAddon): void {
  loader = load;
}

/** Loads the addon once; on failure the error lists every path tried and how to build it. */
export function native(): NativeAddon {
  if (loaded) return loaded;
  let addon: NativeAddon | undefined;
  const tried: string[] = [];
  if (loader) {
    addon = loader();
  } else {
    for (const candidate of candidatePaths()) {
      try {
        // eslint-disable-next-line @typescript-eslint/no-require-imports
        addon = require(candidate) as NativeAddon;
        break;
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        tried.push(`  ${candidate}: ${code === 'MODULE_NOT_FOUND' ? 'not found' : (err as Error).message}`);
      }
    }
  }
  if (!addon) {
    throw new Error(
      `macvtap-cni: cannot load the native addon ${ADDON_FILE}. Tried:\n${tried.join('\n')}\n` +
        'Build it with `npm run build:addon` (needs python3, make and a C++17 compiler), ' +
        'or point MACVTAP_NATIVE_ADDON at a built copy.',
    );
  }
  addon.init(NetlinkError);
  loaded = addon;
  return addon;
}
