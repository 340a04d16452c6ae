/**
 * The typed surface of the C++ addon, and its loader. Nothing outside lib/netlink sees the addon itself.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { NetlinkError } from './errors';

/** A NETLINK_ROUTE socket bound to the namespace it was created in. */
export interface NativeNetlinkSocket {
  /** The socket's fd (-1 once closed). */
  readonly fd: number;
  /** The socket's netlink port id (where the kernel sends its replies); -1 once closed. */
  readonly portId: number;
  /**
   * Sends one complete netlink message (its seq is stamped natively) and returns the data messages. Waits at
   * most `timeoutMs` for the reply (then ETIMEDOUT); only the kernel's messages with that seq count.
   */
  requestSync(request: Buffer, operation: string, link: string, timeoutMs: number): Buffer[];
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
  /** A verified network namespace fd; never blocks (FIFOs, devices, sockets... fail with EINVAL). */
  nsOpen(path: string): number;
  nsCreate(dir: string, name: string): void;
  nsRemove(dir: string, name: string): void;
  /** A detached read-only sysfs mount (fd) as namespace `nsFd` sees it (fsopen/fsmount, Linux 5.2+). */
  sysfsMount(nsFd: number): number;
  /** Reads `path` under a sysfs mounted for namespace `nsFd` in a private mount namespace (one task per call). */
  sysfsRead(nsFd: number, path: string): string;
  /** Reads (up to 4 KiB of) a file relative to a directory fd. */
  readAt(dirFd: number, path: string): string;
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
  /** XXH64 with seed 0. */
  xxhash64(data: Buffer): bigint;
}

const ADDON_FILE = 'macvtap_native.node';
/** The platforms the npm package carries a prebuilt addon for (glibc >= 2.28); others build from source. */
const PREBUILT = ['linux-x64', 'linux-arm64'];
const PLATFORM = `${process.platform}-${process.arch}`;

const mtime = (file: string): number => {
  try {
    return fs.statSync(file).mtimeMs;
  } catch {
    return -1;
  }
};

/**
 * Where the addon may be, in order: an explicit override (alone, when given); the prebuilt binary for this platform in the
 * package (what an installed package uses; no compiler, no install script); a local source build; next to a
 * bundle. The package root is one to three levels up: from lib/netlink (sources), dist/lib/netlink (tsc) or
 * dist/bin (an esbuild bundle). A source build newer than the prebuild beside it goes first, so that a
 * developer who rebuilt the C++ with node-gyp directly never runs a stale prebuild.
 */
function candidatePaths(): string[] {
  // An explicit override is the only candidate: a run meant for one build (the sanitizer build of
  // `npm run test:sanitize`, a bundle's addon) must fail rather than quietly load another.
  const override = process.env.MACVTAP_NATIVE_ADDON;
  if (override) return [path.resolve(override)];
  const candidates: string[] = [];
  for (const up of ['..', '../..', '../../..']) {
    const root = path.resolve(__dirname, up);
    const prebuilt = path.join(root, 'prebuilds', PLATFORM, ADDON_FILE);
    const built = path.join(root, 'build', 'Release', ADDON_FILE);
    candidates.push(...(mtime(built) > mtime(prebuilt) && mtime(prebuilt) >= 0 ? [built, prebuilt] : [prebuilt, built]));
  }
  candidates.push(path.resolve(__dirname, ADDON_FILE));
  return [...new Set(candidates)];
}

/** What the user can do when no candidate loaded: depends on why no prebuild fits this machine. */
function remedy(): string {
  const build =
    'build it from source (needs python3, make and a C++17 compiler): run `npx node-gyp rebuild` in the package directory ' +
    '(`npm run build:addon` in a clone), or point MACVTAP_NATIVE_ADDON at a built copy';
  if (!PREBUILT.includes(PLATFORM)) return `There is no prebuilt addon for ${PLATFORM} (prebuilt: ${PREBUILT.join(', ')}); ${build}.`;
  const header = (process.report?.getReport() as { header?: { glibcVersionRuntime?: string } } | undefined)?.header;
  const glibc = header?.glibcVersionRuntime;
  if (!glibc) return `The prebuilt addon for ${PLATFORM} needs glibc >= 2.28 and this Node does not use glibc (musl?); ${build}.`;
  const [major, minor] = glibc.split('.').map(Number);
  if (major < 2 || (major === 2 && minor < 28))
    return `The prebuilt addon for ${PLATFORM} needs glibc >= 2.28, this machine has ${glibc}; ${build}.`;
  return `Reinstall the package (its prebuilds/${PLATFORM}/${ADDON_FILE} is missing or damaged), or ${build}.`;
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
        tried.push(`  ${candidate}: ${code === 'MODULE_NOT_FOUND' ? 'not found' : (err as Error).message.split('\n')[0]}`);
      }
    }
  }
  if (!addon) {
    throw new Error(`macvtap-cni: cannot load the native addon ${ADDON_FILE} for ${PLATFORM}. Tried:\n${tried.join('\n')}\n${remedy()}`);
  }
  addon.init(NetlinkError);
  loaded = addon;
  return addon;
}
