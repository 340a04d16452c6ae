/**
 * Per-device locks in the state directory, so that two operations on one deviceID never interleave while
 * operations on different devices run in parallel. No flock (Node has none): a lock is the file
 * `<stateDir>/locks/<deviceID>.lock`, created with O_EXCL and holding its owner's `pid starttime`.
 *
 * Invariants:
 * - Only the owner removes a live lock (release), and only while the file still names it.
 * - A lock whose owner is dead (no such pid, a zombie, or the pid reused by a process that started later) is
 *   broken by exactly one waiter: the breaker first hard-links the lock to `<lock>.break-<owner>`, which
 *   fails with EEXIST for every other breaker of that owner, then checks the linked inode still names the
 *   dead owner before unlinking the lock. A new lock created meanwhile by someone else is never removed,
 *   because its content names a different owner.
 * - A breaker that died between link and unlink leaves its marker; a marker linked more than MARKER_STALE_MS
 *   ago (by ctime: link() sets it) is removed by the next breaker. Until then, waiters wait as for a live owner.
 */
import { closeSync, existsSync, linkSync, mkdirSync, openSync, readFileSync, readdirSync, rmSync, statSync, writeSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { CniError, ErrorCode } from './errors';

const MARKER_STALE_MS = 10_000;
/** An empty lock file is a creator between open and write; older than this, it crashed there. */
const EMPTY_STALE_MS = 5_000;
export const DEFAULT_LOCK_TIMEOUT_MS = 30_000;

let selfIdentity: string | undefined;

/** `pid starttime` of this process (starttime from /proc/self/stat, in clock ticks since boot). */
function identity(): string {
  selfIdentity ??= `${process.pid} ${processStart('self') ?? 0}`;
  return selfIdentity;
}

/** Field 22 (starttime) of /proc/PID/stat, or undefined if the process is gone or a zombie. */
function processStart(pid: string): string | undefined {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
  } catch {
    return undefined;
  }
  // The command name (field 2) may contain spaces and parentheses: fields resume after the last ')'.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  if (fields[0] === 'Z' || fields[0] === 'X') return undefined;
  return fields[19];
}

function ownerAlive(owner: string): boolean {
  const [pid, start] = owner.split(' ');
  if (!/^\d+$/.test(pid)) return false;
  const current = processStart(pid);
  return current !== undefined && current === start;
}

function sleep(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

function readText(file: string): string | undefined {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
}

/**
 * Age of a file by its mtime, or by its ctime for a hard link (link() updates ctime; the lock's own mtime is
 * older). 0 if the file is gone.
 */
function ageMs(file: string, clock: 'mtimeMs' | 'ctimeMs' = 'mtimeMs'): number {
  try {
    return Date.now() - statSync(file)[clock];
  } catch {
    return 0;
  }
}

export function lockPath(stateDir: string, deviceID: string): string {
  return join(stateDir, 'locks', `${encodeURIComponent(deviceID)}.lock`);
}

export class DeviceLock {
  private released = false;

  private constructor(
    readonly file: string,
    private readonly content: string,
  ) {}

  /** Waits for the lock of `deviceID`; code 11 (try again later) after `timeoutMs`. */
  static acquire(stateDir: string, deviceID: string, timeoutMs = DEFAULT_LOCK_TIMEOUT_MS): DeviceLock {
    const file = lockPath(stateDir, deviceID);
    const content = `${identity()}\n`;
    const deadline = Date.now() + timeoutMs;
    let wait = 2;
    for (;;) {
      if (tryCreate(file, content)) return new DeviceLock(file, content);
      const owner = readText(file);
      if (owner === undefined) continue; // released between our open and read
      const dead = owner === '' ? ageMs(file) > EMPTY_STALE_MS : !ownerAlive(owner.trim());
      if (dead && breakStale(file, owner, MARKER_STALE_MS)) continue;
      if (Date.now() >= deadline) {
        throw new CniError(
          ErrorCode.TryAgainLater,
          `device ${JSON.stringify(deviceID)} is busy: another operation holds its lock`,
          `lock ${file} held by pid ${owner.split(' ')[0]} for more than ${timeoutMs} ms`,
        );
      }
      sleep(wait);
      wait = Math.min(wait * 2, 50);
    }
  }

  /** Removes the lock if it is still ours. Idempotent. */
  release(): void {
    if (this.released) return;
    this.released = true;
    if (readText(this.file) === this.content) rmSync(this.file, { force: true });
  }
}

function tryCreate(file: string, content: string): boolean {
  let fd: number;
  try {
    fd = openSync(file, 'wx', 0o644);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') return false;
    if (code === 'ENOENT') {
      mkdirOrFail(dirname(file));
      return tryCreate(file, content);
    }
    throw ioError(`cannot create lock ${file}`, err);
  }
  try {
    writeSync(fd, content);
  } finally {
    closeSync(fd);
  }
  return true;
}

function mkdirOrFail(dir: string): void {
  try {
    mkdirSync(dir, { recursive: true, mode: 0o755 });
  } catch (err) {
    throw ioError(`cannot create ${dir}`, err);
  }
}

function ioError(msg: string, err: unknown): CniError {
  return new CniError(ErrorCode.IoFailure, msg, (err as Error).message);
}

/**
 * Removes `file` if it still holds `owner`'s lock (see the invariants above). False when another breaker is at
 * work (its marker is younger than `markerStaleMs`), so the caller waits like for a live owner.
 */
function breakStale(file: string, owner: string, markerStaleMs: number): boolean {
  const marker = `${file}.break-${owner.trim().replace(/\s+/g, '-') || 'empty'}`;
  try {
    linkSync(file, marker);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'EEXIST') return true; // the lock went away: try again at once
    if (ageMs(marker, 'ctimeMs') <= markerStaleMs) return false;
    rmSync(marker, { force: true });
    return true;
  }
  try {
    if (readText(marker) === owner) rmSync(file, { force: true });
  } finally {
    rmSync(marker, { force: true });
  }
  return true;
}

/**
 * Breaks every lock whose owner is dead and removes break markers older than `markerStaleMs`; returns how many
 * lock files and markers went. GC runs it.
 */
export function removeStaleLocks(stateDir: string, markerStaleMs = MARKER_STALE_MS): number {
  const dir = join(stateDir, 'locks');
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return 0;
  }
  let removed = 0;
  for (const name of names) {
    const file = join(dir, name);
    if (name.includes('.lock.break-')) {
      if (ageMs(file, 'ctimeMs') > markerStaleMs) {
        rmSync(file, { force: true });
        removed++;
      }
    } else if (name.endsWith('.lock')) {
      const owner = readText(file);
      if (owner === undefined) continue;
      const dead = owner === '' ? ageMs(file) > EMPTY_STALE_MS : !ownerAlive(owner.trim());
      if (!dead) continue;
      // Twice at most: the first try may only clear an abandoned marker.
      for (let attempt = 0; attempt < 2 && existsSync(file); attempt++) breakStale(file, owner, markerStaleMs);
      if (!existsSync(file)) removed++;
    }
  }
  return removed;
}
