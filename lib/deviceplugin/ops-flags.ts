/**
 * The command-line flags of the operations around the daemon (ops.ts): metrics/health endpoint and
 * reclamation. Parsed here so the program's own argument loop only hands over the flags it does not know.
 */
import * as path from 'node:path';
import type { OperationsOptions, ReclaimSettings } from './ops';
import { podResourcesSocket } from './podresources';

/** Where to listen: `--metrics-listen [HOST:]PORT`. */
export interface ListenAddress {
  host: string;
  port: number;
}

/** Parses `[HOST:]PORT` (`9735`, `:9735`, `127.0.0.1:9735`, `[::1]:9735`); returns a message when it is not one. */
export function parseListenAddress(text: string): ListenAddress | string {
  const m = /^(?:(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]*):)?(\d{1,5})$/.exec(text);
  if (!m) return `expected [HOST:]PORT, got ${JSON.stringify(text)}`;
  const port = Number(m[2]);
  if (port > 65535) return `port ${port} is above 65535`;
  const host = m[1] === undefined || m[1] === '' ? '0.0.0.0' : m[1].replace(/^\[|\]$/g, '');
  return { host, port };
}

/** Environment variable for `--metrics-listen` (a flag wins over it). */
export const METRICS_LISTEN_ENV = 'MACVTAP_METRICS_LISTEN';
export const DEFAULT_RECLAIM_GRACE_S = 300;
export const DEFAULT_RECLAIM_INTERVAL_S = 60;

export const OPS_USAGE = `  --metrics-listen [HOST:]PORT  serve /metrics, /healthz and /readyz over HTTP (default off; $${METRICS_LISTEN_ENV})
  --metrics-on-error MODE       if that port cannot be had: disable (serve the kubelet without it, the default) | exit
  --reclaim MODE                off (default) | on | dry-run: delete macvtaps and records of devices no pod holds
  --reclaim-grace SECONDS       only devices allocated longer ago than this (default ${DEFAULT_RECLAIM_GRACE_S})
  --reclaim-interval SECONDS    how often to look (default ${DEFAULT_RECLAIM_INTERVAL_S}; also once at start)
  --pod-resources-socket PATH   the kubelet's pod-resources API (default <kubelet root>/pod-resources/kubelet.sock,
                                where <kubelet root> is the parent of --device-plugin-path)
`;

/** A flag's value was wrong; the message names the flag and the value. */
export class OpsFlagError extends Error {}

export class OpsFlags {
  listen: string | undefined;
  onListenError: 'disable' | 'exit' = 'disable';
  reclaim: 'off' | 'on' | 'dry-run' = 'off';
  graceS = DEFAULT_RECLAIM_GRACE_S;
  intervalS = DEFAULT_RECLAIM_INTERVAL_S;
  podResourcesSocket: string | undefined;

  /** Whether `flag` is one of these (then its value is needed). */
  static knows(flag: string): boolean {
    return [
      '--metrics-listen',
      '--metrics-on-error',
      '--reclaim',
      '--reclaim-grace',
      '--reclaim-interval',
      '--pod-resources-socket',
    ].includes(flag);
  }

  set(flag: string, value: string): void {
    const seconds = (max: number): number => {
      if (!/^\d{1,7}$/.test(value) || Number(value) < 1 || Number(value) > max)
        throw new OpsFlagError(`${flag} must be a whole number of seconds from 1 to ${max}, got ${JSON.stringify(value)}`);
      return Number(value);
    };
    switch (flag) {
      case '--metrics-listen':
        this.listen = value;
        break;
      case '--metrics-on-error':
        if (value !== 'disable' && value !== 'exit')
          throw new OpsFlagError(`--metrics-on-error must be disable or exit, got ${JSON.stringify(value)}`);
        this.onListenError = value;
        break;
      case '--reclaim':
        if (value !== 'off' && value !== 'on' && value !== 'dry-run')
          throw new OpsFlagError(`--reclaim must be off, on or dry-run, got ${JSON.stringify(value)}`);
        this.reclaim = value;
        break;
      case '--reclaim-grace':
        this.graceS = seconds(7 * 86400);
        break;
      case '--reclaim-interval':
        this.intervalS = seconds(86400);
        break;
      case '--pod-resources-socket':
        if (value === '') throw new OpsFlagError('--pod-resources-socket must not be empty');
        this.podResourcesSocket = value;
        break;
      default:
        throw new OpsFlagError(`unknown flag ${flag}`);
    }
  }

  /** The settings for Operations; reads $MACVTAP_METRICS_LISTEN when no flag was given. */
  resolve(env: NodeJS.ProcessEnv, pluginDir: string): Pick<OperationsOptions, 'listen' | 'onListenError' | 'reclaim'> {
    const text = this.listen ?? (env[METRICS_LISTEN_ENV] || undefined);
    let listen;
    if (text !== undefined) {
      const parsed = parseListenAddress(text);
      if (typeof parsed === 'string')
        throw new OpsFlagError(`${this.listen !== undefined ? '--metrics-listen' : METRICS_LISTEN_ENV}: ${parsed}`);
      listen = parsed;
    }
    let reclaim: ReclaimSettings | undefined;
    if (this.reclaim !== 'off') {
      reclaim = {
        graceMs: this.graceS * 1000,
        intervalMs: this.intervalS * 1000,
        dryRun: this.reclaim === 'dry-run',
        podResourcesSocket: this.podResourcesSocket ?? podResourcesSocket(path.dirname(path.resolve(pluginDir))),
      };
    }
    return { listen, onListenError: this.onListenError, reclaim };
  }
}
