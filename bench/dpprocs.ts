/**
 * The processes bench/deviceplugin.ts compares, each in a scratch "node" namespace of its own with a veth
 * lower device and a kubelet stand-in in a temp directory, and what it reads about them from /proc.
 *
 * - ours: the host executable as it ships (`dist/host/macvtap-deviceplugin`, `npm run build:host`), with the
 *   NODE_OPTIONS the DaemonSet sets, its HTTP endpoint on 127.0.0.1:9735 in its namespace;
 * - upstream: kubevirt's Go plugin, which always uses /var/lib/kubelet/device-plugins: it runs under
 *   `unshare -m` with the temp directory bind-mounted over that path (on a tmpfs over /var/lib when the
 *   machine has no /var/lib/kubelet), so the machine's own directories are never touched;
 * - bare: the runtime the executable embeds, idling, as the RSS baseline.
 */
import { ChildProcess, execFileSync, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ip } from '../test/support/kernel';
import { KubeletStandIn } from '../test/support/kubelet';

export const RES = 'macvtap.network.kubevirt.io/dataplane';
export const METRICS_PORT = 9735;
const CLK_TCK = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
const PAGE = Number(execFileSync('getconf', ['PAGESIZE'], { encoding: 'utf8' }).trim()) || 4096;

/**
 * CPU seconds (utime+stime) and RSS bytes of a process, from /proc/PID/stat; peak RSS (VmHWM) and its anonymous
 * part (RssAnon: heaps, stacks; the rest is pages of the executable file, which the kernel can drop) from status.
 */
export function procStat(pid: number): { cpu: number; rss: number; peak: number; anon: number } {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // f[0] is field 3 (state): utime is field 14, stime 15, rss 24.
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (field: string): number => Number(new RegExp(`${field}:\\s+(\\d+) kB`).exec(status)?.[1] ?? NaN) * 1024;
  return { cpu: (Number(f[11]) + Number(f[12])) / CLK_TCK, rss: Number(f[21]) * PAGE, peak: kb('VmHWM'), anon: kb('RssAnon') };
}

export type Cleanup = () => void | Promise<void>;

export interface Node {
  name: string;
  ns: string;
  pluginDir: string;
  kubelet: KubeletStandIn;
  child: ChildProcess;
  pid: number;
  exited: Promise<unknown>;
  /** A kubelet restart: every socket deleted, a fresh kubelet.sock. */
  restartKubelet(): Promise<void>;
}

/**
 * A namespace with lower0/peer0 (veth, up) at ifindexes `firstIndex`, `firstIndex + 1`. Links the kernel numbers
 * itself (upstream's) still count from 2 upwards: an explicit index does not move the kernel's cursor.
 */
function nodeNetns(cleanups: Cleanup[], name: string, firstIndex: number): string {
  const ns = `mvtbench-${name}-${process.pid}`;
  ip('netns', 'add', ns);
  cleanups.push(() => void ip('netns', 'del', ns));
  ip(
    '-n',
    ns,
    'link',
    'add',
    'lower0',
    'index',
    String(firstIndex),
    'type',
    'veth',
    'peer',
    'name',
    'peer0',
    'index',
    String(firstIndex + 1),
  );
  for (const l of ['lo', 'lower0', 'peer0']) ip('-n', ns, 'link', 'set', l, 'up');
  return ns;
}

async function startNode(
  cleanups: Cleanup[],
  name: string,
  dir: string,
  firstIndex: number,
  argv: (ns: string, pluginDir: string) => string[],
  env: NodeJS.ProcessEnv,
  goClient = false,
): Promise<Node> {
  const ns = nodeNetns(cleanups, name, firstIndex);
  const pluginDir = path.join(dir, name, 'dp');
  // A Go plugin (upstream's) sends its socket path as :authority: the stand-in's relay lets it register.
  const kubelet = await KubeletStandIn.start(pluginDir, { grpcGoClients: goClient });
  cleanups.push(() => kubelet.stop());
  const restartKubelet = (): Promise<void> => kubelet.restart();
  const child = spawn('ip', ['netns', 'exec', ns, ...argv(ns, pluginDir)], { env, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr?.setEncoding('utf8').on('data', (c: string) => (stderr = (stderr + c).slice(-4000)));
  const exited = new Promise((r) => child.on('exit', r));
  cleanups.push(async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(timer);
  });
  await Promise.race([
    kubelet
      .waitForDevices(RES, (l) => l.length === 100 && l.every((d) => d.health === 'Healthy'), 30000)
      .catch((err: Error) => {
        throw new Error(`${name}: ${err.message}; its stderr: ${stderr}`);
      }),
    exited.then(() => {
      throw new Error(`${name} exited at start: ${stderr}`);
    }),
  ]);
  return { name, ns, pluginDir, kubelet, child, pid: child.pid as number, exited, restartKubelet };
}

const CONF = JSON.stringify([{ name: 'dataplane', lowerDevice: 'lower0', mode: 'bridge', capacity: 100 }]);

/** The host executable with `nodeOptions` (the DaemonSet's NODE_OPTIONS), reclamation and metrics on as deployed. */
export function startOurs(cleanups: Cleanup[], dir: string, exe: string, nodeOptions: string, firstIndex: number): Promise<Node> {
  // Tap nodes Allocate made in our range (the kernel removes only the nodes it made itself).
  cleanups.push(() => {
    for (const f of fs.readdirSync('/dev')) {
      const i = /^tap(\d+)$/.exec(f) ? Number(f.slice(3)) : NaN;
      if (i >= firstIndex && i < firstIndex + 100000) fs.rmSync(`/dev/${f}`, { force: true });
    }
  });
  const env: NodeJS.ProcessEnv = { ...process.env, DP_MACVTAP_CONF: CONF, NODE_OPTIONS: nodeOptions };
  return startNode(
    cleanups,
    'ours',
    dir,
    firstIndex,
    (_ns, pluginDir) => [
      exe,
      '--device-plugin-path',
      pluginDir,
      '--state-dir',
      path.join(path.dirname(pluginDir), 'state'),
      '--ifindex-range',
      `${firstIndex + 2}-${firstIndex + 99999}`,
      '--log-level',
      'warn',
      '--metrics-listen',
      `127.0.0.1:${METRICS_PORT}`,
      '--reclaim',
      'on',
    ],
    env,
  );
}

/** kubevirt's plugin in a private mount namespace whose /var/lib/kubelet/device-plugins is our temp dir. */
export function startUpstream(cleanups: Cleanup[], dir: string, exe: string, firstIndex: number): Promise<Node> {
  const script = [
    'set -e',
    // Only in this mount namespace: a tmpfs over /var/lib when the machine has no kubelet directory.
    '[ -d /var/lib/kubelet ] || { mount -t tmpfs -o size=1m,mode=755 mvtbench /var/lib; mkdir -p /var/lib/kubelet/device-plugins; }',
    'mkdir -p /var/lib/kubelet/device-plugins',
    'mount --bind "$MVT_PLUGIN_DIR" /var/lib/kubelet/device-plugins',
    'exec "$MVT_UPSTREAM" -logtostderr -v 0',
  ].join('\n');
  return startNode(
    cleanups,
    'upstream',
    dir,
    firstIndex,
    (_ns, pluginDir) => [
      'unshare',
      '-m',
      '--propagation',
      'private',
      'env',
      `MVT_PLUGIN_DIR=${pluginDir}`,
      `MVT_UPSTREAM=${exe}`,
      'sh',
      '-c',
      script,
    ],
    { ...process.env, DP_MACVTAP_CONF: CONF },
    true,
  );
}

/** The embedded runtime idling (`-e 'setInterval(...)'`): the RSS floor of any Node program. */
export function startBare(cleanups: Cleanup[], runtime: string): ChildProcess {
  const bare = spawn(runtime, ['-e', 'setInterval(() => {}, 1 << 30)'], { stdio: 'ignore', env: { ...process.env, NODE_OPTIONS: '' } });
  cleanups.push(() => void bare.kill('SIGKILL'));
  return bare;
}

/** The runtime inside the host executable: the stripped node it was built from (build-host caches it), else this one. */
export function embeddedRuntime(hostDir: string): string {
  const work = path.join(hostDir, '.work');
  const stripped = fs.existsSync(work) ? fs.readdirSync(work).find((f) => /^node-.*-stripped$/.test(f)) : undefined;
  return stripped ? path.join(work, stripped) : process.execPath;
}

/** NODE_OPTIONS as deploy/base/daemonset.yaml sets it for the device plugin ('' when it sets none). */
export function deployedNodeOptions(root: string): string {
  const yaml = fs.readFileSync(path.join(root, 'deploy/base/daemonset.yaml'), 'utf8');
  const m = /- name: NODE_OPTIONS\s+value:\s*["']?([^"'\n]*)["']?/.exec(yaml);
  return m ? m[1].trim() : '';
}
