/**
 * GC (CNI 1.1.0): what this plugin keeps per attachment is the attachment record and, while the sandbox lives,
 * the macvtap inside it. For every record of this network whose (containerID, ifname) is not in
 * `cni.dev/valid-attachments`, GC returns the macvtap to the host as DEL does (the same release), then drops the
 * record. It also finishes the writes of record writers that died, and removes lock files nobody holds. It never
 * deletes host links or allocation records: those belong to the device plugin.
 *
 * The network `name` and the valid-attachments list come from whoever wrote the network configuration (a tenant
 * may reuse another tenant's name), so neither is enough to take a device: GC never releases an attachment whose
 * pod namespace still exists with the recorded link in it, whatever the list says. Those are kept and logged.
 */
import { Netns } from '../netlink';
import type { AttachmentRecord } from '../state';
import { faultPoint } from '../util/faults';
import type { NetConf } from './config';
import { CniError, describeError, ErrorCode } from './errors';
import { log } from './log';
import { stillAttached } from './holders';
import { finishRelease } from './release';
import { Scope } from './scope';
import { lockDevice, openState } from './state';

const HOLDER = { program: 'macvtap', verb: 'GC' };

export function cmdGc(conf: NetConf): void {
  const valid = new Set((conf.validAttachments ?? []).map((a) => `${a.containerID}\0${a.ifname}`));
  const stale = (r: AttachmentRecord): boolean => r.network === conf.name && !valid.has(`${r.containerID}\0${r.ifname}`);
  const scope = new Scope();
  const failures: string[] = [];
  let released = 0;
  let kept = 0;
  try {
    const state = scope.own(openState(conf.stateDir));
    const host = scope.own(Netns.current());
    // Devices with a stale record or a dead writer's temp file; each is handled under its own lock.
    const devices = new Set([
      ...state.attachments
        .list()
        .filter(stale)
        .map((r) => r.deviceID),
      ...state.attachments.devicesWithTemp(),
    ]);
    for (const deviceID of devices) {
      const device = new Scope();
      try {
        device.own(lockDevice(state, deviceID, 'GC', undefined, Math.min(conf.lockTimeoutMs, 5_000)));
        state.attachments.recover(deviceID);
        // Re-read under the lock: an ADD may have attached the device to a valid container meanwhile.
        for (const rec of state.attachments.ofDevice(deviceID).filter(stale)) {
          if (stillAttached(rec)) {
            kept++;
            log.warn('GC kept an attachment not in valid-attachments: its pod namespace still has the link', {
              deviceID,
              container: rec.containerID,
              ifname: rec.ifname,
              netns: rec.netns,
            });
            continue;
          }
          finishRelease(host, rec, 'GC');
          state.attachments.remove(rec);
          faultPoint('GC', 'dropped');
          released++;
          log.info('GC released a stale attachment', { deviceID, container: rec.containerID, ifname: rec.ifname });
        }
      } catch (err) {
        failures.push(`${deviceID}: ${describeError(err)}`);
      } finally {
        device.close();
      }
    }
    const locks = state.sweepLocks(HOLDER);
    log.info('GC done', { network: conf.name, released, kept, locksRemoved: locks });
  } finally {
    scope.close();
  }
  if (failures.length)
    throw new CniError(ErrorCode.GcFailed, `GC could not release ${failures.length} stale attachment(s)`, failures.join('; '));
}
