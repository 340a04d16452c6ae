/**
 * DEL: return the device's macvtap to the host namespace under its host name, with its pre-ADD settings, so the
 * next ADD for the device (a recreated sandbox: same deviceID, no new Allocate) finds it there.
 *
 * The attachment record is a redo log: DEL drops it only after the link is back and restored, so a DEL retried
 * after any crash finishes the job. Idempotent: a second DEL, a DEL without CNI_NETNS and a DEL whose namespace
 * is gone all succeed. A DEL only ever acts on its own attachment (device, container ID, ifname): a late DEL of an
 * old sandbox leaves a device that a newer sandbox holds alone. Without a record (kubevirt's CNI attached the
 * device), the link named CNI_IFNAME in CNI_NETNS goes back as `mvt` + hash, reset.
 */
import { Netns, type Link } from '../netlink';
import type { AttachmentKey, NodeState } from '../state';
import { faultPoint } from '../util/faults';
import type { Environment, NetConf } from './config';
import { CniError, describeError, ErrorCode } from './errors';
import { stillAttached } from './holders';
import { log } from './log';
import { checkDelNetns } from './netns';
import { finishRelease, releaseUnrecorded, type ReleaseOutcome } from './release';
import { Scope } from './scope';
import { lockDevice, openState } from './state';

export function cmdDel(env: Environment, conf: NetConf): void {
  checkDelNetns(env.netns);
  const scope = new Scope();
  try {
    const state = scope.own(openState(conf.stateDir));
    const host = scope.own(Netns.current());
    // Find the device: the config names it (Multus always does), else this attachment's record does.
    const deviceID = conf.deviceID ?? recordedDevice(state, env);
    if (deviceID === undefined) {
      log.info('no deviceID in the configuration and no attachment record: nothing to release');
      return;
    }
    const key: AttachmentKey = { deviceID, containerID: env.containerId, ifname: env.ifname };
    scope.own(lockDevice(state, deviceID, 'DEL', env, conf.lockTimeoutMs));
    faultPoint('DEL', 'locked');
    state.attachments.recover(deviceID);
    const record = state.attachments.read(key);
    // Return it: as recorded, or (no record) as the device plugin names it.
    let outcome: ReleaseOutcome;
    try {
      outcome = record
        ? finishRelease(host, record, 'DEL', [env.netns, record.netns])
        : releaseUnrecorded(host, env.netns, env.ifname, deviceID, 'DEL', (link) => notTheDevice(state, env, deviceID, link));
    } catch (err) {
      throw new CniError(
        ErrorCode.DelFailed,
        `cannot return ${env.ifname} of device ${deviceID} to the host`,
        `${describeError(err)}; the record is kept for the retry`,
      );
    }
    // Only now the record may go.
    if (record) state.attachments.remove(record);
    faultPoint('DEL', 'dropped');
    log.info('released', { outcome, recorded: record !== undefined });
  } finally {
    scope.close();
  }
}

/**
 * Why the unrecorded `link` in this pod cannot be `deviceID`'s macvtap, or undefined. The deviceID is the
 * network configuration's (a tenant's) word: renaming the pod's link to another device's host name would make the
 * next ADD of that device hand out this link.
 */
function notTheDevice(state: NodeState, env: Environment, deviceID: string, link: Link): string | undefined {
  const allocation = state.allocations.read(deviceID);
  if (allocation && allocation.ifindex !== link.index)
    return `its ifindex ${link.index} is not the ifindex ${allocation.ifindex} allocated to device ${deviceID}`;
  const other = state.attachments.ofDevice(deviceID).find((r) => r.containerID !== env.containerId && stillAttached(r));
  if (other) return `device ${deviceID} is attached to another container (${other.containerID})`;
  return undefined;
}

/** The device of this container's attachment on this interface, from the records (DEL without deviceID). */
function recordedDevice(state: NodeState, env: Environment): string | undefined {
  return state.attachments.list().find((r) => r.containerID === env.containerId && r.ifname === env.ifname)?.deviceID;
}
