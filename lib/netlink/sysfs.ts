/**
 * sysfs as one namespace sees it. `/sys` shows the network namespace of whoever mounted it, so for another
 * namespace the addon mounts a sysfs from inside it: once, detached (fsopen/fsmount, Linux 5.2+), kept until
 * close(); every read is then one openat() on that mount. Where the new mount API is missing or refused, each
 * read mounts sysfs in a private mount namespace from a short-lived task instead.
 */
import * as fs from 'node:fs';
import { NetlinkError } from './errors';
import { native } from './native';

/** Errors meaning "no fsopen/fsmount here", not "the read failed". */
const MOUNT_API_MISSING = ['ENOSYS', 'EPERM', 'EINVAL', 'ENODEV', 'EOPNOTSUPP'];

export class NamespaceSysfs {
  private mountFd: number | undefined;
  private mountApiMissing = false;

  constructor(
    private readonly nsFd: number,
    private readonly isCurrent: boolean,
  ) {}

  /** Reads `relative` (e.g. `class/net/eth0/ifindex`) under this namespace's sysfs. */
  read(relative: string, operation: string): string {
    if (this.isCurrent) return readHere(`/sys/${relative}`, operation);
    const addon = native();
    if (this.mountFd === undefined && !this.mountApiMissing) {
      try {
        this.mountFd = addon.sysfsMount(this.nsFd);
      } catch (err) {
        if (!(err instanceof NetlinkError) || !MOUNT_API_MISSING.includes(err.code)) throw err;
        this.mountApiMissing = true;
      }
    }
    if (this.mountFd === undefined) return addon.sysfsRead(this.nsFd, `/sys/${relative}`);
    return addon.readAt(this.mountFd, relative);
  }

  /** Releases the mount (and with it the namespace reference it holds). */
  close(): void {
    if (this.mountFd !== undefined) native().closeFd(this.mountFd);
    this.mountFd = undefined;
  }
}

function readHere(file: string, operation: string): string {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    throw new NetlinkError(`${operation} ${file}: ${e.message}`, e.errno ? -e.errno : 2, e.code ?? 'ENOENT', operation, file);
  }
}
