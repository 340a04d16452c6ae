/**
 * DEL: return the device's macvtap to the host namespace under its host name, with its pre-ADD settings, so the
 * next ADD for the device (a recreated sandbox: same deviceID, no new Allocate) finds it there.
 *
 * Idempotent: a second DEL, a DEL without CNI_NETNS and a DEL whose namespace is gone all succeed. When the
 * namespace is gone the kernel has already destroyed the macvtap with it; the next ADD recreates it from the
 * device plugin's allocation record. A DEL only ever touches its own attachment (network, container ID, ifname):
 * a late DEL of an old sandbox leaves a device that a newer sandbox holds alone.
 */
import { Netns } from '../netlink/netns';
import { AttachmentRecord, AttachmentStore, isAttachment } from './attachments';
import type { Environment, NetConf } from './config';
import { hostNameOf, openIfAlive, readAllocation, releaseToHost } from './device';
import { CniError, describeError, ErrorCode } from './errors';
import { DeviceLock } from './lock';
import { log } from './log';

export async function cmdDel(env: Environment, conf: NetConf): Promise<void> {
  const attachments = new AttachmentStore(conf.stateDir);
  let deviceID = conf.deviceID;
  if (deviceID === undefined) {
    deviceID = attachments.find(conf.name, env.containerId, env.ifname)?.deviceID;
    if (deviceID === undefined) {
      log.info('no deviceID in the configuration and no attachment record: nothing to release');
      return;
    }
  }
  const lock = DeviceLock.acquire(conf.stateDir, deviceID);
  try {
    const found = attachments.read(deviceID);
    const att = isAttachment(found, conf.name, env.containerId, env.ifname) ? found : undefined;
    if (found && !att)
      log.info(`device ${deviceID} is attached to container ${found.containerID} (${found.ifname}), not this one: leaving its record`);
    await release(deviceID, env.netns || att?.netns || '', env.ifname, att, conf.stateDir);
    if (att) attachments.remove(deviceID);
  } finally {
    lock.release();
  }
}

/**
 * Returns the macvtap named `ifname` (or with the recorded ifindex) in namespace `nsPath` to the host, if the
 * namespace is still there and the link is ours. Shared by DEL and GC.
 */
export async function release(
  deviceID: string,
  nsPath: string,
  ifname: string,
  att: AttachmentRecord | undefined,
  stateDir: string,
): Promise<void> {
  const pod = openIfAlive(nsPath);
  if (!pod) return;
  const host = Netns.current();
  try {
    let link = pod.getLinkSync(ifname);
    if (att && (!link || link.index !== att.ifindex)) link = pod.getLinkSync(att.ifindex);
    if (!link) {
      log.info(`no ${ifname} in ${nsPath}: nothing to release`);
      return;
    }
    if (link.kind !== 'macvtap' || (att && link.index !== att.ifindex)) {
      log.warn(
        `${link.name} (ifindex ${link.index}, kind ${link.kind ?? 'none'}) in ${nsPath} is not this attachment's macvtap: leaving it`,
      );
      return;
    }
    const hostName = att?.hostName ?? (await hostNameOf(deviceID, readAllocation(stateDir, deviceID)));
    try {
      const how = releaseToHost(host, pod, link, hostName, att?.original);
      log.info(
        `${how === 'moved' ? 'returned' : 'deleted'} ${link.name} (ifindex ${link.index}) ${how === 'moved' ? `to the host as ${hostName}` : ''}`,
      );
    } catch (err) {
      throw new CniError(ErrorCode.DelFailed, `cannot return ${link.name} from ${nsPath} to the host as ${hostName}`, describeError(err));
    }
  } finally {
    host.close();
    pod.close();
  }
}
