/**
 * What bench/cni.ts and bench/concurrent.ts share: the contenders' paths (ours as deployed, kubevirt's Go
 * plugin, the embedded runtime's bare binary), timed process runs, scratch namespaces that are always
 * removed, and the prepared macvtaps both plugins expect (`mvt` + 12 hex of xxhash64(deviceID), the name
 * kubevirt's device plugin gives them, with an explicit ifindex).
 */
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import { Netns } from '../lib/netlink';
import { hostLinkName } from '../lib/naming';

export const ROOT = path.resolve(__dirname, '..', '..');
/** Where the prebuilt upstream binaries live (`../shared/upstream/` next to the repository). */
export const DEFAULT_UPSTREAM = path.resolve(ROOT, '..', 'shared', 'upstream', 'bin', 'upstream-macvtap-cni');
export const POD_IFNAME = 'net1';
export const MTU = 1400;

/** `--name VALUE` or `--name=VALUE` from argv. */
export function option(name: string): string | undefined {
  const eq = process.argv.find((a) => a.startsWith(`--${name}=`));
  if (eq) return eq.slice(name.length + 3);
  const at = process.argv.indexOf(`--${name}`);
  return at >= 0 ? process.argv[at + 1] : undefined;
}

export function intOption(name: string, fallback: number, min: number, max: number): number {
  const raw = option(name);
  if (raw === undefined) return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min || n > max) throw new RangeError(`--${name} must be an integer from ${min} to ${max}, got ${raw}`);
  return n;
}

export interface Paths {
  /** Our host executable as deployed (dist/host/macvtap unless --exe). */
  exe: string;
  /** kubevirt's Go plugin, or undefined (then every comparison is skipped with a message). */
  upstream: string | undefined;
  /** The stripped node binary build-host embeds (its `-e 0` is the runtime's own empty start). */
  runtime: string | undefined;
}

export function resolvePaths(): Paths {
  const exe = path.resolve(option('exe') ?? path.join(ROOT, 'dist', 'host', 'macvtap'));
  if (!fs.existsSync(exe)) throw new Error(`${exe} is missing: run \`node deploy/build-host.mjs\` first (or pass --exe PATH)`);
  const upstreamGiven = option('upstream');
  const upstreamPath = path.resolve(upstreamGiven ?? DEFAULT_UPSTREAM);
  const upstream = fs.existsSync(upstreamPath) ? upstreamPath : undefined;
  if (!upstream)
    console.log(`(no upstream plugin at ${upstreamPath}: comparisons with kubevirt's Go plugin are skipped; pass --upstream PATH)`);
  return { exe, upstream, runtime: strippedRuntime(exe) };
}

/** build-host's cached stripped copy of the embedded node (the newest, in the executable's .work dir). */
function strippedRuntime(exe: string): string | undefined {
  const given = option('runtime');
  if (given) return path.resolve(given);
  const work = path.join(path.dirname(exe), '.work');
  const found = fs.existsSync(work) ? fs.readdirSync(work).filter((f) => /^node-.*-stripped$/.test(f)) : [];
  const newest = found.map((f) => path.join(work, f)).sort((a, b) => fs.statSync(b).mtimeMs - fs.statSync(a).mtimeMs)[0];
  if (!newest) console.log(`(no stripped runtime in ${work}: the empty-start row is skipped; pass --runtime PATH)`);
  return newest;
}

/** Nearest-rank percentile (p in 0..100). */
export function percentile(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))];
}

export interface Run {
  ms: number;
  stdout: string;
}

/** One process as a runtime runs it (env + stdin in); wall ms from spawn to exit. Throws if it failed. */
export function runSync(cmd: string, args: string[], env: NodeJS.ProcessEnv, input: string, label: string): Run {
  const start = performance.now();
  const r = spawnSync(cmd, args, { env, input, encoding: 'utf8', timeout: 120_000 });
  const ms = performance.now() - start;
  if (r.status !== 0) throw new Error(`${label} failed (exit ${r.status ?? r.signal}): ${r.stdout}${r.stderr}`);
  return { ms, stdout: r.stdout };
}

/** The same, without blocking (for concurrent runs). */
export function runAsync(cmd: string, env: NodeJS.ProcessEnv, input: string, label: string): Promise<Run> {
  return new Promise((resolve, reject) => {
    const start = performance.now();
    const child = spawn(cmd, [], { env, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => {
      const ms = performance.now() - start;
      if (code === 0) resolve({ ms, stdout });
      else reject(new Error(`${label} failed (exit ${code}): ${stdout}${stderr}`));
    });
    child.stdin.end(input);
  });
}

/** The CNI environment of one call (MAC through CNI_ARGS: both plugins read it there). */
export function cniEnv(command: string, o: { netns: string; containerId: string; stateDir: string; mac: string }): NodeJS.ProcessEnv {
  return {
    PATH: '/usr/sbin:/usr/bin:/sbin:/bin',
    CNI_COMMAND: command,
    CNI_CONTAINERID: o.containerId,
    CNI_NETNS: o.netns,
    CNI_IFNAME: POD_IFNAME,
    CNI_PATH: '/usr/lib/cni',
    CNI_ARGS: `IgnoreUnknown=true;MAC=${o.mac}`,
    // Ours keeps its records there (host setting, from the environment); upstream ignores it.
    MACVTAP_CNI_STATE_DIR: o.stateDir,
  };
}

/** The network configuration: the same for both (0.4.0 is the newest version upstream speaks). */
export function netConf(deviceID: string): string {
  return JSON.stringify({ cniVersion: '0.4.0', name: 'bench', type: 'macvtap', deviceID, mtu: MTU });
}

/** Checks an ADD's answer names the pod interface with the MAC asked for. */
export function checkAddResult(stdout: string, mac: string, label: string): void {
  const r = JSON.parse(stdout) as { interfaces?: { name?: string; mac?: string }[] };
  const i = r.interfaces?.[0];
  if (i?.name !== POD_IFNAME || i.mac !== mac) throw new Error(`${label}: unexpected ADD result ${stdout}`);
}

/** A device's prepared macvtap, as kubevirt's device plugin leaves it: `mvt<hash>` on the lower, down. */
export interface Device {
  deviceID: string;
  name: string;
  index: number;
  mac: string;
}

export function device(deviceID: string, index: number): Device {
  const low = index & 0xffff;
  const mac = `02:be:00:00:${(low >> 8).toString(16).padStart(2, '0')}:${(low & 0xff).toString(16).padStart(2, '0')}`;
  return { deviceID, name: hostLinkName(deviceID), index, mac };
}

/**
 * Makes the device's macvtap afresh in `host` (upstream's DEL deletes it; ours returns it: recreating both
 * gives every ADD the same starting point). Whatever is left under its ifindex or name goes first.
 */
export function prepare(host: Netns, lowerIndex: number, d: Device): void {
  for (const ref of [d.index, d.name]) if (host.getLinkSync(ref)) host.deleteLinkSync(ref);
  host.createMacvtapSync({ name: d.name, lower: lowerIndex, mode: 'bridge', index: d.index });
}

/**
 * Scratch network namespaces and /dev/tap nodes, removed by `cleanup()` (also on SIGINT/SIGTERM).
 * `ip netns del` of a namespace destroys what is in it (a pod's macvtap too).
 */
export class Scratch {
  readonly namespaces: string[] = [];
  readonly tapIndexes: number[] = [];
  readonly dirs: string[] = [];
  constructor() {
    const onSignal = (sig: NodeJS.Signals): void => {
      this.cleanup();
      process.kill(process.pid, sig);
    };
    process.once('SIGINT', onSignal);
    process.once('SIGTERM', onSignal);
  }

  netns(name: string): string {
    ipMust(['netns', 'add', name]);
    this.namespaces.push(name);
    return name;
  }

  cleanup(): void {
    for (const ns of this.namespaces.splice(0).reverse()) spawnSync('ip', ['netns', 'del', ns], { stdio: 'ignore' });
    for (const i of this.tapIndexes.splice(0)) fs.rmSync(`/dev/tap${i}`, { force: true });
    for (const d of this.dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
  }
}

export function ipMust(args: string[]): void {
  const r = spawnSync('ip', args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`ip ${args.join(' ')}: ${r.stderr}`);
}

/** A veth lower device (up) in `ns`; returns its ifindex there. */
export function makeLower(ns: string): number {
  ipMust(['-n', ns, 'link', 'add', 'lower0', 'type', 'veth', 'peer', 'name', 'peer0']);
  ipMust(['-n', ns, 'link', 'set', 'lower0', 'up']);
  ipMust(['-n', ns, 'link', 'set', 'peer0', 'up']);
  const r = spawnSync('ip', ['-n', ns, '-j', 'link', 'show', 'dev', 'lower0'], { encoding: 'utf8' });
  return (JSON.parse(r.stdout) as { ifindex: number }[])[0].ifindex;
}

/** Re-runs this script inside `ns` (each contender is then spawned straight from the namespace it acts in). */
export function reexecInside(ns: string, script: string, args: string[]): number {
  const r = spawnSync('ip', ['netns', 'exec', ns, process.execPath, script, '--inner', ...args, ...process.argv.slice(2)], {
    stdio: 'inherit',
  });
  return r.status ?? 1;
}

export const fmt = (ms: number): string => `${ms.toFixed(1)} ms`;
export const ratio = (a: number, b: number): string => `${(a / b).toFixed(2)}×`;
