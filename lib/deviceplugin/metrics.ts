/**
 * The device plugin's Prometheus metrics (text exposition format), fed by the daemon's events and, at scrape
 * time, by its status. Loaded only when the metrics port is on; never by the CNI.
 *
 * prom-client's classes are required one by one: its index also loads the default collectors (one of which
 * samples the event loop every 10 ms, which would end the daemon's zero idle CPU), cluster aggregation, the
 * push gateway client and OpenTelemetry — about 11 MiB of RSS against 0.8 MiB for the four used here.
 * The process metrics below are read at scrape time instead.
 */
import Counter from 'prom-client/lib/counter';
import Gauge from 'prom-client/lib/gauge';
import Histogram from 'prom-client/lib/histogram';
import Registry from 'prom-client/lib/registry';
import type { OperState } from '../netlink';
import { ALLOCATE_RESULTS, countAllocated, DaemonEvents, DaemonStatus } from './events';

/** The kernel's operational states (IF_OPER_*), plus `absent` for a lower device that does not exist. */
const OPER_STATES: readonly (OperState | 'absent')[] = [
  'unknown',
  'notpresent',
  'down',
  'lowerlayerdown',
  'testing',
  'dormant',
  'up',
  'absent',
];

/** Allocate takes 1-3 ms per device here; a request of 100 devices replacing links, about 0.2 s. */
const ALLOCATE_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10];

export interface MetricsSources {
  /** The daemon's state now. */
  status(): DaemonStatus;
  /** Device IDs that have an allocation record now. */
  allocations(): string[];
}

export class Metrics {
  readonly registry = new Registry();
  private readonly registered = new Set<string>();
  /** The daemon's status, read once per scrape (render() clears it) so every gauge of a scrape agrees. */
  private snapshot: DaemonStatus | undefined;
  private readonly allocateRequests: Counter<'resource' | 'result'>;
  private readonly allocateDevices: Counter<'resource' | 'result'>;
  private readonly allocateDuration: Histogram<'resource' | 'result'>;
  private readonly registrations: Counter<'resource'>;
  private readonly reregistrations: Counter<'resource'>;
  private readonly registrationFailures: Counter<'resource'>;
  private readonly configReloads: Counter<'result'>;
  private readonly configRejected: Counter;
  private readonly linkEvents: Counter<'type'>;
  private readonly linkResyncs: Counter<'reason'>;
  private readonly reclaimed: Counter<'resource' | 'reason' | 'mode'>;
  private readonly reclaimRuns: Counter<'source'>;

  constructor(sources: MetricsSources, events: DaemonEvents) {
    const registers = [this.registry];
    // Per-resource state, read from the daemon at each scrape.
    const status = (): DaemonStatus => (this.snapshot ??= sources.status());
    new Gauge({
      name: 'macvtap_resource_capacity',
      help: 'Devices the resource offers to the kubelet.',
      labelNames: ['resource'],
      registers,
      collect() {
        this.reset();
        for (const r of status().resources) this.set({ resource: r.resource }, r.config.capacity);
      },
    });
    new Gauge({
      name: 'macvtap_resource_allocated',
      help: 'Devices of the resource that have an allocation record (Allocate made their macvtap; not yet reclaimed).',
      labelNames: ['resource'],
      registers,
      collect() {
        this.reset();
        const ids = new Set(sources.allocations());
        for (const r of status().resources) this.set({ resource: r.resource }, countAllocated(ids, r.config));
      },
    });
    new Gauge({
      name: 'macvtap_resource_healthy',
      help: '1 while the resource reports its devices Healthy (lower device present and up), else 0.',
      labelNames: ['resource'],
      registers,
      collect() {
        this.reset();
        for (const r of status().resources) this.set({ resource: r.resource }, r.healthy ? 1 : 0);
      },
    });
    new Gauge({
      name: 'macvtap_resource_registered',
      help: '1 while the resource is registered with the kubelet that serves kubelet.sock now, else 0.',
      labelNames: ['resource'],
      registers,
      collect() {
        this.reset();
        for (const r of status().resources) this.set({ resource: r.resource }, r.registered ? 1 : 0);
      },
    });
    new Gauge({
      name: 'macvtap_lower_device_oper_state',
      help: "1 for the lower device's current operational state (IF_OPER_*; absent: no such link), 0 for the others.",
      labelNames: ['resource', 'lower_device', 'state'],
      registers,
      collect() {
        this.reset();
        for (const r of status().resources) {
          const now = r.lower ? r.lower.operstate : 'absent';
          for (const state of OPER_STATES)
            this.set({ resource: r.resource, lower_device: r.config.lowerDevice, state }, state === now ? 1 : 0);
        }
      },
    });
    new Gauge({
      name: 'macvtap_link_events_subscribed',
      help: '1 while the link-event subscription is open (health follows the kernel only then), else 0.',
      registers,
      collect() {
        this.set(status().linkEvents ? 1 : 0);
      },
    });

    this.allocateRequests = new Counter({
      name: 'macvtap_allocate_requests_total',
      help: 'Allocate requests answered, by result (ok, invalid, precondition, internal).',
      labelNames: ['resource', 'result'],
      registers,
    });
    this.allocateDevices = new Counter({
      name: 'macvtap_allocate_devices_total',
      help: 'Device IDs in answered Allocate requests, by result.',
      labelNames: ['resource', 'result'],
      registers,
    });
    this.allocateDuration = new Histogram({
      name: 'macvtap_allocate_duration_seconds',
      help: 'Time from receiving an Allocate request to answering it, by result.',
      labelNames: ['resource', 'result'],
      buckets: ALLOCATE_BUCKETS,
      registers,
    });
    this.registrations = new Counter({
      name: 'macvtap_kubelet_registrations_total',
      help: 'Successful Register calls to the kubelet.',
      labelNames: ['resource'],
      registers,
    });
    this.reregistrations = new Counter({
      name: 'macvtap_kubelet_reregistrations_total',
      help: 'Registrations after the first one of the resource (kubelet restarts, lost sockets).',
      labelNames: ['resource'],
      registers,
    });
    this.registrationFailures = new Counter({
      name: 'macvtap_kubelet_registration_failures_total',
      help: 'Register calls to the kubelet that failed (retried with backoff).',
      labelNames: ['resource'],
      registers,
    });
    this.configReloads = new Counter({
      name: 'macvtap_config_reloads_total',
      help: 'Changed configuration files read, by result (applied, rejected, unreadable).',
      labelNames: ['result'],
      registers,
    });
    this.configRejected = new Counter({
      name: 'macvtap_config_rejected_entries_total',
      help: 'Configuration entries skipped as invalid (at start and on reloads).',
      registers,
    });
    this.linkEvents = new Counter({
      name: 'macvtap_link_events_total',
      help: 'Link events received from the kernel, by type (new, del).',
      labelNames: ['type'],
      registers,
    });
    this.linkResyncs = new Counter({
      name: 'macvtap_link_resyncs_total',
      help: 'Full re-reads of the links, by reason (start, overrun, re-subscribed).',
      labelNames: ['reason'],
      registers,
    });
    this.reclaimed = new Counter({
      name: 'macvtap_reclaimed_devices_total',
      help: 'Devices whose macvtap and record were removed because no pod holds them (reason unassigned; mode dry-run: would have been).',
      labelNames: ['resource', 'reason', 'mode'],
      registers,
    });
    this.reclaimRuns = new Counter({
      name: 'macvtap_reclaim_runs_total',
      help: 'Reclamation passes, by the source of the assignments (pod-resources, checkpoint; none: unknown, nothing reclaimed).',
      labelNames: ['source'],
      registers,
    });
    processMetrics(registers);

    for (const type of ['new', 'del'] as const) this.linkEvents.inc({ type }, 0);
    for (const result of ['applied', 'rejected', 'unreadable'] as const) this.configReloads.inc({ result }, 0);
    this.configRejected.inc(0);

    events.on('allocate', (e) => {
      const labels = { resource: e.resource, result: e.result };
      this.allocateRequests.inc(labels);
      this.allocateDevices.inc(labels, e.devices);
      this.allocateDuration.observe(labels, e.seconds);
    });
    events.on('registered', ({ resource }) => {
      this.registrations.inc({ resource });
      if (this.registered.has(resource)) this.reregistrations.inc({ resource });
      else {
        this.registered.add(resource);
        // Every series of the resource exists from its first registration on, so rate() sees the first event.
        this.reregistrations.inc({ resource }, 0);
        this.registrationFailures.inc({ resource }, 0);
        for (const result of ALLOCATE_RESULTS) {
          this.allocateRequests.inc({ resource, result }, 0);
          this.allocateDevices.inc({ resource, result }, 0);
        }
      }
    });
    events.on('registrationFailed', ({ resource }) => this.registrationFailures.inc({ resource }));
    events.on('configReload', ({ result }) => this.configReloads.inc({ result }));
    events.on('configEntriesRejected', ({ count }) => this.configRejected.inc(count));
    events.on('linkEvent', ({ type }) => this.linkEvents.inc({ type }));
    events.on('linkResync', ({ reason }) => this.linkResyncs.inc({ reason }));
    events.on('reclaimed', ({ resource, dryRun }) =>
      this.reclaimed.inc({ resource, reason: 'unassigned', mode: dryRun ? 'dry-run' : 'delete' }),
    );
    events.on('reclaimRun', ({ source }) => this.reclaimRuns.inc({ source }));
  }

  /** The exposition text and its content type. */
  async render(): Promise<{ contentType: string; body: string }> {
    this.snapshot = undefined;
    try {
      return { contentType: this.registry.contentType, body: await this.registry.metrics() };
    } finally {
      this.snapshot = undefined;
    }
  }
}

/** The standard process metrics, read from /proc and V8 at scrape time (no timers). */
function processMetrics(registers: Registry[]): void {
  new Gauge({
    name: 'process_resident_memory_bytes',
    help: 'Resident memory size in bytes.',
    registers,
    collect() {
      this.set(process.memoryUsage.rss());
    },
  });
  new Counter({
    name: 'process_cpu_seconds_total',
    help: 'Total user and system CPU time spent in seconds.',
    registers,
    collect() {
      const { user, system } = process.cpuUsage();
      this.reset();
      this.inc((user + system) / 1e6);
    },
  });
  const started = Date.now() / 1000 - process.uptime();
  new Gauge({
    name: 'process_start_time_seconds',
    help: 'Start time of the process since unix epoch in seconds.',
    registers,
    collect() {
      this.set(Math.round(started));
    },
  });
  new Gauge({
    name: 'nodejs_heap_size_used_bytes',
    help: 'Process heap size used from Node.js in bytes.',
    registers,
    collect() {
      this.set(process.memoryUsage().heapUsed);
    },
  });
}
