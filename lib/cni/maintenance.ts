/**
 * GC and STATUS (CNI 1.1.0).
 *
 * GC: what this plugin keeps per attachment is the attachment record and, while the sandbox lives, the macvtap
 * inside it. For every record of this network whose (containerID, ifname) is not in `cni.dev/valid-attachments`,
 * GC returns the macvtap to the host (as DEL does) and drops the record; it also breaks locks left by crashed
 * invocations. It never deletes host links or allocation records: those belong to the device plugin.
 *
 * STATUS: ready (exit 0, no output) when ADD could run: netlink answers, the state directory is writable, /dev
 * accepts tap nodes. Code 50 otherwise. Code 51 when, in addition, a device attached on this network has lost
 * its lower device (the attached container has no connectivity and the device cannot be recreated).
 */
import { accessSync, constants, existsSync, mkdirSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { Netns } from '../netlink/netns';
import { AttachmentStore } from './attachments';
import type { NetConf } from './config';
import { readAllocation } from './device';
import { release } from './del';
import { CniError, describeError, ErrorCode } from './errors';
import { DeviceLock, removeStaleLocks } from './lock';
import { log } from './log';

const GC_LOCK_TIMEOUT_MS = 5_000;

export async function cmdGc(conf: NetConf): Promise<void> {
  const valid = new Set((conf.validAttachments ?? []).map((a) => `${a.containerID}\0${a.ifname}`));
  const attachments = new AttachmentStore(conf.stateDir);
  const failures: string[] = [];
  let released = 0;
  for (const stale of attachments.list()) {
    if (stale.network !== conf.name || valid.has(`${stale.containerID}\0${stale.ifname}`)) continue;
    let lock: DeviceLock;
    try {
      lock = DeviceLock.acquire(conf.stateDir, stale.deviceID, GC_LOCK_TIMEOUT_MS);
    } catch (err) {
      failures.push(`${stale.deviceID}: ${describeError(err)}`);
      continue;
    }
    try {
      const current = attachments.read(stale.deviceID);
      // Re-read under the lock: an ADD may have attached the device to a valid container meanwhile.
      if (!current || current.containerID !== stale.containerID || current.ifname !== stale.ifname || current.network !== stale.network)
        continue;
      await release(current.deviceID, current.netns, current.ifname, current, conf.stateDir);
      attachments.remove(current.deviceID);
      released++;
      log.info(`GC released ${current.deviceID} (container ${current.containerID}, ${current.ifname})`);
    } catch (err) {
      failures.push(`${stale.deviceID}: ${describeError(err)}`);
    } finally {
      lock.release();
    }
  }
  const locks = removeStaleLocks(conf.stateDir);
  removeStaleTemp(attachments.dir);
  log.info(`GC of network ${conf.name}: released ${released} stale attachment(s), removed ${locks} stale lock(s)`);
  if (failures.length)
    throw new CniError(ErrorCode.GcFailed, `GC could not release ${failures.length} stale attachment(s)`, failures.join('; '));
}

/** Temp files of record writers that died between write and rename. */
function removeStaleTemp(dir: string): void {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return;
  }
  for (const name of names) {
    const m = /\.(\d+)\.tmp$/.exec(name);
    if (m && !existsSync(`/proc/${m[1]}`)) rmSync(join(dir, name), { force: true });
  }
}

export function cmdStatus(conf: NetConf): void {
  let host: Netns;
  try {
    host = Netns.current();
    host.getLinkSync(1);
  } catch (err) {
    throw new CniError(ErrorCode.NotAvailable, 'netlink is not usable', describeError(err));
  }
  try {
    try {
      const locks = join(conf.stateDir, 'locks');
      mkdirSync(locks, { recursive: true, mode: 0o755 });
      accessSync(locks, constants.W_OK);
    } catch (err) {
      throw new CniError(ErrorCode.NotAvailable, `state directory ${conf.stateDir} is not writable`, describeError(err));
    }
    try {
      accessSync('/dev', constants.W_OK);
    } catch (err) {
      throw new CniError(ErrorCode.NotAvailable, '/dev is not writable: tap device nodes cannot be made', describeError(err));
    }
    const lost: string[] = [];
    for (const att of new AttachmentStore(conf.stateDir).list()) {
      if (att.network !== conf.name) continue;
      const record = readAllocation(conf.stateDir, att.deviceID);
      if (record && !host.getLinkSync(record.lowerDevice))
        lost.push(`${att.deviceID} (lower device ${record.lowerDevice}, container ${att.containerID})`);
    }
    if (lost.length) {
      throw new CniError(ErrorCode.NotAvailableDegraded, `lower device missing for ${lost.length} attached device(s)`, lost.join('; '));
    }
  } finally {
    host.close();
  }
}
