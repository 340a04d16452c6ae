/**
 * Who holds a device, by its attachment records checked against the kernel, before ADD takes it:
 *   - a record of this very attachment (an ADD or DEL of it crashed): finish putting the link back first, so ADD
 *     starts from the host link with its real settings (never the previous run's MAC/MTU as "original");
 *   - another container's record whose link is still in its namespace: the device is taken (code 11);
 *   - another container's record whose sandbox is gone or whose link left it: stale; finish its restore if the
 *     link is in the host, and drop it.
 * Temp files of writers that died (a crash between write and rename) are recovered first. The caller holds the
 * device's lock.
 */
import type { Netns } from '../netlink';
import type { AttachmentKey, AttachmentRecord, NodeState } from '../state';
import { CniError, ErrorCode } from './errors';
import { log } from './log';
import { openIfAlive } from './netns';
import { finishRelease } from './release';

function sameKey(a: AttachmentKey, b: AttachmentKey): boolean {
  return a.deviceID === b.deviceID && a.containerID === b.containerID && a.ifname === b.ifname;
}

/** True if the record's link is in its namespace: that namespace exists and has the recorded macvtap. */
export function stillAttached(rec: AttachmentRecord): boolean {
  const ns = openIfAlive(rec.netns);
  if (!ns) return false;
  try {
    const link = ns.getLinkSync(rec.ifindex);
    return link !== null && link.kind === 'macvtap' && link.parentIndex === rec.lowerIndex;
  } finally {
    ns.close();
  }
}

/** Settles the device's records for `self` (see above); throws code 11 if another live attachment holds it. */
export function settleHolders(state: NodeState, host: Netns, self: AttachmentKey): void {
  state.attachments.recover(self.deviceID);
  const records = state.attachments.ofDevice(self.deviceID);
  const live = records.find((r) => !sameKey(r, self) && stillAttached(r));
  if (live) {
    throw new CniError(
      ErrorCode.TryAgainLater,
      `device ${JSON.stringify(self.deviceID)} is still attached to container ${live.containerID}`,
      `its macvtap is ${live.ifname} (ifindex ${live.ifindex}) in ${live.netns}; DEL that attachment first`,
    );
  }
  for (const rec of records) {
    const outcome = finishRelease(host, rec, 'settle');
    state.attachments.remove(rec);
    log.warn(
      sameKey(rec, self) ? 'finished an interrupted operation of this attachment' : 'dropped the stale record of another container',
      {
        container: rec.containerID,
        ifname: rec.ifname,
        outcome,
      },
    );
  }
}
