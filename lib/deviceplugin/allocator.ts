/**
 * Allocate: turns device IDs into macvtaps on the resource's lower device and the tap device nodes the kubelet
 * hands to the container. All or nothing per request, also across SIGTERM and SIGKILL:
 *
 *   1. each device's lock is taken (lib/state's flock, the one every CNI verb takes), so a late CNI DEL of the
 *      same device never interleaves with its re-creation; a stale link of the device's host name is retired;
 *   2. its macvtap is made under the *pending* name `mvn<hash>`, down, with its /dev/tap<ifindex> node;
 *   3. commit: every device's allocation record, tagged with the request's ID and size, is written durably. The
 *      request is answered from this moment on: a restart keeps its devices (and finishes step 4);
 *   4. each link is renamed to its host name `mvt<hash>` and set up, and the kubelet gets its answer.
 *
 * A failure (or a stop) before the commit removes every link, node and record the request made. After a SIGKILL
 * the next start does the same from what the kernel and the records say (recovery.ts): `mvn` links whose request
 * is not completely recorded are unanswered work and go, the others are finished.
 *
 * Requests run one at a time (two never race for a link name or an ifindex). Stale links are retired, not deleted
 * (retired.ts).
 */
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import { setTimeout as delay } from 'node:timers/promises';
import { charDeviceOf, ensureTapNode, Link, NetlinkError, Netns } from '../netlink';
import { hostLinkName, pendingLinkName, resourceName, retiredName } from '../naming';
import { type AllocationRecord, type AllocationRequest, type DeviceLock, NodeState } from '../state';
import { faultPoint } from '../util/faults';
import { SerialQueue } from '../util/serial';
import type { ResourceConfig } from './config';
import { errorMessage, Logger } from '../util/log';
import { recoverAllocations } from './recovery';
import { isRetired, Reaper } from './retired';

import { AllocateError, type AllocatedDevice } from './allocate-types';
import { createInRange, type IfindexRange } from './ifindex-range';

export { isRetired, retiredName };
export { AllocateError, type AllocatedDevice } from './allocate-types';
export { parseIfindexRange, type IfindexRange } from './ifindex-range';

export interface AllocatorOptions {
  netns: Netns;
  /** A second handle on the same namespace, for background deletion of retired links. */
  reaper: Netns;
  log: Logger;
  /** The node's state directory (opened by open()). */
  stateDir: string;
  ifindexRange?: IfindexRange;
  /** Directory of the tap nodes; `/dev`. */
  devDir?: string;
  /** How long Allocate waits for a device's lock (a CNI verb on it) before failing. */
  lockTimeoutMs?: number;
}

/** Default bound of the wait for a device's lock: a CNI verb holds it for milliseconds. */
export const ALLOCATE_LOCK_TIMEOUT_MS = 10_000;
/** How long stop() lets a request in flight finish (and be answered) before rolling it back. */
export const STOP_WAIT_MS = 2_000;
/** How long stop() then waits for the rollback. */
const ROLLBACK_WAIT_MS = 3_000;
/** How long stop() lets the reaper delete the retired links still queued. */
const REAP_STOP_WAIT_MS = 3_000;
const HOLDER = { program: 'macvtap-deviceplugin', verb: 'Allocate' };

interface Made {
  deviceID: string;
  hostName: string;
  pendingName: string;
  ifindex: number;
  node?: { path: string; major: number; minor: number };
  recorded?: boolean;
}

export class Allocator {
  private readonly netns: Netns;
  private readonly log: Logger;
  private readonly range: IfindexRange | undefined;
  private readonly devDir: string;
  private readonly lockTimeoutMs: number;
  private readonly stateDir: string;
  private nodeState: NodeState | undefined;
  private readonly reaper: Reaper;
  /** Requests run one at a time: two requests never race for a link name or an ifindex. */
  private readonly queue = new SerialQueue();
  private stopping = false;
  /** Set when stop() gave up waiting: the request in flight rolls back at its next step. */
  private aborted = false;

  constructor(opts: AllocatorOptions) {
    this.netns = opts.netns;
    this.log = opts.log;
    this.stateDir = opts.stateDir;
    this.range = opts.ifindexRange;
    this.devDir = opts.devDir ?? '/dev';
    this.lockTimeoutMs = opts.lockTimeoutMs ?? ALLOCATE_LOCK_TIMEOUT_MS;
    this.reaper = new Reaper({ netns: opts.reaper, log: opts.log, busy: () => this.queue.pending, idle: () => this.queue.idle() });
  }

  /** The node state, once open() succeeded. */
  get state(): NodeState {
    if (!this.nodeState) throw new Error('internal: the allocator was not opened');
    return this.nodeState;
  }

  /** Device IDs with an allocation record ([] before open()). */
  recordedDevices(): string[] {
    return this.nodeState?.allocations.list() ?? [];
  }

  /**
   * Opens the state directory and checks that it takes records now (throws StateError naming the path and errno:
   * EROFS, ENOSPC, ...), then reconciles the records with the kernel after a crash (recovery.ts). Before serving.
   */
  async open(): Promise<void> {
    const state = NodeState.open(this.stateDir, { log: this.log.child({ component: 'state' }) });
    try {
      state.checkWritable(['locks', 'allocations']);
    } catch (err) {
      state.close();
      throw err;
    }
    this.nodeState = state;
    await this.queue.run(() =>
      recoverAllocations({
        netns: this.netns,
        state,
        log: this.log,
        devDir: this.devDir,
        retire: (link) => this.retire(link),
        lock: (id) => this.lock(id, 'recover'),
      }),
    );
    // Lock files of holders that died (a crashed Allocate's): not held, but an operator should not have to wonder.
    state.sweepLocks({ ...HOLDER, verb: 'start' });
  }

  /** Closes the state directory (after stop()). */
  close(): void {
    this.nodeState?.close();
    this.nodeState = undefined;
  }

  /** Allocates `ids` (already checked to belong to `resource`) for one container, all or nothing. */
  allocate(resource: ResourceConfig, ids: string[], log: Logger): Promise<AllocatedDevice[]> {
    if (this.stopping) return Promise.reject(stoppingError());
    return this.queue.run(() => {
      if (this.stopping) throw stoppingError();
      return this.run(resource, ids, log);
    });
  }

  /**
   * Refuses new requests, lets the one in flight finish for up to `waitMs` (so the kubelet gets its answer), then
   * makes it roll back and waits for that. Then the retired links still queued are deleted (bounded by
   * REAP_STOP_WAIT_MS; what is left is deleted at the next start): a node switched back to kubevirt's plugin,
   * which never deletes an `mvr` link, would otherwise keep them for good.
   */
  async stop(waitMs = STOP_WAIT_MS): Promise<void> {
    this.stopping = true;
    const idle = this.queue.idle();
    if (!(await settlesWithin(idle, waitMs))) {
      this.aborted = true;
      this.log.warn('stopping: rolling back the Allocate in flight', { waitedMs: waitMs });
      if (!(await settlesWithin(idle, ROLLBACK_WAIT_MS)))
        this.log.error('stopping: the Allocate in flight did not roll back in time; the next start removes its work');
    }
    if (!(await settlesWithin(this.reaper.drain(), REAP_STOP_WAIT_MS)))
      this.log.warn('stopping: retired links left for the next start', { retired: this.reaper.pending });
    this.reaper.stop();
  }

  private async run(resource: ResourceConfig, ids: string[], log: Logger): Promise<AllocatedDevice[]> {
    const lower = resource.lowerDevice === undefined ? null : await this.netns.getLink(resource.lowerDevice);
    if (!lower)
      throw new AllocateError(
        'precondition',
        `lower device ${resource.lowerDevice ?? '(none configured)'} of ${resourceName(resource.name)} does not exist`,
      );
    const request: AllocationRequest = { id: randomBytes(8).toString('hex'), size: ids.length };
    const locks: DeviceLock[] = [];
    const made: Made[] = [];
    /** Devices whose previous link this request retired: their previous records are void, also on failure. */
    const superseded: string[] = [];
    const taken = this.range ? new Set((await this.netns.listLinks()).map((l) => l.index)) : undefined;
    try {
      for (const id of ids) {
        this.checkAborted();
        const hostName = hostLinkName(id);
        const pendingName = pendingLinkName(id);
        const step = (what: string, err: unknown): AllocateError =>
          new AllocateError(
            err instanceof AllocateError ? err.kind : 'internal',
            `device ${id}: ${what} ${hostName}: ${errorMessage(err)}`,
          );
        try {
          locks.push(await this.lock(id, `request ${request.id} of ${ids.length} devices`));
        } catch (err) {
          throw step('lock', err);
        }
        faultPoint('Allocate', 'locked');
        try {
          // A pending link of this name is a rolled-back request's leftover: as unanswered as a stale one.
          if (await this.retireStale(hostName)) superseded.push(id);
          await this.retireStale(pendingName);
        } catch (err) {
          throw step('remove stale link', err);
        }
        let link: Link;
        try {
          link = await this.create(pendingName, lower, resource, taken);
        } catch (err) {
          throw step(`create macvtap (mode ${resource.mode}) on ${lower.name} as`, err);
        }
        const entry: Made = { deviceID: id, hostName, pendingName, ifindex: link.index };
        made.push(entry);
        faultPoint('Allocate', 'created');
        try {
          const tap = this.netns.tapDeviceSync(link);
          ensureTapNode(tap, { devDir: this.devDir });
          entry.node = { path: `${this.devDir}/tap${tap.ifindex}`, major: tap.major, minor: tap.minor };
        } catch (err) {
          throw step('make tap device node for', err);
        }
        faultPoint('Allocate', 'node');
      }
      this.checkAborted();
      await this.commit(made, lower, resource, request);
      return await this.finish(made, log);
    } catch (err) {
      await this.undo(made, superseded, log);
      throw err;
    } finally {
      for (const lock of locks) lock.release();
    }
  }

  /** Writes every record durably (in parallel, on the thread pool): once all are, the request is answered. */
  private async commit(made: Made[], lower: Link, resource: ResourceConfig, request: AllocationRequest): Promise<void> {
    const allocatedAt = new Date().toISOString();
    let first = true;
    const writes = made.map(async (m) => {
      const record: AllocationRecord = {
        version: 1,
        deviceID: m.deviceID,
        resource: resourceName(resource.name),
        linkName: m.hostName,
        lowerDevice: lower.name,
        mode: resource.mode,
        ifindex: m.ifindex,
        txqueuelen: lower.txqueuelen,
        allocatedAt,
        request,
      };
      try {
        await this.state.allocations.writeAsync(record);
      } catch (err) {
        throw new AllocateError('internal', `device ${m.deviceID}: record allocation of ${m.hostName}: ${errorMessage(err)}`);
      }
      m.recorded = true;
      if (first) {
        first = false;
        faultPoint('Allocate', 'recorded');
      }
    });
    const results = await Promise.allSettled(writes);
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
    faultPoint('Allocate', 'committed');
  }

  /** After the commit: each link gets its host name and goes up; the answer. */
  private async finish(made: Made[], log: Logger): Promise<AllocatedDevice[]> {
    const out: AllocatedDevice[] = [];
    for (const [i, m] of made.entries()) {
      try {
        await this.netns.setLink(m.ifindex, { name: m.hostName, up: true });
      } catch (err) {
        throw new AllocateError('internal', `device ${m.deviceID}: rename ${m.pendingName} to ${m.hostName}: ${errorMessage(err)}`);
      }
      if (i === 0) faultPoint('Allocate', 'renamed');
      out.push({ deviceID: m.deviceID, linkName: m.hostName, ifindex: m.ifindex, tapPath: `/dev/tap${m.ifindex}` });
      log.debug('device allocated', { deviceID: m.deviceID, link: m.hostName, ifindex: m.ifindex });
    }
    faultPoint('Allocate', 'answering');
    return out;
  }

  /** Takes a device's lock (bounded wait; a LockTimeout names the holder). */
  private lock(deviceID: string, detail: string): Promise<DeviceLock> {
    return this.state.lockAsync(deviceID, { holder: { ...HOLDER, detail }, timeoutMs: this.lockTimeoutMs });
  }

  private checkAborted(): void {
    if (this.aborted) throw new AllocateError('internal', 'the device plugin is stopping: the request was rolled back');
  }

  /** Runs `fn` while no Allocate is in flight (later requests wait for it): for work that must not race one. */
  exclusive<T>(fn: () => Promise<T>): Promise<T> {
    return this.queue.run(fn);
  }

  /**
   * Retires a leftover macvtap of this name (the previous pod's device, or a link left behind by a failure); true if
   * there was one.
   */
  private async retireStale(linkName: string): Promise<boolean> {
    const stale = await this.netns.getLink(linkName);
    if (!stale) return false;
    if (stale.kind !== 'macvtap')
      throw new AllocateError(
        'internal',
        `link ${linkName} exists and is not a macvtap (kind ${stale.kind ?? 'none'}); refusing to delete it`,
      );
    await this.retire(stale);
    return true;
  }

  /** Sets a link down as `mvr<ifindex>` and queues it for deletion; a link that vanished meanwhile is fine. */
  private async retire(link: Link): Promise<void> {
    const name = retiredName(link.index);
    try {
      await this.netns.setLink(link.index, { up: false, name });
    } catch (err) {
      if (err instanceof NetlinkError && err.code === 'ENODEV') return;
      throw err;
    }
    faultPoint('Allocate', 'retired');
    this.reaper.add(name);
  }

  /** Queues a retired link found at start for deletion. */
  reap(link: Pick<Link, 'name' | 'kind' | 'index'>): void {
    if (isRetired(link)) this.reaper.add(link.name);
  }

  /** Retired links waiting for deletion. */
  get retiredPending(): number {
    return this.reaper.pending;
  }

  /** Resolves when every queued retired link has been deleted. */
  async drain(): Promise<void> {
    await this.reaper.drain();
  }

  private async create(linkName: string, lower: Link, resource: ResourceConfig, taken: Set<number> | undefined): Promise<Link> {
    // Down while pending; up from the commit on, as kubevirt's plugin makes it: a pod that consumes only
    // /dev/tapN (no CNI call) must get a tap that passes frames.
    const opts = { name: linkName, lower: lower.index, mode: resource.mode, txqueuelen: lower.txqueuelen, up: false };
    if (!this.range || !taken) return this.netns.createMacvtap(opts);
    return createInRange(this.netns, opts, this.range, taken, this.devDir);
  }

  /**
   * Removes what a failed request made, newest first. A link is deleted only while it is still the one made (its
   * ifindex, kind macvtap, and one of the device's two names), by name; the device's lock is still held. Records
   * go too: those written, and the previous ones of devices whose previous link was retired (they name a link
   * that is gone).
   */
  private async undo(made: Made[], superseded: string[], log: Logger): Promise<void> {
    const records = new Set(superseded);
    for (const m of made.reverse()) {
      try {
        const link = await this.netns.getLink(m.ifindex);
        if (link && link.kind === 'macvtap' && (link.name === m.pendingName || link.name === m.hostName))
          await this.netns.deleteLink(link.name);
      } catch (err) {
        if (!(err instanceof NetlinkError && err.code === 'ENODEV'))
          log.error('cannot remove half-made link', { link: m.pendingName, ifindex: m.ifindex, err: errorMessage(err) });
      }
      if (m.node) {
        const now = charDeviceOf(m.node.path);
        if (now && now.major === m.node.major && now.minor === m.node.minor) fs.rmSync(m.node.path, { force: true });
      }
      if (m.recorded) records.add(m.deviceID);
    }
    for (const id of records) {
      try {
        await this.state.allocations.removeAsync(id);
      } catch (err) {
        log.error('cannot remove the record of a rolled-back allocation', { deviceID: id, err: errorMessage(err) });
      }
    }
  }
}

function stoppingError(): AllocateError {
  return new AllocateError('internal', 'the device plugin is stopping; the kubelet retries with its successor');
}

/** True if `p` settles within `ms`. */
async function settlesWithin(p: Promise<unknown>, ms: number): Promise<boolean> {
  const ac = new AbortController();
  try {
    return await Promise.race([p.then(() => true), delay(ms, false, { signal: ac.signal })]);
  } finally {
    ac.abort();
  }
}
