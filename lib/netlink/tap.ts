/**
 * Tap device nodes. `/dev/tap<ifindex>` lives in the one global /dev while ifindexes are per namespace, so a
 * node of that name may belong to another namespace's macvtap (or be missing). ensureTapNode() makes the
 * name point at exactly the given device.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { NetlinkError } from './errors';
import { native } from './native';
import type { TapDevice } from './ops/tap-device';
import { assertInteger } from './validate';

export interface TapNodeOptions {
  /** Owner uid; default: leave as is (root for a new node). */
  uid?: number;
  /** Owner gid; default: leave as is. */
  gid?: number;
  /** Permission bits; default 0o600. */
  mode?: number;
  /** Directory holding the nodes; default `/dev`. */
  devDir?: string;
}

export interface TapNodeResult {
  path: string;
  /** What had to be done to the name. */
  action: 'kept' | 'created' | 'replaced';
}

// glibc's dev_t layout (sys/sysmacros.h): major in bits 8-19 and 32-43, minor in bits 0-7 and 20-31.
const major = (rdev: number): number => Number(((BigInt(rdev) >> 8n) & 0xfffn) | ((BigInt(rdev) >> 32n) & 0xfffff000n));
const minor = (rdev: number): number => Number((BigInt(rdev) & 0xffn) | ((BigInt(rdev) >> 12n) & 0xffffff00n));

/** Major and minor of a character device node, or undefined if `file` is missing or not a char device. */
export function charDeviceOf(file: string): { major: number; minor: number } | undefined {
  let st: fs.Stats;
  try {
    st = fs.lstatSync(file);
  } catch {
    return undefined;
  }
  return st.isCharacterDevice() ? { major: major(st.rdev), minor: minor(st.rdev) } : undefined;
}

/**
 * Makes `/dev/tap<ifindex>` be exactly `device`'s character device (creating it, or atomically replacing
 * whatever holds the name), then sets owner, group and mode.
 * Equivalent to: mknod /dev/tapN c MAJ MIN && chown UID:GID /dev/tapN && chmod MODE /dev/tapN
 */
export function ensureTapNode(device: TapDevice, opts: TapNodeOptions = {}): TapNodeResult {
  assertInteger(device.ifindex, 'ifindex', 1, 0x7fffffff);
  assertInteger(device.major, 'major', 0, 0xfff);
  assertInteger(device.minor, 'minor', 0, 0xfffff);
  if (opts.uid !== undefined) assertInteger(opts.uid, 'uid', 0, 0xfffffffe);
  if (opts.gid !== undefined) assertInteger(opts.gid, 'gid', 0, 0xfffffffe);
  const mode = opts.mode ?? 0o600;
  assertInteger(mode, 'mode', 0, 0o7777);
  const dir = opts.devDir ?? '/dev';
  const file = path.join(dir, `tap${device.ifindex}`);
  const current = charDeviceOf(file);
  let action: TapNodeResult['action'] = 'kept';
  if (!current || current.major !== device.major || current.minor !== device.minor) {
    action = fs.existsSync(file) || isDanglingLink(file) ? 'replaced' : 'created';
    // Build the node under a private name, then rename over: no moment where the name is some other device.
    const temp = path.join(dir, `.tap${device.ifindex}.${process.pid}.tmp`);
    try {
      fs.rmSync(temp, { force: true });
      native().mknod(temp, mode, device.major, device.minor);
      fs.renameSync(temp, file);
    } catch (err) {
      fs.rmSync(temp, { force: true });
      throw wrap(err, 'create tap node', file);
    }
  }
  try {
    if (opts.uid !== undefined || opts.gid !== undefined) fs.chownSync(file, opts.uid ?? -1, opts.gid ?? -1);
    fs.chmodSync(file, mode);
  } catch (err) {
    throw wrap(err, 'set tap node owner', file);
  }
  return { path: file, action };
}

function isDanglingLink(file: string): boolean {
  try {
    fs.lstatSync(file);
    return true;
  } catch {
    return false;
  }
}

/** Names the node (not the temporary name) and the step in the error, keeping errno and code. */
function wrap(err: unknown, operation: string, file: string): NetlinkError {
  if (err instanceof NetlinkError) {
    const why = err.message.slice(err.message.lastIndexOf(': ') + 2);
    return new NetlinkError(`${operation} ${file}: ${why}`, err.errno, err.code, operation, file);
  }
  const e = err as NodeJS.ErrnoException;
  return new NetlinkError(`${operation} ${file}: ${e.message}`, e.errno ? Math.abs(e.errno) : 5, e.code ?? 'EIO', operation, file);
}
