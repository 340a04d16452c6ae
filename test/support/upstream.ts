/**
 * kubevirt's Go macvtap-cni binaries (`../shared/upstream/bin`, see its README), run for side-by-side and
 * migration tests. They are references to run, never code to read.
 *
 * Upstream's device plugin always uses `/var/lib/kubelet/device-plugins/`: it is run in a private mount
 * namespace (`unshare -m`) where a temp directory is bind-mounted on that path (over a tmpfs on the nearest
 * existing ancestor when the path does not exist here, so nothing is created on the host), and always inside
 * a test network namespace (with `[]` it would take every link of the namespace it runs in).
 */
import { ChildProcess, execFileSync, spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';

/** Where the upstream binaries are: `$MACVTAP_UPSTREAM_DIR`, else `../shared/upstream` beside the repository. */
export const UPSTREAM_DIR = process.env.MACVTAP_UPSTREAM_DIR ?? path.resolve(__dirname, '..', '..', '..', 'shared', 'upstream');
export const UPSTREAM_DP = path.join(UPSTREAM_DIR, 'bin', 'upstream-macvtap-deviceplugin');
export const UPSTREAM_CNI = path.join(UPSTREAM_DIR, 'bin', 'upstream-macvtap-cni');
export const UPSTREAM_TEMPNAME = path.join(UPSTREAM_DIR, 'bin', 'macvtap-tempname');
/** The path upstream's device plugin cannot be told to change. */
export const UPSTREAM_PLUGIN_DIR = '/var/lib/kubelet/device-plugins';

type Teardown = { teardown(fn: () => void | Promise<void>): void };

const LOCK_FILE = '/tmp/macvtap-cni-test-ifindex/kernel-chosen';
const LOCK_WAIT_MS = 10 * 60 * 1000;

/**
 * Upstream's device plugin cannot be given ifindexes: its macvtaps get the kernel's choice, the lowest free
 * index of a fresh namespace (4, 5, ...), whose /dev/tap<N> names every other fresh namespace would pick too.
 * Tests that let the kernel choose therefore run one at a time on the machine: this waits for, and holds
 * until teardown, the one claim (an O_EXCL file naming our pid; a dead owner's claim is taken over).
 * Everything else uses claimIfindexes() blocks, far above these indexes.
 */
export async function lockKernelChosenIfindexes(t: Teardown): Promise<void> {
  fs.mkdirSync(path.dirname(LOCK_FILE), { recursive: true });
  const deadline = Date.now() + LOCK_WAIT_MS;
  for (;;) {
    try {
      fs.writeFileSync(LOCK_FILE, String(process.pid), { flag: 'wx' });
      break;
    } catch {
      let owner: number;
      try {
        owner = Number(fs.readFileSync(LOCK_FILE, 'utf8'));
      } catch {
        continue; // released between our attempt and the read
      }
      if (owner && owner !== process.pid && !alive(owner)) fs.rmSync(LOCK_FILE, { force: true });
      else if (Date.now() > deadline) throw new Error(`${LOCK_FILE} held by pid ${owner} for ${LOCK_WAIT_MS} ms`);
      else await new Promise((r) => setTimeout(r, 200));
    }
  }
  t.teardown(() => {
    if (fs.readFileSync(LOCK_FILE, { encoding: 'utf8', flag: 'r' }) === String(process.pid)) fs.rmSync(LOCK_FILE, { force: true });
  });
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** A tap `skip` value: false when every upstream binary is there, else the message saying what is missing. */
export function upstreamMissing(): string | false {
  const missing = [UPSTREAM_DP, UPSTREAM_CNI, UPSTREAM_TEMPNAME].filter((f) => {
    try {
      fs.accessSync(f, fs.constants.X_OK);
      return false;
    } catch {
      return true;
    }
  });
  if (missing.length === 0) return false;
  return `upstream binaries not found (${missing.join(', ')}); set MACVTAP_UPSTREAM_DIR or see ../shared/upstream/README.md`;
}

/** Upstream's `util.TemporaryInterfaceName(deviceID)` for each ID, as its own code computes it. */
export function upstreamTempNames(ids: string[]): string[] {
  return execFileSync(UPSTREAM_TEMPNAME, ids, { encoding: 'utf8' }).trim().split(/\s+/);
}

// Positional parameters: $1 the temp dir, $2 the binary, $3... its arguments.
const MOUNT_SCRIPT = `set -e
t=${UPSTREAM_PLUGIN_DIR}
if [ ! -d "$t" ]; then
  a=$t
  while [ ! -d "$a" ]; do a=$(dirname "$a"); done
  mount -t tmpfs -o size=1m,mode=0755 macvtap-test "$a"
  mkdir -p "$t"
fi
mount --bind "$1" "$t"
shift
exec "$@"`;

export class UpstreamDevicePlugin {
  readonly child: ChildProcess;
  /** glog lines (stderr). */
  log = '';
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;

  constructor(child: ChildProcess) {
    this.child = child;
    child.stdout?.setEncoding('utf8').on('data', (d: string) => (this.log += d));
    child.stderr?.setEncoding('utf8').on('data', (d: string) => (this.log += d));
    this.exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** Resolves once the log matches `re` (already or later). */
  async waitForLog(re: RegExp, timeoutMs = 20000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!re.test(this.log)) {
      if (Date.now() > deadline)
        throw new Error(`upstream device plugin: no log line matching ${re} in ${timeoutMs} ms; log:\n${this.log}`);
      if (!this.running) throw new Error(`upstream device plugin exited; log:\n${this.log}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  /** SIGKILL (upstream does not exit promptly on SIGTERM) and wait. */
  async kill(): Promise<void> {
    if (this.running) this.child.kill('SIGKILL');
    await this.exited;
  }
}

/**
 * Starts upstream's device plugin in network namespace `ns`, serving in `pluginDir` (seen by it as
 * /var/lib/kubelet/device-plugins), with DP_MACVTAP_CONF = `conf` (unset when undefined). Killed at teardown.
 */
export function startUpstreamDevicePlugin(t: Teardown, ns: string, pluginDir: string, conf: string | undefined): UpstreamDevicePlugin {
  const env: NodeJS.ProcessEnv = { PATH: process.env.PATH };
  if (conf !== undefined && conf !== null) env.DP_MACVTAP_CONF = conf;
  const child = spawn(
    'ip',
    [
      'netns',
      'exec',
      ns,
      'unshare',
      '-m',
      '--propagation',
      'private',
      'sh',
      '-c',
      MOUNT_SCRIPT,
      'sh',
      pluginDir,
      UPSTREAM_DP,
      '-logtostderr',
      '-v',
      '3',
    ],
    { env, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  const dp = new UpstreamDevicePlugin(child);
  t.teardown(() => dp.kill());
  return dp;
}

export interface CniOutcome {
  status: number | null;
  stdout: string;
  stderr: string;
}

/** Runs upstream's CNI plugin once inside network namespace `ns` (the node) with `env` and `stdin`. */
export function runUpstreamCni(ns: string, env: Record<string, string>, stdin: string): CniOutcome {
  const r = spawnSync('ip', ['netns', 'exec', ns, UPSTREAM_CNI], {
    env: { PATH: process.env.PATH, ...env },
    input: stdin,
    encoding: 'utf8',
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}
