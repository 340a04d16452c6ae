/**
 * The device plugin daemon: keeps one ResourcePlugin per configured (or discovered) resource served and
 * registered with the kubelet, follows the lower devices' health through link events, and reacts to kubelet
 * restarts and configuration changes without polling.
 *
 * Everything that changes which servers run or whom they registered with goes through reconcile(), which runs
 * one at a time; triggers (directory events, configuration reloads, discovery, retry timers) only schedule it.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { LinkEvent, Netns } from '../netlink';
import { StateError } from '../state';
import { Allocator, IfindexRange } from './allocator';
import { KUBELET_SOCKET } from './api';
import {
  ConfigProblem,
  discoveredResource,
  isDiscoverable,
  logProblem,
  mergeReload,
  PluginConfig,
  ResourceConfig,
  resourceNameProblem,
  sameResource,
} from './config';
import { ConfigSource, ConfigWatch } from './config-watch';
import { DaemonEvents, DaemonStatus } from './events';
import { LinkTable } from './links';
import { errorMessage, Logger } from '../util/log';
import { ResourcePlugin } from './resource';

export interface DaemonOptions {
  /** The kubelet's device-plugin directory (holds kubelet.sock and our sockets). */
  pluginDir: string;
  /** Host state directory; allocation records go to `<stateDir>/allocations/`. */
  stateDir: string;
  source: ConfigSource;
  /** The configuration already parsed from `source` (start-up validates before the daemon is built). */
  config: PluginConfig;
  /** The text `config` was parsed from: following a file starts from it, so a change made meanwhile is seen. */
  configText: string;
  ifindexRange?: IfindexRange;
  /** Link kinds `[]` discovery accepts besides physical links and bonds. */
  discoverKinds?: string[];
  log: Logger;
}

const RETRY_MIN_MS = 500;
const RETRY_MAX_MS = 10000;

export class Daemon {
  private readonly opts: DaemonOptions;
  private readonly log: Logger;
  private readonly netns: Netns;
  private readonly reaperNetns: Netns;
  private readonly links: LinkTable;
  private readonly allocator: Allocator;
  private readonly plugins = new Map<string, ResourcePlugin>();
  private config: PluginConfig;
  private dirWatcher: fs.FSWatcher | undefined;
  private configWatch: ConfigWatch | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  private retryDelay = RETRY_MIN_MS;
  private running: Promise<void> | undefined;
  private again = false;
  private stopped = false;
  /** Names of discovered resources at the last reconcile, to notice when discovery changes. */
  private discovered = new Set<string>();
  /** What the daemon does, for metrics, status lines and reclamation (see events.ts). */
  readonly events = new DaemonEvents();
  private reconcilingSince: number | undefined;

  constructor(opts: DaemonOptions) {
    this.opts = opts;
    this.log = opts.log;
    this.config = opts.config;
    this.netns = Netns.current();
    this.links = new LinkTable(this.netns, this.log);
    this.reaperNetns = Netns.current();
    this.allocator = new Allocator({
      netns: this.netns,
      reaper: this.reaperNetns,
      log: this.log,
      stateDir: opts.stateDir,
      ifindexRange: opts.ifindexRange,
    });
  }

  /** The running plugins by resource name (`<name>` without the domain). */
  get resources(): ReadonlyMap<string, ResourcePlugin> {
    return this.plugins;
  }

  /**
   * Checks the state directory, reconciles the allocation records with the kernel (a crashed Allocate's work),
   * then serves and registers. Throws, before anything is registered, when the state directory cannot take
   * records (read-only, full, unsafe): every Allocate would fail.
   */
  async start(): Promise<void> {
    try {
      await this.allocator.open();
    } catch (err) {
      if (!(err instanceof StateError)) throw err;
      throw new Error(`the state directory ${this.opts.stateDir} cannot take allocation records (${err.code}): ${err.message}`, {
        cause: err,
      });
    }
    this.links.on('change', (names: Set<string>) => this.onLinks(names));
    this.links.on('event', (e: LinkEvent) => this.events.emit('linkEvent', { type: e.type }));
    this.links.on('resync', (reason: string) => this.events.emit('linkResync', { reason }));
    await this.links.start();
    for (const link of this.links.all()) this.allocator.reap(link);
    fs.mkdirSync(this.opts.pluginDir, { recursive: true });
    this.watchPluginDir();
    if (this.opts.source.kind === 'file') {
      const file = this.opts.source.path;
      const onChange = (next: PluginConfig, problems: ConfigProblem[]): void => this.applyReload(file, next, problems);
      this.configWatch = new ConfigWatch({
        file,
        text: this.opts.configText,
        pluginDir: this.opts.pluginDir,
        log: this.log,
        events: this.events,
        onChange,
      });
      this.configWatch.start();
    }
    await this.reconcileNow();
    this.log.info('started', {
      pluginDir: this.opts.pluginDir,
      stateDir: this.opts.stateDir,
      config: this.config.discover ? 'discover' : this.config.resources,
      resources: [...this.plugins.values()].map((p) => p.resource),
      ifindexRange: this.opts.ifindexRange,
    });
  }

  /** Device IDs with an allocation record (for metrics and status lines; [] before start). */
  recordedDevices(): string[] {
    return this.allocator.recordedDevices();
  }

  /** Runs `fn` while no Allocate is in flight (see Allocator.exclusive). */
  exclusive<T>(fn: () => Promise<T>): Promise<T> {
    return this.allocator.exclusive(fn);
  }

  /** A snapshot of every resource and of what the daemon depends on (for health endpoints and metrics). */
  status(): DaemonStatus {
    const kubelet = this.kubeletIdentity();
    return {
      resources: [...this.plugins.values()].map((p) => ({
        resource: p.resource,
        config: p.config,
        healthy: p.isHealthy,
        registered: kubelet !== undefined && p.registeredWith === kubelet,
        streams: p.streamCount,
        lower: p.config.lowerDevice === undefined ? undefined : this.links.byName(p.config.lowerDevice),
      })),
      kubeletSocket: kubelet !== undefined,
      linkEvents: this.links.subscribed,
      reconcilingSince: this.reconcilingSince,
    };
  }

  /**
   * Lets the Allocate in flight finish and be answered (bounded; then it is rolled back) while refusing new ones,
   * then sends empty device lists, ends streams, stops every server and removes our sockets.
   */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    clearTimeout(this.retryTimer);
    this.dirWatcher?.close();
    this.configWatch?.stop();
    await this.allocator.stop();
    await this.running?.catch(() => undefined);
    await Promise.all([...this.plugins.values()].map((p) => p.stop()));
    this.plugins.clear();
    this.links.stop();
    this.netns.close();
    this.reaperNetns.close();
    this.allocator.close();
    this.log.info('stopped');
  }

  private onLinks(names: Set<string>): void {
    if (this.stopped) return;
    for (const plugin of this.plugins.values()) {
      const lower = plugin.config.lowerDevice;
      if (lower !== undefined && names.has(lower)) plugin.updateHealth(this.links.byName(lower));
    }
    if (this.config.discover) {
      const now = this.discoverNames();
      if (now.size !== this.discovered.size || [...now].some((n) => !this.discovered.has(n))) this.schedule();
    }
  }

  private discoverNames(): Set<string> {
    const names = new Set<string>();
    for (const link of this.links.all()) {
      if (!isDiscoverable(link, this.opts.discoverKinds)) continue;
      const problem = resourceNameProblem(link.name);
      if (problem) {
        this.log.debug('link skipped by discovery', { link: link.name, problem });
        continue;
      }
      names.add(link.name);
    }
    return names;
  }

  private desired(): Map<string, ResourceConfig> {
    if (!this.config.discover) return new Map(this.config.resources.map((r) => [r.name, r]));
    this.discovered = this.discoverNames();
    return new Map([...this.discovered].map((n) => [n, discoveredResource(n)]));
  }

  private watchPluginDir(): void {
    try {
      this.dirWatcher = fs.watch(this.opts.pluginDir, () => this.schedule());
      this.dirWatcher.on('error', (err) => {
        this.log.error('watching the device-plugin directory failed; watching again', { err: errorMessage(err) });
        this.dirWatcher?.close();
        this.dirWatcher = undefined;
        this.scheduleRetry();
      });
    } catch (err) {
      this.log.error('cannot watch the device-plugin directory', { dir: this.opts.pluginDir, err: errorMessage(err) });
      this.scheduleRetry();
    }
  }

  /** A reloaded configuration that parsed: keep running what its skipped entries named, then reconcile. */
  private applyReload(file: string, next: PluginConfig, problems: ConfigProblem[]): void {
    if (this.stopped) return;
    for (const p of problems) logProblem(this.log, p);
    const skipped = problems.filter((p) => p.level === 'error').length;
    if (skipped) this.events.emit('configEntriesRejected', { count: skipped });
    const { config, kept } = mergeReload(
      [...this.plugins.values()].map((p) => p.config),
      next,
      problems,
    );
    this.config = config;
    if (kept.length) this.log.warn('entries skipped: keeping their running configuration', { file, resources: kept });
    this.events.emit('configReload', { result: 'applied' });
    this.log.info('configuration reloaded', { file, config: this.config.discover ? 'discover' : this.config.resources });
    this.schedule();
  }

  /** Runs reconcile soon; coalesces requests and never runs two at once. */
  private schedule(): void {
    if (this.stopped) return;
    if (this.running) {
      this.again = true;
      return;
    }
    void this.reconcileNow();
  }

  private async reconcileNow(): Promise<void> {
    if (this.running) {
      this.again = true;
      return this.running;
    }
    this.reconcilingSince = Date.now();
    this.running = (async () => {
      do {
        this.again = false;
        try {
          await this.reconcile();
        } catch (err) {
          this.log.error('reconcile failed; retrying', { err: errorMessage(err) });
          this.scheduleRetry();
        }
      } while (this.again && !this.stopped);
    })();
    try {
      await this.running;
    } finally {
      this.running = undefined;
      this.reconcilingSince = undefined;
      if (!this.stopped) this.events.emit('reconciled');
    }
  }

  private scheduleRetry(): void {
    if (this.stopped || this.retryTimer) return;
    const delay = this.retryDelay;
    this.retryDelay = Math.min(this.retryDelay * 2, RETRY_MAX_MS);
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      if (!this.dirWatcher && !this.stopped) this.watchPluginDir();
      this.schedule();
    }, delay);
  }

  /**
   * Which kubelet.sock is there now: inode plus birth time (change time where the file system keeps no birth
   * time), so a re-created socket that reuses the inode number still counts as a new kubelet.
   */
  private kubeletIdentity(): string | undefined {
    try {
      const st = fs.statSync(path.join(this.opts.pluginDir, KUBELET_SOCKET), { bigint: true });
      return `${st.ino}:${st.birthtimeNs || st.ctimeNs}`;
    } catch {
      return undefined;
    }
  }

  private async reconcile(): Promise<void> {
    if (this.stopped) return;
    if (!fs.existsSync(this.opts.pluginDir)) {
      this.log.warn('device-plugin directory vanished; re-creating it', { dir: this.opts.pluginDir });
      fs.mkdirSync(this.opts.pluginDir, { recursive: true });
      this.dirWatcher?.close();
      this.dirWatcher = undefined;
      this.watchPluginDir();
    }
    const desired = this.desired();
    for (const [name, plugin] of this.plugins) {
      if (!desired.has(name)) {
        await plugin.stop();
        this.plugins.delete(name);
        this.log.info('resource removed', { resource: plugin.resource });
      }
    }
    for (const [name, config] of desired) {
      const existing = this.plugins.get(name);
      const lower = config.lowerDevice === undefined ? undefined : this.links.byName(config.lowerDevice);
      if (!existing) {
        const plugin = new ResourcePlugin(config, this.opts.pluginDir, this.allocator, this.log);
        plugin.events = this.events;
        plugin.updateHealth(lower);
        this.plugins.set(name, plugin);
      } else if (!sameResource(existing.config, config)) {
        existing.reconfigure(config, lower);
      }
    }
    let failed = false;
    for (const plugin of this.plugins.values()) {
      if (this.stopped) return;
      // Read the kubelet's identity per plugin: it may restart while we work.
      const kubelet = this.kubeletIdentity();
      const kubeletChanged = plugin.registeredWith !== undefined && plugin.registeredWith !== kubelet;
      if (!plugin.socketIntact() || kubeletChanged) {
        if (kubeletChanged || plugin.registeredWith !== undefined) {
          this.log.info(
            kubeletChanged ? 'kubelet restarted: serving and registering again' : 'our socket was removed: serving and registering again',
            { resource: plugin.resource },
          );
        }
        await plugin.serve();
      }
      if (kubelet === undefined || plugin.registeredWith === kubelet) continue;
      try {
        await plugin.register(kubelet);
      } catch (err) {
        failed = true;
        this.events.emit('registrationFailed', { resource: plugin.resource });
        this.log.warn('registration with the kubelet failed; will retry', { resource: plugin.resource, err: errorMessage(err) });
      }
    }
    if (failed) this.scheduleRetry();
    else this.retryDelay = RETRY_MIN_MS;
  }
}
