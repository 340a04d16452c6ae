/**
 * A pod only gets its own device. The deviceID in the network configuration is the tenant's word (a
 * NetworkAttachmentDefinition without the resourceName annotation passes its own through Multus); which pod holds
 * which device is the kubelet's, written in its device-manager checkpoint. So when the runtime says which pod
 * this is (`K8S_POD_UID` in CNI_ARGS: Multus always sends it), ADD checks, before anything changes, that the
 * checkpoint assigns `deviceID` to that pod under a `macvtap.network.kubevirt.io/*` resource.
 *
 * The host configuration's `ownership` decides what a failed check does: `enforce` refuses (code 109 for a device
 * that is another pod's or no pod's, 110 when the checkpoint is missing, unreadable, unsafe or corrupt: never
 * "allowed"), `warn` logs and goes on, `off` does not read the checkpoint. The file is read once per ADD.
 */
import { CheckpointError, checkpointPath, holdersOf, readCheckpoint, type DeviceCheckpoint } from '../kubelet/checkpoint';
import type { Environment } from './config';
import { CniError, ErrorCode } from './errors';
import type { HostConfig } from './host-config';
import { log } from './log';

export type OwnershipOutcome = 'owned' | 'unchecked' | 'warned';

/** Checks that the pod of `env` holds `deviceID`; throws code 109/110 under `enforce`. */
export function checkOwnership(env: Environment, deviceID: string, host: HostConfig): OwnershipOutcome {
  const podUID = env.args.values.get('K8S_POD_UID');
  if (host.ownership === 'off' || podUID === undefined || podUID === '') return 'unchecked';
  const file = checkpointPath(host.kubeletRoot);
  const refuse = (err: CniError): OwnershipOutcome => {
    if (host.ownership === 'enforce') throw err;
    log.warn(`ownership not enforced (ownership: warn): ${err.message}`, { details: err.details, podUID });
    return 'warned';
  };
  let checkpoint: DeviceCheckpoint;
  try {
    checkpoint = readCheckpoint(file);
  } catch (err) {
    if (!(err instanceof CheckpointError)) throw err;
    return refuse(
      new CniError(
        ErrorCode.OwnershipUnverifiable,
        `cannot verify that this pod holds device ${JSON.stringify(deviceID)}: ${err.message}`,
        `the kubelet's device-manager checkpoint (${err.problem}) is needed under the host's "ownership": "enforce"`,
      ),
    );
  }
  const holders = holdersOf(checkpoint, deviceID);
  if (holders.some((h) => h.podUID === podUID)) return 'owned';
  if (holders.length) {
    // The other pod is named only in the node's log, not in the answer the tenant may see.
    log.warn('deviceID is assigned to another pod', { podUID, holders: holders.map((h) => h.podUID) });
    return refuse(
      new CniError(
        ErrorCode.NotPodsDevice,
        `device ${JSON.stringify(deviceID)} is assigned to another pod`,
        `the kubelet (${file}) assigned it to a different pod than K8S_POD_UID ${podUID}; request the resource in the pod spec and let Multus pass the allocated deviceID`,
      ),
    );
  }
  return refuse(
    new CniError(
      ErrorCode.NotPodsDevice,
      `device ${JSON.stringify(deviceID)} is not assigned to this pod`,
      `the kubelet (${file}) assigned it to no pod under a macvtap.network.kubevirt.io resource; request the resource in the pod spec`,
    ),
  );
}
