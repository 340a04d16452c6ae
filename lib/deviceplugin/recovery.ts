/**
 * The device plugin's start after a crash (SIGKILL, OOM, node power loss mid-Allocate): the allocation records are
 * reconciled with the kernel before anything is served, so a request that was never answered leaves nothing and
 * an answered one keeps its devices (see allocator.ts for the commit protocol).
 *
 *   - temp files under `allocations/` belong to a write that never completed: only this daemon writes there, and
 *     none of its writes is in flight yet, so each is an uncommitted record and is removed;
 *   - a macvtap named `mvn<hash>` (pending) is a request's work that had not been renamed yet. If the device's
 *     record names this very link (ifindex) and every record of its request is on disk, the request was committed:
 *     the link gets its host name `mvt<hash>` and goes up (a link that took that name meanwhile, e.g. a late CNI DEL
 *     returning the previous pod's link, is retired first). Otherwise it is unanswered work: the link, its tap node
 *     and the device's record of that request are removed.
 *   - a record whose link was retired (`mvr<its ifindex>` is there, its own name is not) belongs to a device that
 *     an unanswered Allocate was making anew: the kubelet had freed it, so the record is void and removed;
 *   - answered devices (`mvt` links and their records) are never touched here, whatever a record says.
 */
import * as fs from 'node:fs';
import { committedNameOf } from '../naming';
import { charDeviceOf, type Link, NetlinkError, type Netns } from '../netlink';
import type { AllocationRecord, NodeState } from '../state';
import { errorMessage, type Logger } from '../util/log';
import { isRetired } from './retired';

export interface RecoveryOptions {
  netns: Netns;
  state: NodeState;
  log: Logger;
  devDir: string;
  /** Retires (renames `mvr<ifindex>`, queues for deletion) a link. */
  retire(link: Link): Promise<void>;
  lock(deviceID: string): Promise<{ release(): void }>;
}

export interface RecoveryReport {
  /** Device IDs of committed requests whose renames were finished. */
  finished: string[];
  /** Pending links removed (unanswered work). */
  removed: string[];
  /** Device IDs whose record named a link that an unanswered Allocate had retired. */
  superseded: string[];
  /** Temp files removed. */
  temps: number;
}

export async function recoverAllocations(opts: RecoveryOptions): Promise<RecoveryReport> {
  const { netns, state, log } = opts;
  const report: RecoveryReport = { finished: [], removed: [], superseded: [], temps: state.allocations.sweepTemp() };
  const links = await netns.listLinks();
  const pending = links.filter((l) => l.kind === 'macvtap' && committedNameOf(l.name) !== undefined);
  const retired = new Set(links.filter(isRetired).map((l) => l.index));
  if (pending.length === 0 && retired.size === 0) return report;
  const byName = new Map(links.map((l) => [l.name, l]));
  const records = new Map<string, AllocationRecord>();
  const sizes = new Map<string, number>();
  for (const id of state.allocations.list()) {
    const rec = state.allocations.read(id);
    if (!rec) continue;
    records.set(rec.linkName, rec);
    if (rec.request) sizes.set(rec.request.id, (sizes.get(rec.request.id) ?? 0) + 1);
  }
  /** The record's own link (its name with its ifindex) is not in the kernel. */
  const linkGone = (rec: AllocationRecord): boolean => byName.get(rec.linkName)?.index !== rec.ifindex;
  for (const link of pending) {
    const hostName = committedNameOf(link.name) as string;
    const rec = records.get(hostName);
    records.delete(hostName);
    const mine = rec !== undefined && rec.ifindex === link.index && rec.request !== undefined;
    const committed = mine && sizes.get(rec.request?.id as string) === rec.request?.size;
    const lock = rec ? await opts.lock(rec.deviceID) : undefined;
    try {
      if (committed) {
        await finishCommitted(opts, link, hostName);
        report.finished.push(rec.deviceID);
        log.info('finished an Allocate that was answered before a crash', { deviceID: rec.deviceID, link: hostName, ifindex: link.index });
        continue;
      }
      await removePending(opts, link);
      // The device's record goes when it is this request's, or an earlier one whose link is gone (the device was
      // being allocated anew: the kubelet had freed it).
      const drop = rec !== undefined && (mine || linkGone(rec));
      if (drop) await state.allocations.removeAsync(rec.deviceID);
      report.removed.push(link.name);
      log.info('removed the work of an Allocate that was never answered', {
        link: link.name,
        ifindex: link.index,
        deviceID: rec?.deviceID,
        record: drop ? 'removed' : 'none',
      });
    } catch (err) {
      log.error('cannot reconcile a pending link with its record', { link: link.name, ifindex: link.index, err: errorMessage(err) });
    } finally {
      lock?.release();
    }
  }
  // A record whose link was retired (renamed mvr<ifindex>) by an Allocate that never committed names a link that
  // is no more the device's: it is void.
  for (const rec of records.values()) {
    if (!retired.has(rec.ifindex) || !linkGone(rec)) continue;
    const lock = await opts.lock(rec.deviceID);
    try {
      await state.allocations.removeAsync(rec.deviceID);
      report.superseded.push(rec.deviceID);
      log.info('removed the record of a device whose link an unanswered Allocate retired', {
        deviceID: rec.deviceID,
        retired: `mvr${rec.ifindex}`,
      });
    } catch (err) {
      log.error('cannot remove a void record', { deviceID: rec.deviceID, err: errorMessage(err) });
    } finally {
      lock.release();
    }
  }
  return report;
}

async function finishCommitted(opts: RecoveryOptions, link: Link, hostName: string): Promise<void> {
  const other = await opts.netns.getLink(hostName);
  if (other && other.index !== link.index) {
    if (other.kind !== 'macvtap') throw new Error(`link ${hostName} exists and is not a macvtap (kind ${other.kind ?? 'none'})`);
    await opts.retire(other);
  }
  await opts.netns.setLink(link.index, { name: hostName, up: true });
}

/** Deletes a pending link (by name, once checked) and its tap node if the node is still this link's. */
async function removePending(opts: RecoveryOptions, link: Link): Promise<void> {
  let node: { path: string; major: number; minor: number } | undefined;
  try {
    const tap = await opts.netns.tapDevice(link);
    node = { path: `${opts.devDir}/tap${link.index}`, major: tap.major, minor: tap.minor };
  } catch {
    // No char device readable (the link vanished): no node of it to remove either.
  }
  try {
    await opts.netns.deleteLink(link.name);
  } catch (err) {
    if (!(err instanceof NetlinkError && err.code === 'ENODEV')) throw err;
  }
  if (node) removeTapNode(node);
}

/** Removes a tap node if it is still the given char device (another namespace may have taken the name since). */
export function removeTapNode(node: { path: string; major: number; minor: number }): void {
  const now = charDeviceOf(node.path);
  if (now && now.major === node.major && now.minor === node.minor) fs.rmSync(node.path, { force: true });
}
