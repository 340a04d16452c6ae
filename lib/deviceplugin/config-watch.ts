/**
 * Following `--config FILE` while the daemon runs: where the configuration comes from, reading and parsing it
 * (start-up and reloads share one reader), and watching the file for changes. A change that does not parse, or
 * cannot be read, keeps the running configuration; one that parses is handed to the daemon with its problems,
 * and the daemon decides what to keep (config.ts's mergeReload).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ConfigError, ConfigProblem, parseConfig, PluginConfig } from './config';
import { readConfigFile } from './config-file';
import type { DaemonEvents } from './events';
import { errorMessage, Logger } from '../util/log';

export type ConfigSource = { kind: 'env'; name: string; text: string } | { kind: 'file'; path: string };

/** Coalesces the burst of events one ConfigMap update or editor save produces. */
const CONFIG_SETTLE_MS = 20;

/** Reads and parses a configuration source; hands every warning and skipped entry to `onProblem`; throws ConfigError. */
export function readConfig(
  source: ConfigSource,
  pluginDir?: string,
  onProblem?: (p: ConfigProblem) => void,
): { text: string; config: PluginConfig } {
  const text = source.kind === 'env' ? source.text : readConfigFile(source.path);
  return { text, config: parseConfig(text, source.kind === 'env' ? source.name : source.path, pluginDir, onProblem) };
}

export interface ConfigWatchOptions {
  file: string;
  /** The text the running configuration was parsed from (read at start-up, before the watch exists). */
  text: string;
  pluginDir: string;
  log: Logger;
  events: DaemonEvents;
  /** A new configuration that parsed, with the problems of its entries (already logged). */
  onChange: (next: PluginConfig, problems: ConfigProblem[]) => void;
}

export class ConfigWatch {
  private text: string | undefined;
  private watcher: fs.FSWatcher | undefined;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;

  constructor(private readonly opts: ConfigWatchOptions) {}

  /**
   * Watches the file's directory, not the file: a mounted ConfigMap is updated by swapping a symlink, which
   * replaces the file's inode; editors replace it too. The running configuration was read before the watch
   * existed (start-up validates it first), so the file is read once more after: a change made in between
   * produces no event and would otherwise wait for the next one.
   */
  start(): void {
    const { file, log } = this.opts;
    this.text = this.opts.text;
    try {
      this.watcher = fs.watch(path.dirname(path.resolve(file)), () => {
        clearTimeout(this.timer);
        this.timer = setTimeout(() => this.reload(), CONFIG_SETTLE_MS);
      });
      this.watcher.on('error', (err) => log.error('watching the configuration file failed', { file, err: errorMessage(err) }));
    } catch (err) {
      log.error('cannot watch the configuration file; changes need a restart', { file, err: errorMessage(err) });
    }
    this.timer = setTimeout(() => this.reload(), CONFIG_SETTLE_MS);
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
    this.watcher?.close();
  }

  private reload(): void {
    if (this.stopped) return;
    const { file, log, events } = this.opts;
    let text: string;
    try {
      text = readConfigFile(file);
    } catch (err) {
      if (this.text === undefined) return;
      this.text = undefined;
      log.error('configuration file is unreadable; keeping the running configuration', { file, problem: errorMessage(err) });
      events.emit('configReload', { result: 'unreadable' });
      return;
    }
    if (text === this.text) return;
    this.text = text;
    const problems: ConfigProblem[] = [];
    let next: PluginConfig;
    try {
      next = parseConfig(text, file, this.opts.pluginDir, (p) => problems.push(p));
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
      log.error('new configuration is invalid; keeping the running configuration', { file, problem: err.message });
      events.emit('configReload', { result: 'rejected' });
      return;
    }
    this.opts.onChange(next, problems);
  }
}
