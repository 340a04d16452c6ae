/**
 * Reading a file whose path someone else may have planted something at, or may be rewriting: never blocks (a
 * FIFO, a device), never reads without bound (a file that keeps growing), optionally refuses a symlink and a
 * file anyone but root could have written. The CNI's host configuration, the kubelet's checkpoint and the
 * device plugin's `--config FILE` are read this way; each caller turns the outcome into its own error.
 */
import { closeSync, constants, fstatSync, openSync, readSync, type Stats } from 'node:fs';
import { ownerProblem } from './root-only';

export interface BoundedReadOptions {
  /** Larger files are refused, by their size or once reading passes it (they can grow after fstat). */
  maxBytes: number;
  /** Refuse a symlink as the last component (O_NOFOLLOW) instead of following it. */
  noFollow?: boolean;
  /** Refuse a file that someone other than root could have written (root-only.ts). */
  rootOnly?: boolean;
}

export type BoundedRead =
  | { ok: true; bytes: Buffer }
  /** Nothing at the path (ENOENT); a symlink there (with noFollow); more than maxBytes read. */
  | { ok: false; reason: 'missing' | 'symlink' | 'grew' }
  | { ok: false; reason: 'open' | 'read'; error: NodeJS.ErrnoException }
  /** `kind` says what it is instead ("a FIFO", "a directory", ...). */
  | { ok: false; reason: 'not-file'; kind: string }
  /** `problem` completes "<file> ..." (root-only.ts's wording). */
  | { ok: false; reason: 'owner'; problem: string }
  | { ok: false; reason: 'size'; size: number };

/** What a file system object is, for "<path> is <kind>" messages. */
export function describeKind(st: Stats): string {
  if (st.isFIFO()) return 'a FIFO';
  if (st.isSocket()) return 'a socket';
  if (st.isCharacterDevice()) return 'a character device';
  if (st.isBlockDevice()) return 'a block device';
  if (st.isDirectory()) return 'a directory';
  if (st.isSymbolicLink()) return 'a symlink';
  return 'not a regular file';
}

/** The file's bytes, or why they were not read. Throws nothing the file system reports. */
export function readBounded(file: string, opts: BoundedReadOptions): BoundedRead {
  let fd: number;
  try {
    // O_NONBLOCK: opening a FIFO for reading returns at once instead of waiting for a writer.
    fd = openSync(file, constants.O_RDONLY | constants.O_NONBLOCK | (opts.noFollow ? constants.O_NOFOLLOW : 0));
  } catch (err) {
    const error = err as NodeJS.ErrnoException;
    if (error.code === 'ENOENT') return { ok: false, reason: 'missing' };
    if (error.code === 'ELOOP' && opts.noFollow) return { ok: false, reason: 'symlink' };
    return { ok: false, reason: 'open', error };
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) return { ok: false, reason: 'not-file', kind: describeKind(st) };
    const problem = opts.rootOnly ? ownerProblem(st) : undefined;
    if (problem) return { ok: false, reason: 'owner', problem };
    if (st.size > opts.maxBytes) return { ok: false, reason: 'size', size: st.size };
    const chunks: Buffer[] = [];
    let total = 0;
    for (;;) {
      // The first read asks for one byte more than fstat said: a file that did not grow is read whole by it.
      const chunk = Buffer.allocUnsafe(Math.min(Math.max(st.size + 1 - total, 64 * 1024), opts.maxBytes + 1 - total));
      const n = readSync(fd, chunk, 0, chunk.length, null);
      if (n === 0) return { ok: true, bytes: Buffer.concat(chunks, total) };
      chunks.push(chunk.subarray(0, n));
      total += n;
      if (total > opts.maxBytes) return { ok: false, reason: 'grew' };
    }
  } catch (err) {
    return { ok: false, reason: 'read', error: err as NodeJS.ErrnoException };
  } finally {
    closeSync(fd);
  }
}
