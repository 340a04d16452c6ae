/**
 * The facts an operator reads with `kubectl logs`: one `resource status` line per resource with its capacity,
 * allocated devices, health and registration, at start and whenever one of them changes. Changes are noticed
 * from the daemon's events and coalesced (at most one line per resource per second), so an Allocate storm
 * does not flood the log.
 */
import { Logger } from '../util/log';
import { countAllocated, DaemonEvents, DaemonStatus } from './events';

const COALESCE_MS = 1000;

interface Facts {
  capacity: number;
  allocated: number;
  healthy: boolean;
  registered: boolean;
  lowerDevice: string | undefined;
  lowerState: string;
}

export class StatusLog {
  private readonly last = new Map<string, string>();
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  private readonly onEvent = (): void => this.schedule();

  constructor(
    private readonly status: () => DaemonStatus,
    private readonly allocations: () => string[],
    private readonly events: DaemonEvents,
    private readonly log: Logger,
  ) {}

  /** Logs every resource now, then on change. */
  start(): void {
    for (const e of ['allocate', 'registered', 'configReload', 'linkEvent', 'reconciled', 'reclaimed'] as const)
      this.events.on(e, this.onEvent);
    this.report();
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
    for (const e of ['allocate', 'registered', 'configReload', 'linkEvent', 'reconciled', 'reclaimed'] as const)
      this.events.off(e, this.onEvent);
  }

  private schedule(): void {
    if (this.stopped || this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.report();
    }, COALESCE_MS);
    this.timer.unref();
  }

  /** Logs the resources whose facts differ from the last line about them. */
  report(): void {
    const status = this.status();
    const allocated = new Set(this.allocations());
    const seen = new Set<string>();
    for (const r of status.resources) {
      seen.add(r.resource);
      const facts: Facts = {
        capacity: r.config.capacity,
        allocated: countAllocated(allocated, r.config),
        healthy: r.healthy,
        registered: r.registered,
        lowerDevice: r.config.lowerDevice,
        lowerState: r.lower ? r.lower.operstate : 'absent',
      };
      const key = JSON.stringify(facts);
      if (this.last.get(r.resource) === key) continue;
      this.last.set(r.resource, key);
      this.log.info('resource status', { resource: r.resource, ...facts });
    }
    for (const name of [...this.last.keys()]) if (!seen.has(name)) this.last.delete(name);
  }
}
