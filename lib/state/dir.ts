/**
 * The state directory on disk: with trust.ts (its ownership and mode checks), the only code that calls the
 * addon's file primitives (native/statefs.h).
 *
 * The root is opened once by path; everything under it is reached by one name relative to a directory fd, never
 * following a symlink, so a link planted anywhere in the tree (a record, a temp file, a lock, a subdirectory) is
 * never followed. Directories are created 0700 and files 0600; an existing directory that is a symlink, not owned
 * by this (root) user, or writable by group or others is refused with an UnsafeStateDir naming it.
 *
 * Writes are atomic and durable, as databases write files: a temp file in the same directory (O_EXCL), fsync it,
 * rename it over the record, fsync the directory. A reader therefore sees the old or the new record, also after a
 * power loss. The asynchronous variant runs fsync → rename → fsync on libuv's thread pool, so the caller's thread
 * keeps working (the CNI moves the link meanwhile; the daemon keeps serving).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { NetlinkError } from '../netlink/errors';
import { native, type NativeStat } from '../netlink/native';
import { testSkipsFsync } from '../util/faults';
import { StateError, stateError, UnsafeStateDir } from './errors';
import { tempName } from './names';
import { FILE_MODE, fileProblem, openCheckedDir, safeStat } from './trust';

/** Records are a few hundred bytes; anything bigger than this is not one of ours. */
export const MAX_FILE_BYTES = 64 * 1024;

/** One directory of the tree (`allocations`, `attachments`, `locks`), held open by fd. */
export class StateSubdir {
  constructor(
    /** Full path, for messages. */
    readonly path: string,
    private readonly fd: number,
  ) {}

  file(name: string): string {
    return path.join(this.path, name);
  }

  /** Entry names, in directory order. */
  list(): string[] {
    try {
      return native().stateList(this.fd);
    } catch (err) {
      throw stateError(err, 'list directory', this.path);
    }
  }

  /**
   * The content of `name`, or undefined when there is no such entry. Throws StateError for I/O failures, and with
   * code `ECORRUPT` when the entry is not a root-owned regular file of at most MAX_FILE_BYTES (planted or broken:
   * the caller reports it and treats it as absent).
   */
  read(name: string): Buffer | undefined {
    const full = this.file(name);
    let fd: number;
    try {
      fd = native().stateOpen(this.fd, name, 'read', 0);
    } catch (err) {
      const code = (err as NetlinkError).code;
      if (code === 'ENOENT') return undefined;
      if (code === 'ELOOP') throw new StateError('read', full, 'ECORRUPT', 'is a symlink');
      throw stateError(err, 'read', full);
    }
    try {
      const st = native().stateStat(fd, '') as NativeStat;
      const problem = fileProblem(st) ?? (st.size > MAX_FILE_BYTES ? `is ${st.size} bytes, more than a record can be` : undefined);
      if (problem) throw new StateError('read', full, 'ECORRUPT', problem);
      const data = Buffer.alloc(st.size);
      let off = 0;
      while (off < data.length) {
        const n = fs.readSync(fd, data, off, data.length - off, off);
        if (n === 0) break;
        off += n;
      }
      return data.subarray(0, off);
    } catch (err) {
      throw stateError(err, 'read', full);
    } finally {
      fs.closeSync(fd);
    }
  }

  /** Atomically and durably replaces `name` with `data` (temp, fsync, rename, fsync dir). */
  write(name: string, data: string): void {
    const temp = tempName(name);
    const fd = this.createTemp(temp, data, name);
    try {
      if (!testSkipsFsync()) fs.fsyncSync(fd);
      native().stateRename(this.fd, temp, name);
      if (!testSkipsFsync()) fs.fsyncSync(this.fd);
    } catch (err) {
      this.discard(temp);
      throw stateError(err, 'write record', this.file(name));
    } finally {
      fs.closeSync(fd);
    }
  }

  /**
   * The same as write(), with fsync → rename → fsync dir on the thread pool. The temp file is written before this
   * returns (its failures, ENOSPC first of all, throw here, synchronously); the returned promise settles when the
   * record is durable. A writer killed before the rename leaves a whole record under the temp name (recoverable).
   */
  beginWrite(name: string, data: string): Promise<void> {
    const temp = tempName(name);
    const fd = this.createTemp(temp, data, name);
    return new Promise<void>((resolve, reject) => {
      const done = (err: NetlinkError | null): void => {
        fs.closeSync(fd);
        if (!err) return resolve();
        this.discard(temp);
        reject(stateError(err, 'write record', this.file(name)));
      };
      if (!testSkipsFsync()) return native().stateCommit(fd, this.fd, temp, name, done);
      try {
        native().stateRename(this.fd, temp, name);
        done(null);
      } catch (e) {
        done(e as NetlinkError);
      }
    });
  }

  /** Renames `from` over `to` durably (a dead writer's complete temp file becomes the record). */
  adopt(from: string, to: string): void {
    try {
      const fd = native().stateOpen(this.fd, from, 'read', 0);
      try {
        if (!testSkipsFsync()) fs.fsyncSync(fd);
      } finally {
        fs.closeSync(fd);
      }
      native().stateRename(this.fd, from, to);
      if (!testSkipsFsync()) fs.fsyncSync(this.fd);
    } catch (err) {
      throw stateError(err, 'adopt record', this.file(to));
    }
  }

  /** Removes `name` durably; false if it was not there. */
  remove(name: string): boolean {
    try {
      const removed = native().stateUnlink(this.fd, name, false);
      if (removed && !testSkipsFsync()) fs.fsyncSync(this.fd);
      return removed;
    } catch (err) {
      throw stateError(err, 'remove', this.file(name));
    }
  }

  /** remove() with the directory's fsync on the thread pool. */
  async removeAsync(name: string): Promise<boolean> {
    let removed: boolean;
    try {
      removed = native().stateUnlink(this.fd, name, false);
    } catch (err) {
      throw stateError(err, 'remove', this.file(name));
    }
    if (removed && !testSkipsFsync()) {
      await new Promise<void>((resolve, reject) =>
        fs.fsync(this.fd, (err) => (err ? reject(stateError(err, 'remove', this.file(name))) : resolve())),
      );
    }
    return removed;
  }

  /** Removes `name` without syncing (temp files, lock files: nothing depends on their absence). */
  discard(name: string): boolean {
    try {
      return native().stateUnlink(this.fd, name, false);
    } catch {
      return false;
    }
  }

  /** Creates, writes and removes a probe file: throws StateError when records could not be written here. */
  probeWrite(): void {
    const temp = tempName('write-probe');
    fs.closeSync(this.createTemp(temp, '.'));
    this.discard(temp);
  }

  /** Opens (creating, 0600) a lock file and checks it is a root-owned regular file. */
  openLockFile(name: string): number {
    const full = this.file(name);
    let fd: number;
    try {
      fd = native().stateOpen(this.fd, name, 'create', FILE_MODE);
    } catch (err) {
      if ((err as NetlinkError).code === 'ELOOP') throw new StateError('open lock', full, 'EUNSAFE', 'is a symlink');
      throw stateError(err, 'open lock', full);
    }
    let problem: string | undefined;
    try {
      problem = fileProblem(native().stateStat(fd, '') as NativeStat);
    } catch (err) {
      fs.closeSync(fd);
      throw stateError(err, 'open lock', full);
    }
    if (problem) {
      fs.closeSync(fd);
      throw new StateError('open lock', full, 'EUNSAFE', problem);
    }
    return fd;
  }

  /** flock(LOCK_EX|LOCK_NB) on `fd`: false while another holder has it. */
  tryLock(fd: number, name: string): boolean {
    try {
      return native().stateLock(fd);
    } catch (err) {
      throw stateError(err, 'lock', this.file(name));
    }
  }

  /** True if `name` is still the inode `fd` has open (a releaser may have unlinked or replaced it). */
  isSameFile(name: string, fd: number): boolean {
    const atName = safeStat(this.fd, name);
    const open = safeStat(fd, '');
    return atName !== null && open !== null && atName.id === open.id;
  }

  /** The stat of `name` (never following a symlink), or null. */
  stat(name: string): NativeStat | null {
    return safeStat(this.fd, name);
  }

  /** Creates `temp` exclusively with `data`; a leftover of that name (a dead writer with our pid, a planted link) is removed once. */
  private createTemp(temp: string, data: string, target = temp): number {
    // Failures name the record being written (the temp name is an implementation detail).
    const full = this.file(target);
    let fd: number | undefined;
    for (let attempt = 0; fd === undefined; attempt++) {
      try {
        fd = native().stateOpen(this.fd, temp, 'exclusive', FILE_MODE);
      } catch (err) {
        if ((err as NetlinkError).code === 'EEXIST' && attempt === 0) {
          this.discard(temp);
          continue;
        }
        throw stateError(err, 'write record', full);
      }
    }
    try {
      const bytes = Buffer.from(data);
      let off = 0;
      while (off < bytes.length) off += fs.writeSync(fd, bytes, off, bytes.length - off, off);
      return fd;
    } catch (err) {
      fs.closeSync(fd);
      this.discard(temp);
      throw stateError(err, 'write record', full);
    }
  }

  close(): void {
    try {
      fs.closeSync(this.fd);
    } catch {
      /* already closed */
    }
  }
}

export type SubdirName = 'allocations' | 'attachments' | 'locks';

/** The state directory: its root held open, subdirectories opened (and checked) on first use. */
export class StateDir {
  private readonly subdirs = new Map<SubdirName, StateSubdir>();
  private closed = false;

  private constructor(
    readonly path: string,
    private readonly fd: number,
  ) {}

  /**
   * Opens `dirPath` (absolute), creating it 0700 (and missing parents 0755) when absent. Refuses a root that is a
   * symlink, not owned by root or writable by others.
   */
  static open(dirPath: string): StateDir {
    if (typeof dirPath !== 'string' || !path.isAbsolute(dirPath) || dirPath.includes('\0'))
      throw new StateError('open state directory', String(dirPath), 'EINVAL', 'not an absolute path');
    const full = path.resolve(dirPath);
    const parent = path.dirname(full);
    const base = path.basename(full);
    if (!base) throw new UnsafeStateDir(full, 'is the root directory');
    let parentFd: number;
    try {
      parentFd = fs.openSync(parent, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw stateError(err, 'open parent of state directory', parent);
      try {
        fs.mkdirSync(parent, { recursive: true, mode: 0o755 });
        parentFd = fs.openSync(parent, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY);
      } catch (mkErr) {
        throw stateError(mkErr, 'create parent of state directory', parent);
      }
    }
    try {
      return new StateDir(full, openCheckedDir(parentFd, base, full, true) as number);
    } finally {
      fs.closeSync(parentFd);
    }
  }

  /** A subdirectory; undefined when it does not exist and `create` is false. */
  subdir(name: SubdirName, create: boolean): StateSubdir | undefined {
    if (this.closed) throw new StateError('open directory', this.path, 'EBADF', 'the state directory was closed');
    const known = this.subdirs.get(name);
    if (known) return known;
    const full = path.join(this.path, name);
    const fd = openCheckedDir(this.fd, name, full, create);
    if (fd === undefined) return undefined;
    const dir = new StateSubdir(full, fd);
    this.subdirs.set(name, dir);
    return dir;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const dir of this.subdirs.values()) dir.close();
    this.subdirs.clear();
    fs.closeSync(this.fd);
  }
}
