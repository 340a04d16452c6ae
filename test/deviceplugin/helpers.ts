/**
 * Runs the built daemon (`dist/bin/macvtap-deviceplugin.js`) as production does, inside a test namespace
 * through `ip netns exec` (so that namespace is its "host"), against a KubeletStandIn in a temp directory.
 * Everything is torn down at the end of the test: the daemon is stopped (killed if it will not stop), the
 * stand-in stopped and the temp directory removed.
 */
import { ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { IpLink, ipLink } from '../support/kernel';
import { KubeletStandIn } from '../support/kubelet';

export const DAEMON = path.resolve(__dirname, '../../dist/bin/macvtap-deviceplugin.js');
export const PREFIX = 'macvtap.network.kubevirt.io';

type Teardown = { teardown(fn: () => void | Promise<void>): void };

/** A temp directory removed at teardown. */
export function tempDir(t: Teardown, prefix = 'mvtdp-'): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

export function assertBuilt(): void {
  if (!fs.existsSync(DAEMON)) throw new Error(`${DAEMON} is missing: run \`npx tsc -p .\` before these tests`);
}

export interface LogLine {
  level: string;
  msg: string;
  resource?: string;
  [key: string]: unknown;
}

export class DaemonProcess {
  readonly child: ChildProcess;
  readonly logs: LogLine[] = [];
  /** stdout lines that were not JSON (there must be none). */
  readonly garbage: string[] = [];
  stderr = '';
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  private waiters: (() => void)[] = [];

  constructor(child: ChildProcess) {
    this.child = child;
    let buf = '';
    child.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
      buf += chunk;
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        try {
          this.logs.push(JSON.parse(line) as LogLine);
        } catch {
          this.garbage.push(line);
        }
        for (const w of this.waiters) w();
      }
    });
    child.stderr?.setEncoding('utf8').on('data', (chunk: string) => (this.stderr += chunk));
    this.exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
  }

  /** `ip netns exec` execs node, so this is the daemon's own pid. */
  get pid(): number {
    return this.child.pid as number;
  }

  /** Resolves with the first log line (already seen or future) accepted by `predicate`. */
  waitForLog(predicate: (l: LogLine) => boolean, timeoutMs = 10000): Promise<LogLine> {
    return new Promise((resolve, reject) => {
      const check = (): boolean => {
        const hit = this.logs.find(predicate);
        if (!hit) return false;
        clearTimeout(timer);
        this.waiters = this.waiters.filter((w) => w !== waiter);
        resolve(hit);
        return true;
      };
      const waiter = (): void => void check();
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== waiter);
        reject(
          new Error(`timed out waiting for a daemon log line; stderr: ${this.stderr}; last logs: ${JSON.stringify(this.logs.slice(-5))}`),
        );
      }, timeoutMs);
      if (!check()) this.waiters.push(waiter);
    });
  }
}

export interface StartOptions {
  ns: string;
  /** DP_MACVTAP_CONF; omit to leave it unset. */
  env?: string;
  args?: string[];
  /** Start the kubelet stand-in before the daemon (default true); false: only once the daemon has started. */
  kubelet?: boolean;
  /** MACVTAP_TEST_FAULT for the daemon, e.g. `Start:config-read:pause` (lib/util/faults.ts). */
  fault?: string;
}

export interface Started {
  daemon: DaemonProcess;
  kubelet: KubeletStandIn;
  dir: string;
  pluginDir: string;
  stateDir: string;
}

/** Spawns the daemon; `pluginDir` and `stateDir` are fresh temp directories unless given in `args`. */
export async function startDaemon(t: Teardown, opts: StartOptions): Promise<Started> {
  assertBuilt();
  const dir = tempDir(t);
  const pluginDir = path.join(dir, 'dp');
  const stateDir = path.join(dir, 'state');
  fs.mkdirSync(pluginDir);
  let kubelet = opts.kubelet === false ? undefined : await KubeletStandIn.start(pluginDir);
  const daemon = spawnDaemon(
    t,
    opts.ns,
    ['--device-plugin-path', pluginDir, '--state-dir', stateDir, '--log-level', 'debug', ...(opts.args ?? [])],
    opts.env,
    opts.fault,
  );
  if (!kubelet) {
    await daemon.waitForLog((l) => l.msg === 'started');
    kubelet = await KubeletStandIn.start(pluginDir);
  }
  const k = kubelet;
  t.teardown(() => k.stop());
  return { daemon, kubelet: k, dir, pluginDir, stateDir };
}

/** Spawns the daemon with exactly these arguments; stops it at teardown. */
export function spawnDaemon(t: Teardown, ns: string, args: string[], env?: string, fault?: string): DaemonProcess {
  assertBuilt();
  const childEnv: NodeJS.ProcessEnv = { ...process.env };
  delete childEnv.DP_MACVTAP_CONF;
  delete childEnv.MACVTAP_TEST_FAULT;
  if (env !== undefined) childEnv.DP_MACVTAP_CONF = env;
  if (fault !== undefined) childEnv.MACVTAP_TEST_FAULT = fault;
  const child = spawn('ip', ['netns', 'exec', ns, process.execPath, DAEMON, ...args], { env: childEnv, stdio: ['ignore', 'pipe', 'pipe'] });
  const daemon = new DaemonProcess(child);
  t.teardown(async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGCONT'); // a daemon paused at a fault point would not see SIGTERM
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
    await daemon.exited;
    clearTimeout(timer);
  });
  return daemon;
}

/** Number of open fds of a process. */
export function fdCount(pid: number): number {
  return fs.readdirSync(`/proc/${pid}/fd`).length;
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** The oracle's view of a link that must exist (throws, naming it, when it does not). */
export function requireLink(ns: string, name: string): IpLink {
  const link = ipLink(ns, name);
  if (!link) throw new Error(`link ${name} does not exist in ${ns}`);
  return link;
}
