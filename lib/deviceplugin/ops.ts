/**
 * What an operator gets around the daemon: the status log lines (always), the HTTP endpoint with metrics and
 * health (with `--metrics-listen`), and reclamation of stranded devices (with `--reclaim`). Each is loaded
 * only when it is on, so a daemon with them off pays nothing for prom-client or the pod-resources API.
 */
import * as path from 'node:path';
import { Netns } from '../netlink';
import { NodeState } from '../state';
import { CHECKPOINT_NAME } from '../kubelet/checkpoint';
import { errorMessage, Logger } from '../util/log';
import type { Daemon } from './daemon';
import type { HttpEndpoint } from './http';
import type { ListenAddress } from './ops-flags';
import type { Reclaimer } from './reclaim';
import { StatusLog } from './status-log';

export interface ReclaimSettings {
  graceMs: number;
  intervalMs: number;
  dryRun: boolean;
  /** The kubelet's pod-resources socket. */
  podResourcesSocket: string;
}

export interface OperationsOptions {
  daemon: Daemon;
  log: Logger;
  pluginDir: string;
  stateDir: string;
  /** Serve /metrics, /healthz and /readyz here; undefined: no HTTP endpoint. */
  listen?: ListenAddress;
  /** When the endpoint cannot listen: carry on without it (`disable`) or fail start-up (`exit`). */
  onListenError: 'disable' | 'exit';
  reclaim?: ReclaimSettings;
}

/** The parts that run; stop() ends them. */
export class Operations {
  private http: HttpEndpoint | undefined;
  private reclaimer: Reclaimer | undefined;
  private statusLog: StatusLog | undefined;
  private netns: Netns | undefined;
  private state: NodeState | undefined;
  private readonly opts: OperationsOptions;

  constructor(opts: OperationsOptions) {
    this.opts = opts;
  }

  get endpoint(): HttpEndpoint | undefined {
    return this.http;
  }

  /**
   * Opens the HTTP endpoint (before the daemon starts, so `exit` fails before anything is registered).
   * Throws ListenError only with onListenError `exit`.
   */
  async listen(): Promise<void> {
    const { listen, daemon, log } = this.opts;
    if (!listen) return;
    const [{ HttpEndpoint }, { Metrics }] = await Promise.all([import('./http'), import('./metrics')]);
    const metrics = new Metrics({ status: () => daemon.status(), allocations: () => daemon.recordedDevices() }, daemon.events);
    try {
      this.http = await HttpEndpoint.start({ listen, log, status: () => daemon.status(), metrics: () => metrics.render() });
    } catch (err) {
      if (this.opts.onListenError === 'exit') throw err;
      log.error('no metrics or health endpoint; serving the kubelet without them', { err: errorMessage(err) });
      return;
    }
    log.info('serving metrics and health', { address: this.http.address.host, port: this.http.address.port });
  }

  /** After the daemon started: the first status lines, then reclamation. */
  async start(): Promise<void> {
    const { daemon, log } = this.opts;
    this.statusLog = new StatusLog(
      () => daemon.status(),
      () => daemon.recordedDevices(),
      daemon.events,
      log,
    );
    this.statusLog.start();
    const reclaim = this.opts.reclaim;
    if (!reclaim) return;
    const { Reclaimer } = await import('./reclaim');
    this.netns = Netns.current();
    const state = (this.state = NodeState.open(this.opts.stateDir, { log: log.child({ component: 'state' }) }));
    this.reclaimer = new Reclaimer({
      netns: this.netns,
      store: state.allocations,
      tryLock: (id) => state.tryLock(id, { program: 'macvtap-deviceplugin', verb: 'reclaim' }),
      exclusive: (fn) => daemon.exclusive(fn),
      resources: () => daemon.status().resources.map((r) => r.config),
      podResourcesSocket: reclaim.podResourcesSocket,
      checkpointFile: path.join(this.opts.pluginDir, CHECKPOINT_NAME),
      graceMs: reclaim.graceMs,
      intervalMs: reclaim.intervalMs,
      dryRun: reclaim.dryRun,
      log,
      events: daemon.events,
    });
    this.reclaimer.start();
  }

  /** The running reclaimer (tests and benchmarks trigger passes through it). */
  get reclamation(): Reclaimer | undefined {
    return this.reclaimer;
  }

  async stop(): Promise<void> {
    this.statusLog?.stop();
    this.reclaimer?.stop();
    await this.reclaimer?.idle();
    this.netns?.close();
    this.state?.close();
    await this.http?.stop();
  }
}
