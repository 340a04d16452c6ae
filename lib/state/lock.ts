/**
 * Per-device locks: `flock(2)` on `locks/<deviceID>.lock`, taken by every CNI verb and by the device plugin's
 * Allocate, so two operations on one device never interleave while different devices proceed in parallel.
 *
 * The kernel owns the lock: it is released when its holder closes the file or dies, whatever the file holds, so
 * there are no staleness rules, PID checks or break markers. The holder writes a one-line description of itself
 * into the file after locking (pid, program, verb, since) for a waiter's timeout message and for operators; it is
 * informational only and never decides anything (on a full disk it may be empty).
 *
 * Lock files exist only while used: the holder unlinks the file before closing it. A waiter that gets the lock on
 * a file that was meanwhile unlinked (or replaced) sees that the name no longer leads to its inode and starts
 * again, so two processes never both hold "the" lock through different inodes.
 *
 * Waiting is bounded and sleeps between attempts (2 ms doubling to 20 ms): the CNI's synchronous wait blocks its
 * thread in Atomics.wait, the daemon's asynchronous one uses timers and never blocks its event loop.
 */
import * as fs from 'node:fs';
import { LockTimeout } from './errors';
import type { StateSubdir } from './dir';
import { lockName } from './names';

export const DEFAULT_LOCK_TIMEOUT_MS = 30_000;
const FIRST_SLEEP_MS = 2;
const MAX_SLEEP_MS = 20;

/** Who is locking, written into the lock file. */
export interface LockHolder {
  /** `macvtap`, `macvtap-deviceplugin`. */
  program: string;
  /** `ADD`, `DEL`, `Allocate`, ... */
  verb: string;
  /** Extra detail for operators (e.g. the container ID). */
  detail?: string;
}

export interface LockOptions {
  holder: LockHolder;
  /** Give up after this long with a LockTimeout. Default DEFAULT_LOCK_TIMEOUT_MS. */
  timeoutMs?: number;
}

/** One attempt: opened, locked, and still the file at the lock's name. */
function attempt(dir: StateSubdir, name: string, fd: number | undefined): { fd: number; locked: boolean } {
  const open = fd ?? dir.openLockFile(name);
  try {
    if (!dir.tryLock(open, name)) return { fd: open, locked: false };
  } catch (err) {
    fs.closeSync(open);
    throw err;
  }
  if (dir.isSameFile(name, open)) return { fd: open, locked: true };
  // Locked an inode its last holder unlinked on release: drop it and open the name afresh.
  fs.closeSync(open);
  return attempt(dir, name, undefined);
}

function describeHolder(holder: LockHolder): string {
  const line = { pid: process.pid, program: holder.program, verb: holder.verb, since: new Date().toISOString(), detail: holder.detail };
  return `${JSON.stringify(line)}\n`;
}

/** Control characters (C0 and DEL): the description is one line, whatever a file holds. */
// eslint-disable-next-line no-control-regex -- matching control characters is the point
const CONTROL = /[\u0000-\u001f\u007f]/g;

/** The holder's description in a lock file, as one line of text, if it wrote a readable one. */
function readHolder(fd: number): string | undefined {
  const buf = Buffer.alloc(512);
  let n: number;
  try {
    n = fs.readSync(fd, buf, 0, buf.length, 0);
  } catch {
    return undefined;
  }
  try {
    const h = JSON.parse(buf.subarray(0, n).toString('utf8')) as Record<string, unknown>;
    const str = (v: unknown): string | undefined => (typeof v === 'string' ? v.slice(0, 100) : undefined);
    if (typeof h.pid !== 'number') return undefined;
    const what = [str(h.program), str(h.verb), str(h.detail)].filter(Boolean).join(' ');
    return `pid ${h.pid}${what ? ` (${what})` : ''}${str(h.since) ? ` since ${str(h.since)}` : ''}`.replace(CONTROL, '?');
  } catch {
    return undefined;
  }
}

/** A held per-device lock. Release it exactly once (a second release does nothing). */
export class DeviceLock {
  private fd: number | undefined;

  private constructor(
    private readonly dir: StateSubdir,
    readonly deviceID: string,
    private readonly name: string,
    fd: number,
    holder: LockHolder,
  ) {
    this.fd = fd;
    try {
      const text = Buffer.from(describeHolder(holder));
      fs.ftruncateSync(fd, 0);
      fs.writeSync(fd, text, 0, text.length, 0);
    } catch {
      // Informational only: a full or read-only disk must not fail (or stall) the operation.
    }
  }

  /** The lock file's path. */
  get path(): string {
    return this.dir.file(this.name);
  }

  /** Waits (sleeping) for the lock; throws LockTimeout after `timeoutMs`, StateError when the file cannot be used. */
  static acquire(dir: StateSubdir, deviceID: string, opts: LockOptions): DeviceLock {
    const wait = DeviceLock.attempts(dir, deviceID, opts);
    for (let step = wait.next(); ; step = wait.next()) {
      if (step.done) return step.value;
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, step.value);
    }
  }

  /** The same wait without blocking the event loop (the device plugin's). */
  static async acquireAsync(dir: StateSubdir, deviceID: string, opts: LockOptions): Promise<DeviceLock> {
    const wait = DeviceLock.attempts(dir, deviceID, opts);
    for (let step = wait.next(); ; step = wait.next()) {
      if (step.done) return step.value;
      // A plain timer: node:timers/promises would be one more module loaded at every CNI start (this file is in
      // the CNI's bundle).
      await new Promise<void>((resolve) => setTimeout(resolve, step.value));
    }
  }

  /**
   * The wait itself, for both drivers (as lib/netlink's operations have one generator and two drivers): tries
   * the lock, yields how many ms to sleep before the next try (backing off), returns the lock, or throws
   * LockTimeout once `timeoutMs` have passed.
   */
  private static *attempts(dir: StateSubdir, deviceID: string, opts: LockOptions): Generator<number, DeviceLock, void> {
    const name = lockName(deviceID);
    const timeout = opts.timeoutMs ?? DEFAULT_LOCK_TIMEOUT_MS;
    const start = nowMs();
    let sleep = FIRST_SLEEP_MS;
    let fd: number | undefined;
    for (;;) {
      const r = attempt(dir, name, fd);
      if (r.locked) return new DeviceLock(dir, deviceID, name, r.fd, opts.holder);
      fd = r.fd;
      const waited = nowMs() - start;
      if (waited >= timeout) throw DeviceLock.timedOut(dir, deviceID, name, fd, waited);
      yield Math.min(sleep, timeout - waited);
      sleep = Math.min(sleep * 2, MAX_SLEEP_MS);
    }
  }

  /** Takes the lock only if it is free right now; undefined otherwise (GC's sweep of unused lock files). */
  static tryAcquire(dir: StateSubdir, deviceID: string, holder: LockHolder): DeviceLock | undefined {
    const name = lockName(deviceID);
    const r = attempt(dir, name, undefined);
    if (r.locked) return new DeviceLock(dir, deviceID, name, r.fd, holder);
    fs.closeSync(r.fd);
    return undefined;
  }

  private static timedOut(dir: StateSubdir, deviceID: string, name: string, fd: number, waited: number): LockTimeout {
    const holder = readHolder(fd);
    fs.closeSync(fd);
    return new LockTimeout(deviceID, dir.file(name), waited, holder);
  }

  get held(): boolean {
    return this.fd !== undefined;
  }

  /** Unlinks the lock file (while still holding it) and closes it, which releases the lock. */
  release(): void {
    const fd = this.fd;
    if (fd === undefined) return;
    this.fd = undefined;
    try {
      if (this.dir.isSameFile(this.name, fd)) this.dir.discard(this.name);
    } finally {
      // Closing releases the lock (the kernel drops it with the last reference to the open file).
      fs.closeSync(fd);
    }
  }
}

/** Monotonic milliseconds. Not the global `performance`: its first use loads perf_hooks (a dozen modules). */
function nowMs(): number {
  return Number(process.hrtime.bigint()) / 1e6;
}
