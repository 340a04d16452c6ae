/**
 * Reclamation of stranded devices: a macvtap that Allocate made for a pod that never started (or that went away
 * without a CNI DEL) stays on the host, with its allocation record, until the next Allocate of the same ID.
 * Periodically and at start, every host-namespace `mvt...` macvtap and every recorded allocation whose device
 * ID no pod holds, and that is older than the grace period, is deleted and its record removed.
 *
 * Which pod holds which device is the kubelet's word: its pod-resources API, or, when that cannot be reached,
 * its device-manager checkpoint. When neither can be read, or an answer is malformed, nothing is reclaimed.
 *
 * Safety:
 * - Only links of the host namespace are looked at and deleted, by name, after checking the name is ours and
 *   the link is a macvtap: a link moved into a pod's namespace is not in the host namespace under that name.
 * - Each device is re-checked and reclaimed under its lock (lib/state's per-device flock, which every CNI verb and
 *   Allocate take; a device whose lock is busy waits for the next pass) and while no Allocate of this process
 *   runs, so a device the kubelet hands out again meanwhile is seen with its fresh record and kept.
 * - Age is the record's allocation time; a link with no record is aged from when this process first saw it
 *   unheld. A pod still starting holds its device (the kubelet records the assignment when Allocate answers);
 *   the grace period covers the moment between the two.
 */
import * as fs from 'node:fs';
import { charDeviceOf, Link, NetlinkError, Netns } from '../netlink';
import { deviceId, hostLinkName, resourceName } from '../naming';
import type { AllocationRecord } from '../state';
import { CheckpointError, MACVTAP_RESOURCE_PREFIX, readCheckpoint } from '../kubelet/checkpoint';
import { errorMessage, Logger } from '../util/log';
import type { ResourceConfig } from './config';
import type { DaemonEvents } from './events';
import { listPodResources, PodResourcesMalformed } from './podresources';

const HOST_LINK_RE = /^mvt[0-9a-f]{12}$/;

export type AssignmentSource = 'pod-resources' | 'checkpoint';

export interface ReclaimOptions {
  /** The host namespace (the daemon's own), through a handle of the reclaimer's own. */
  netns: Netns;
  /** The allocation records (lib/state). */
  store: { list(): string[]; read(deviceID: string): AllocationRecord | undefined; remove(deviceID: string): unknown };
  /** The device's lock (lib/state's flock, the one every CNI verb and Allocate take), if it is free now. */
  tryLock(deviceID: string): { release(): void } | undefined;
  /** Runs `fn` while no Allocate of this process is in flight (the allocator's queue). */
  exclusive<T>(fn: () => Promise<T>): Promise<T>;
  /** The configured resources, to map link names back to device IDs when there is no record. */
  resources(): ResourceConfig[];
  podResourcesSocket: string;
  checkpointFile: string;
  graceMs: number;
  intervalMs: number;
  dryRun: boolean;
  log: Logger;
  /** Where reclaimed devices and passes are reported (metrics, status lines). */
  events?: DaemonEvents;
  devDir?: string;
  now?: () => number;
}

export interface ReclaimedDevice {
  deviceID: string;
  resource: string;
  link: string | undefined;
  ageSeconds: number;
}

export interface ReclaimReport {
  /** Where the assignments came from; `none` when they could not be read (then nothing is reclaimed). */
  source: AssignmentSource | 'none';
  reclaimed: ReclaimedDevice[];
  /** Unheld devices kept because they are younger than the grace period. */
  young: string[];
}

interface Candidate {
  deviceID: string;
  record: AllocationRecord | undefined;
  link: Link | undefined;
}

export class Reclaimer {
  private readonly opts: ReclaimOptions;
  private readonly log: Logger;
  private readonly now: () => number;
  /** Device IDs with a host link but no record -> when this process first saw them held by no pod. */
  private readonly firstSeen = new Map<string, number>();
  /** Link name -> device ID of the configured resources, rebuilt when the configuration changes. */
  private names: { key: string; map: Map<string, string> } | undefined;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<ReclaimReport> | undefined;
  private stopped = false;

  constructor(opts: ReclaimOptions) {
    this.opts = opts;
    this.log = opts.log.child({ component: 'reclaim' });
    this.now = opts.now ?? Date.now;
  }

  /** Runs once now, then every interval. */
  start(): void {
    this.log.info('reclamation on', {
      graceSeconds: this.opts.graceMs / 1000,
      intervalSeconds: this.opts.intervalMs / 1000,
      dryRun: this.opts.dryRun,
      podResources: this.opts.podResourcesSocket,
      checkpoint: this.opts.checkpointFile,
    });
    void this.run();
    this.timer = setInterval(() => void this.run(), this.opts.intervalMs);
    this.timer.unref();
  }

  stop(): void {
    this.stopped = true;
    clearInterval(this.timer);
  }

  /** Resolves when no pass is running. */
  async idle(): Promise<void> {
    await this.running;
  }

  /** One pass (never two at once); failures are logged, not thrown. */
  run(): Promise<ReclaimReport> {
    this.running ??= this.pass()
      .catch((err: unknown): ReclaimReport => {
        this.log.error('reclamation pass failed', { err: errorMessage(err) });
        this.opts.events?.emit('reclaimRun', { source: 'none' });
        return { source: 'none', reclaimed: [], young: [] };
      })
      .finally(() => (this.running = undefined));
    return this.running;
  }

  private async pass(): Promise<ReclaimReport> {
    const assigned = await this.assignments();
    if (!assigned) {
      this.opts.events?.emit('reclaimRun', { source: 'none' });
      return { source: 'none', reclaimed: [], young: [] };
    }
    const report: ReclaimReport = { source: assigned.source, reclaimed: [], young: [] };
    const candidates = await this.candidates();
    const now = this.now();
    for (const id of [...this.firstSeen.keys()]) if (!candidates.has(id) || assigned.held.has(id)) this.firstSeen.delete(id);
    for (const c of candidates.values()) {
      if (this.stopped) break;
      if (assigned.held.has(c.deviceID)) continue;
      const age = this.age(c, now);
      if (age < this.opts.graceMs) {
        report.young.push(c.deviceID);
        this.log.debug('unassigned device within the grace period; keeping it', { device: c.deviceID, ageSeconds: age / 1000 });
        continue;
      }
      const done = await this.opts.exclusive(() => this.reclaim(c.deviceID, assigned.source, now));
      if (done) report.reclaimed.push(done);
    }
    this.opts.events?.emit('reclaimRun', { source: assigned.source });
    return report;
  }

  /** The device IDs pods hold, or undefined (logged) when the kubelet's word cannot be had. */
  private async assignments(): Promise<{ source: AssignmentSource; held: Set<string> } | undefined> {
    const held = new Set<string>();
    let unavailable: string;
    try {
      for (const d of await listPodResources(this.opts.podResourcesSocket)) {
        if (d.resource.startsWith(MACVTAP_RESOURCE_PREFIX)) for (const id of d.deviceIDs) held.add(id);
      }
      return { source: 'pod-resources', held };
    } catch (err) {
      if (err instanceof PodResourcesMalformed) {
        this.log.error('the pod-resources answer is malformed; reclaiming nothing', { err: err.message });
        return undefined;
      }
      unavailable = errorMessage(err);
    }
    try {
      const cp = readCheckpoint(this.opts.checkpointFile);
      for (const e of cp.entries) if (e.resourceName.startsWith(MACVTAP_RESOURCE_PREFIX)) for (const id of e.deviceIDs) held.add(id);
      this.log.warn('pod-resources API unavailable; using the kubelet checkpoint', { podResources: unavailable });
      return { source: 'checkpoint', held };
    } catch (err) {
      const problem = err instanceof CheckpointError ? err.problem : 'unreadable';
      const fields = { podResources: unavailable, checkpoint: errorMessage(err) };
      if (problem === 'corrupt' || problem === 'unsafe') this.log.error('cannot tell which devices pods hold; reclaiming nothing', fields);
      else this.log.warn('cannot tell which devices pods hold; reclaiming nothing', fields);
      return undefined;
    }
  }

  /** Every device with a record or an `mvt...` macvtap in the host namespace. */
  private async candidates(): Promise<Map<string, Candidate>> {
    const out = new Map<string, Candidate>();
    const byLink = new Map<string, string>();
    for (const id of this.opts.store.list()) {
      const record = this.opts.store.read(id);
      if (!record) {
        this.log.warn('allocation record is unreadable; leaving it', { device: id });
        continue;
      }
      out.set(id, { deviceID: id, record, link: undefined });
      byLink.set(record.linkName, id);
    }
    const configured = this.linkNames();
    for (const link of await this.opts.netns.listLinks()) {
      if (link.kind !== 'macvtap' || !HOST_LINK_RE.test(link.name)) continue;
      const id = byLink.get(link.name) ?? configured.get(link.name);
      if (id === undefined) {
        this.log.debug('macvtap of no known device; leaving it', { link: link.name });
        continue;
      }
      const c = out.get(id) ?? { deviceID: id, record: undefined, link: undefined };
      c.link = link;
      out.set(id, c);
    }
    return out;
  }

  private linkNames(): Map<string, string> {
    const resources = this.opts.resources();
    const key = resources.map((r) => `${r.name}/${r.capacity}`).join(',');
    if (this.names?.key === key) return this.names.map;
    const map = new Map<string, string>();
    for (const r of resources) {
      for (let i = 0; i < r.capacity; i++) {
        const id = deviceId(r.name, i);
        map.set(hostLinkName(id), id);
      }
    }
    this.names = { key, map };
    return map;
  }

  private age(c: Candidate, now: number): number {
    const at = c.record ? Date.parse(c.record.allocatedAt) : NaN;
    if (!Number.isNaN(at)) return now - at;
    let seen = this.firstSeen.get(c.deviceID);
    if (seen === undefined) this.firstSeen.set(c.deviceID, (seen = now));
    return now - seen;
  }

  /** Takes the device's lock and reclaims it; a device someone is working on now waits for the next pass. */
  private async reclaim(id: string, source: AssignmentSource, planned: number): Promise<ReclaimedDevice | undefined> {
    let lock;
    try {
      lock = this.opts.tryLock(id);
    } catch (err) {
      this.log.warn('cannot take the lock of a device; leaving it', { device: id, err: errorMessage(err) });
      return undefined;
    }
    if (!lock) {
      this.log.debug('device is locked by another operation; next pass', { device: id });
      return undefined;
    }
    try {
      return await this.reclaimLocked(id, source, planned);
    } finally {
      lock.release();
    }
  }

  /** Re-checks one device and reclaims it; runs under its lock while no Allocate is in flight. */
  private async reclaimLocked(id: string, source: AssignmentSource, planned: number): Promise<ReclaimedDevice | undefined> {
    const record = this.opts.store.read(id);
    const linkName = record?.linkName ?? hostLinkName(id);
    const link = HOST_LINK_RE.test(linkName) ? ((await this.opts.netns.getLink(linkName)) ?? undefined) : undefined;
    const candidate: Candidate = { deviceID: id, record, link };
    if (!record && !link) return undefined;
    const age = this.age(candidate, this.now());
    // An Allocate since the pass began wrote a fresh record: the kubelet handed the device out again.
    if (age < this.opts.graceMs || (record && Date.parse(record.allocatedAt) > planned)) return undefined;
    if (link && link.kind !== 'macvtap') {
      this.log.warn('link of a device is not a macvtap; leaving it', { device: id, link: link.name, kind: link.kind });
      return undefined;
    }
    const resource = record?.resource ?? this.resourceOf(id);
    const done: ReclaimedDevice = { deviceID: id, resource, link: link?.name, ageSeconds: Math.round(age / 1000) };
    const why = `no pod holds it (per the kubelet's ${source === 'pod-resources' ? 'pod-resources API' : 'device-manager checkpoint'})`;
    if (this.opts.dryRun) {
      this.log.info('would reclaim device (dry run)', { device: id, resource, link: link?.name, ageSeconds: done.ageSeconds, why });
      this.opts.events?.emit('reclaimed', { resource, deviceID: id, dryRun: true });
      return done;
    }
    if (link) {
      const tap = this.tapOf(link);
      try {
        // By name, in the host namespace: never a link that has since moved into a pod.
        await this.opts.netns.deleteLink(link.name);
      } catch (err) {
        if (!(err instanceof NetlinkError && err.code === 'ENODEV')) {
          this.log.error('cannot delete the macvtap of an unassigned device', { device: id, link: link.name, err: errorMessage(err) });
          return undefined;
        }
      }
      this.removeNode(link.index, tap);
    }
    if (record) this.opts.store.remove(id);
    this.firstSeen.delete(id);
    this.log.info('reclaimed device', { device: id, resource, link: link?.name, ifindex: link?.index, ageSeconds: done.ageSeconds, why });
    this.opts.events?.emit('reclaimed', { resource, deviceID: id, dryRun: false });
    return done;
  }

  private tapOf(link: Link): { major: number; minor: number } | undefined {
    try {
      return this.opts.netns.tapDeviceSync(link);
    } catch {
      return undefined;
    }
  }

  /** Removes /dev/tap<ifindex> if it is still the deleted macvtap's node (its minor may be reused later). */
  private removeNode(ifindex: number, tap: { major: number; minor: number } | undefined): void {
    if (!tap) return;
    const node = `${this.opts.devDir ?? '/dev'}/tap${ifindex}`;
    const now = charDeviceOf(node);
    if (now && now.major === tap.major && now.minor === tap.minor) fs.rmSync(node, { force: true });
  }

  private resourceOf(id: string): string {
    const r = this.opts.resources().find((c) => id.startsWith(`${c.name}Mvp`) && /^\d+$/.test(id.slice(c.name.length + 3)));
    return r ? resourceName(r.name) : 'unknown';
  }
}
