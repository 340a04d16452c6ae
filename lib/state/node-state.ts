/**
 * The node's state directory as one object: its record stores and its per-device locks. Layout:
 *
 *   <stateDir>/                  0700 root (default /var/lib/macvtap-cni, a hostPath shared by both programs)
 *     allocations/<deviceID>.json                      the device plugin's answers (Allocate writes, both read)
 *     attachments/<deviceID>+<containerID>+<ifname>.json  which container holds a device (the CNI writes)
 *     locks/<deviceID>.lock                             flock(2) per device; exists while held
 *     <any record>.<pid>.tmp                            a writer's temp file before its rename
 */
import type { Logger } from '../util/log';
import { AllocationStore } from './allocations';
import { AttachmentStore } from './attachments';
import { StateDir, type StateSubdir, type SubdirName } from './dir';
import { DeviceLock, type LockHolder, type LockOptions } from './lock';
import { deviceIdProblem } from './names';

/** Default host state directory. */
export const DEFAULT_STATE_DIR = '/var/lib/macvtap-cni';
/** Environment variable overriding it (the runtime's or the DaemonSet's environment: the node admin's). */
export const STATE_DIR_ENV = 'MACVTAP_CNI_STATE_DIR';

export class NodeState {
  readonly allocations: AllocationStore;
  readonly attachments: AttachmentStore;

  private constructor(
    private readonly dir: StateDir,
    private readonly log: Logger,
  ) {
    this.allocations = new AllocationStore(dir, 'allocations', log);
    this.attachments = new AttachmentStore(dir, 'attachments', log);
  }

  /**
   * Opens the state directory (creating it 0700 when missing). Throws UnsafeStateDir for a symlink, a directory
   * not owned by root or writable by others, and StateError for I/O failures.
   */
  static open(dirPath: string, opts: { log: Logger }): NodeState {
    return new NodeState(StateDir.open(dirPath), opts.log);
  }

  get path(): string {
    return this.dir.path;
  }

  private locks(): StateSubdir {
    return this.dir.subdir('locks', true) as StateSubdir;
  }

  /** Takes `deviceID`'s lock, sleeping while another process holds it (the CNI's synchronous wait). */
  lock(deviceID: string, opts: LockOptions): DeviceLock {
    return DeviceLock.acquire(this.locks(), deviceID, opts);
  }

  /** The same, without blocking the event loop (the device plugin's Allocate). */
  async lockAsync(deviceID: string, opts: LockOptions): Promise<DeviceLock> {
    return await DeviceLock.acquireAsync(this.locks(), deviceID, opts);
  }

  /** The lock if it is free right now, else undefined. */
  tryLock(deviceID: string, holder: LockHolder): DeviceLock | undefined {
    return DeviceLock.tryAcquire(this.locks(), deviceID, holder);
  }

  /**
   * Removes lock files nobody holds (left by holders that died: harmless, but an operator should not have to
   * wonder) and the break markers of the previous, PID-file based lock. Returns how many files went.
   */
  sweepLocks(holder: LockHolder): number {
    const dir = this.dir.subdir('locks', false);
    if (!dir) return 0;
    let removed = 0;
    for (const name of dir.list()) {
      if (/\.lock\.break-/.test(name)) {
        if (dir.discard(name)) removed++;
        continue;
      }
      if (!name.endsWith('.lock')) continue;
      const deviceID = name.slice(0, -'.lock'.length);
      if (deviceIdProblem(deviceID)) continue;
      let lock: DeviceLock | undefined;
      try {
        lock = DeviceLock.tryAcquire(dir, deviceID, holder);
      } catch (err) {
        this.log.warn('cannot check a lock file', { path: dir.file(name), err });
        continue;
      }
      if (!lock) continue;
      lock.release();
      removed++;
      this.log.debug('removed an unused lock file', { path: dir.file(name) });
    }
    return removed;
  }

  /**
   * Throws StateError unless the state directory takes new files right now (the CNI's STATUS: locks and
   * attachments; the device plugin's start: locks and allocations): each subdirectory is created if missing and a
   * probe file written into it and removed.
   */
  checkWritable(names: readonly SubdirName[] = ['locks', 'attachments']): void {
    for (const name of names) (this.dir.subdir(name, true) as StateSubdir).probeWrite();
  }

  close(): void {
    this.dir.close();
  }
}
