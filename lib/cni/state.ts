/**
 * The CNI's use of the node state (lib/state): opening the state directory, taking a device's lock for a verb, and
 * the CNI error each state failure becomes:
 *   - I/O failures (ENOSPC, EROFS, EACCES, EIO, ...) and unsafe directories: code 5, naming the path and errno;
 *   - a lock still held when the wait ends: code 11, naming the holder;
 *   - an ID that cannot name a state file: code 7 (deviceID, from the config) or 4 (from the environment).
 */
import { DeviceLock, InvalidStateName, LockTimeout, NodeState, StateError } from '../state';
import type { Environment } from './config';
import { CniError, ErrorCode } from './errors';
import { log } from './log';

export function openState(stateDir: string): NodeState {
  return NodeState.open(stateDir, { log });
}

/** Takes `deviceID`'s lock for `verb` (every verb takes it), waiting at most `timeoutMs`. */
export function lockDevice(state: NodeState, deviceID: string, verb: string, env: Environment | undefined, timeoutMs: number): DeviceLock {
  const detail = env ? `container ${env.containerId} ${env.ifname}` : undefined;
  return state.lock(deviceID, { holder: { program: 'macvtap', verb, detail }, timeoutMs });
}

/** The CniError for a failure of the state module, or undefined if `err` is not one. */
export function stateFailure(err: unknown): CniError | undefined {
  if (err instanceof LockTimeout) {
    return new CniError(
      ErrorCode.TryAgainLater,
      err.message,
      err.holder ? `held by ${err.holder}` : 'the holder did not describe itself (it may have just taken the lock)',
    );
  }
  if (err instanceof InvalidStateName) {
    return new CniError(
      err.field === 'deviceID' ? ErrorCode.InvalidConfig : ErrorCode.InvalidEnvironment,
      `${err.field === 'deviceID' ? 'deviceID' : err.field === 'containerID' ? 'CNI_CONTAINERID' : 'CNI_IFNAME'} ${err.message.slice(err.field.length + 1)}`,
    );
  }
  if (err instanceof StateError) return new CniError(ErrorCode.IoFailure, err.message, `state directory error ${err.code} at ${err.path}`);
  return undefined;
}
