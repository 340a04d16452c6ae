/**
 * What the state tree trusts: directories 0700 and files 0600, owned by this (root) user, never a symlink, never
 * writable by group or others. The checks behind UnsafeStateDir, and the checked opening of a directory by one
 * name under a directory fd (creating it when asked), which lib/state/dir.ts builds the tree from.
 */
import * as fs from 'node:fs';
import type { NetlinkError } from '../netlink/errors';
import { native, type NativeStat } from '../netlink/native';
import { stateError, UnsafeStateDir } from './errors';

export const DIR_MODE = 0o700;
export const FILE_MODE = 0o600;

function euid(): number {
  return process.geteuid?.() ?? 0;
}

function writers(mode: number): string {
  return [mode & 0o020 && 'its group', mode & 0o002 && 'others'].filter(Boolean).join(' and ');
}

/** Why a directory (by its statx) must not be used, or undefined. */
export function dirProblem(st: NativeStat): string | undefined {
  if (st.type === 'symlink') return 'is a symlink';
  if (st.type !== 'dir') return `is a ${st.type}, not a directory`;
  if (st.uid !== euid()) return `is owned by uid ${st.uid}, not ${euid() === 0 ? 'root' : `uid ${euid()}`}`;
  if (st.mode & 0o022) return `is writable by ${writers(st.mode)} (mode ${st.mode.toString(8).padStart(4, '0')})`;
  return undefined;
}

/** Why an open file must not be trusted as a record or lock, or undefined. */
export function fileProblem(st: NativeStat): string | undefined {
  if (st.type !== 'file') return `is a ${st.type}, not a regular file`;
  if (st.uid !== euid()) return `is owned by uid ${st.uid}, not root`;
  if (st.mode & 0o022) return `is writable by ${writers(st.mode)} (mode ${st.mode.toString(8).padStart(4, '0')})`;
  return undefined;
}

/**
 * Opens (creating when missing, 0700) the directory `name` under `parentFd` and checks it. Returns its fd.
 */
export function openCheckedDir(parentFd: number, name: string, full: string, create: boolean): number | undefined {
  const addon = native();
  for (let attempt = 0; ; attempt++) {
    let fd: number;
    try {
      fd = addon.stateOpenDir(parentFd, name);
    } catch (err) {
      const code = (err as NetlinkError).code;
      if (code === 'ENOENT' && create && attempt === 0) {
        try {
          if (addon.stateMkdir(parentFd, name, DIR_MODE)) {
            // mkdir's mode is cut by the umask: state the mode we mean.
            const made = addon.stateOpenDir(parentFd, name);
            fs.fchmodSync(made, DIR_MODE);
            fs.closeSync(made);
          }
        } catch (mkErr) {
          throw stateError(mkErr, 'create directory', full);
        }
        continue;
      }
      if (code === 'ENOENT') return undefined;
      if (code === 'ELOOP' || code === 'ENOTDIR') {
        const st = safeStat(parentFd, name);
        if (st) throw new UnsafeStateDir(full, dirProblem(st) ?? `cannot be opened as a directory (${code})`);
      }
      throw stateError(err, 'open directory', full);
    }
    let problem: string | undefined;
    try {
      problem = dirProblem(addon.stateStat(fd, '') as NativeStat);
    } catch (err) {
      fs.closeSync(fd);
      throw stateError(err, 'stat directory', full);
    }
    if (problem) {
      fs.closeSync(fd);
      throw new UnsafeStateDir(full, problem);
    }
    return fd;
  }
}

export /** The stat of `name` under `dirFd` (never following a symlink), or null when it cannot be had. */
function safeStat(dirFd: number, name: string): NativeStat | null {
  try {
    return native().stateStat(dirFd, name);
  } catch {
    return null;
  }
}
