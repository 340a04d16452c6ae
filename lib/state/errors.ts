/**
 * Errors of the state directory. Every failure of a file operation is a StateError naming the operation, the
 * full path and the errno name (`ENOSPC`, `EROFS`, ...), so a caller can report it as an I/O failure without
 * parsing messages. A state directory that is unsafe to use (a symlink, not root's, writable by others) is an
 * UnsafeStateDir; a lock that stayed busy is a LockTimeout; an ID that cannot name a file is an InvalidStateName.
 */
import { NetlinkError } from '../netlink/errors';

export class StateError extends Error {
  /** errno name, e.g. `ENOSPC`; `EUNSAFE` for an unsafe directory, `ECORRUPT` for an unreadable record. */
  readonly code: string;
  /** Full path concerned. */
  readonly path: string;
  /** What was being done, e.g. `write record`. */
  readonly operation: string;

  constructor(operation: string, path: string, code: string, why: string) {
    super(`${operation} ${path}: ${code === why ? code : `${code} (${why})`}`);
    this.name = 'StateError';
    this.operation = operation;
    this.path = path;
    this.code = code;
  }
}

/** An existing directory of the state tree that must not be used. */
export class UnsafeStateDir extends StateError {
  constructor(path: string, problem: string) {
    super('refuse state directory', path, 'EUNSAFE', problem);
    this.name = 'UnsafeStateDir';
  }
}

/** A per-device lock still held by someone else when the wait ended. */
export class LockTimeout extends Error {
  readonly deviceID: string;
  readonly path: string;
  /** The holder's self-description (pid, program, verb, since), when it wrote one. */
  readonly holder: string | undefined;
  readonly waitedMs: number;

  constructor(deviceID: string, path: string, waitedMs: number, holder: string | undefined) {
    super(`device ${JSON.stringify(deviceID)} is locked by another operation (waited ${Math.round(waitedMs)} ms for ${path})`);
    this.name = 'LockTimeout';
    this.deviceID = deviceID;
    this.path = path;
    this.holder = holder;
    this.waitedMs = waitedMs;
  }
}

/** An ID (device, container, interface) that cannot name a state file. Raised before the directory is touched. */
export class InvalidStateName extends RangeError {
  /** Which ID: `deviceID`, `containerID`, `ifname`. */
  readonly field: string;
  constructor(field: string, problem: string) {
    super(`${field} ${problem}`);
    this.name = 'InvalidStateName';
    this.field = field;
  }
}

/** A StateError from whatever a file operation threw (the addon's error class or Node's). */
export function stateError(err: unknown, operation: string, file: string): StateError {
  if (err instanceof StateError) return err;
  if (err instanceof NetlinkError) return new StateError(operation, file, err.code, err.message.slice(err.message.lastIndexOf(': ') + 2));
  const e = err as NodeJS.ErrnoException;
  if (typeof e?.code === 'string') {
    // Node's messages read "ENOSPC: no space left on device, write": keep the description.
    const why = /^[A-Z0-9]+: ([^,]+)/.exec(e.message)?.[1] ?? e.code;
    return new StateError(operation, file, e.code, why);
  }
  return new StateError(operation, file, 'EIO', err instanceof Error ? err.message : String(err));
}
