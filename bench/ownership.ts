/**
 * What the ownership check costs ADD (`npm run bench:ownership`): the CNI's ADD wall time, one process per call
 * as a runtime runs it, with the check on (`ownership: enforce`, K8S_POD_UID in CNI_ARGS, a kubelet checkpoint of
 * 500 pods x 4 devices with their allocation responses, written as the kubelet writes it, this pod's entry last)
 * against the same ADD without it (`ownership: off`). The two are interleaved call by call (ADD, DEL, checked ADD,
 * DEL, ...) so that machine noise hits both alike; medians of the same run. Also: the check as each checked ADD
 * timed it inside its own (cold) process (the `ownership` phase of its debug log), and reading and searching the
 * checkpoint alone in this warm process.
 *
 * Options: `--iterations N` / BENCH_ITERATIONS (default 30), `--pods N` / BENCH_PODS (default 500),
 * `--devices N` / BENCH_DEVICES (default 4), `--exe PATH` (default: dist/host/macvtap, the host executable as
 * deployed, where it is built; else node dist/bin/macvtap.js). Needs root; everything lives in two scratch namespaces and a temp
 * directory, removed at exit and on error.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import { checkpointPath, holdersOf, readCheckpoint } from '../lib/kubelet';
import { Netns } from '../lib/netlink';
import { encodeContainerAllocateResponse, KubeletCheckpoint } from '../test/support/checkpoint';
import { ip } from '../test/support/kernel';
import { median } from './stats';

const ROOT = path.resolve(__dirname, '..', '..');
const PLUGIN = path.join(ROOT, 'dist', 'bin', 'macvtap.js');
const HOST_EXE = path.join(ROOT, 'dist', 'host', 'macvtap');

/** What is timed: `--exe PATH`, else the host executable as deployed where it is built, else node + the bundle. */
function pluginCommand(): string[] {
  const at = process.argv.indexOf('--exe');
  if (at >= 0 && process.argv[at + 1]) return [path.resolve(process.argv[at + 1])];
  return fs.existsSync(HOST_EXE) ? [HOST_EXE] : [process.execPath, PLUGIN];
}
const RESOURCE = 'macvtap.network.kubevirt.io/dataplane';
/** Above the tests' ifindex range and the other benches'. */
const INDEX = 63500;
const POD_UID = 'b3nch000-0000-4000-8000-000000000000';

function option(name: string, envName: string, fallback: number): number {
  const at = process.argv.indexOf(`--${name}`);
  const raw = at >= 0 ? process.argv[at + 1] : process.env[envName];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1 || n > 100_000) throw new RangeError(`--${name} must be a positive integer, got ${raw}`);
  return n;
}

function ms(start: number): number {
  return performance.now() - start;
}

function main(): number {
  if (process.getuid?.() !== 0) {
    console.error('bench:ownership needs root: it moves a macvtap between scratch namespaces.');
    return 1;
  }
  const iterations = option('iterations', 'BENCH_ITERATIONS', 30);
  const pods = option('pods', 'BENCH_PODS', 500);
  const perPod = option('devices', 'BENCH_DEVICES', 4);
  const id = `${process.pid}`;
  const hostNs = `mvtbo-host-${id}`;
  const podNs = `mvtbo-pod-${id}`;
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'macvtap-bench-own-'));
  const cleanup = (): void => {
    for (const ns of [podNs, hostNs]) {
      try {
        Netns.remove(ns);
      } catch {
        /* not made */
      }
    }
    fs.rmSync(work, { recursive: true, force: true });
  };
  try {
    for (const ns of [hostNs, podNs]) Netns.create(ns).close();
    ip('-n', hostNs, 'link', 'add', 'lower0', 'type', 'veth', 'peer', 'name', 'peer0');
    ip('-n', hostNs, 'link', 'set', 'lower0', 'up');
    ip('-n', hostNs, 'link', 'add', 'link', 'lower0', 'name', 'benchown0', 'index', String(INDEX), 'type', 'macvtap', 'mode', 'bridge');

    // The kubelet's checkpoint of a full node; this pod's entry (holding the benched device) comes last.
    const kubeletRoot = path.join(work, 'kubelet');
    const cp = new KubeletCheckpoint(path.join(kubeletRoot, 'device-plugins'));
    for (let p = 0; p < pods; p++) {
      const uid = p === pods - 1 ? POD_UID : `${p.toString(16).padStart(8, '0')}-0000-4000-8000-${p.toString().padStart(12, '0')}`;
      const ids = Array.from({ length: perPod }, (_, d) => (p === pods - 1 && d === 0 ? 'benchown0' : `dataplaneMvp${p * perPod + d}`));
      const alloc = encodeContainerAllocateResponse({
        envs: {},
        mounts: [],
        devices: ids.map((_, d) => ({
          containerPath: `/dev/tap${20000 + p * perPod + d}`,
          hostPath: `/dev/tap${20000 + p * perPod + d}`,
          permissions: 'rw',
        })),
        annotations: {},
        cdiDevices: [],
      });
      cp.assign(uid, 'compute', RESOURCE, ids, alloc);
    }
    cp.write();
    const bytes = fs.statSync(cp.path).size;

    const stateDir = path.join(work, 'state');
    const logFile = path.join(work, 'plugin.log');
    const config = JSON.stringify({ cniVersion: '1.1.0', name: 'bench', type: 'macvtap', deviceID: 'benchown0', mac: '02:00:00:00:b0:01' });
    const env = (command: string, ownership: 'enforce' | 'off'): NodeJS.ProcessEnv => ({
      PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin',
      CNI_COMMAND: command,
      CNI_CONTAINERID: 'benchown',
      CNI_NETNS: `/var/run/netns/${podNs}`,
      CNI_IFNAME: 'net1',
      CNI_PATH: '/opt/cni/bin',
      CNI_ARGS: `IgnoreUnknown=true;K8S_POD_NAMESPACE=bench;K8S_POD_NAME=bench;K8S_POD_UID=${POD_UID}`,
      MACVTAP_CNI_STATE_DIR: stateDir,
      MACVTAP_CNI_KUBELET_ROOT: kubeletRoot,
      MACVTAP_CNI_OWNERSHIP: ownership,
      MACVTAP_CNI_HOST_CONFIG: path.join(work, 'none.json'),
      // Debug level: each ADD logs its time per phase, the check's own included.
      MACVTAP_CNI_LOG_LEVEL: 'debug',
      MACVTAP_CNI_LOG_FILE: logFile,
    });
    let logOffset = 0;
    /** The `ownership` phase (ms) of the last ADD, as its process timed it. */
    const lastCheckMs = (): number => {
      const text = fs.readFileSync(logFile, 'utf8');
      const m = /ADD phases \(ms\): ownership ([\d.]+)/.exec(text.slice(logOffset));
      logOffset = text.length;
      if (!m) throw new Error('the ADD logged no ownership phase');
      return Number(m[1]);
    };
    const plugin = pluginCommand();
    const call = (command: string, ownership: 'enforce' | 'off'): number => {
      const t0 = performance.now();
      const r = spawnSync('ip', ['netns', 'exec', hostNs, ...plugin], {
        env: env(command, ownership),
        input: config,
        encoding: 'utf8',
      });
      const took = ms(t0);
      if (r.status !== 0) throw new Error(`${command} (ownership ${ownership}) failed: ${r.stdout}${r.stderr}`);
      return took;
    };

    const plain: number[] = [];
    const checked: number[] = [];
    const inProcess: number[] = [];
    // Two warm-up rounds (page cache, first-run costs) are not counted.
    for (let i = 0; i < iterations + 2; i++) {
      const a = call('ADD', 'off');
      lastCheckMs();
      call('DEL', 'off');
      const b = call('ADD', 'enforce');
      const own = lastCheckMs();
      call('DEL', 'off');
      if (i >= 2) {
        plain.push(a);
        checked.push(b);
        inProcess.push(own);
      }
    }

    // The check alone, in-process: read + parse + search, as ADD does it once.
    const file = checkpointPath(kubeletRoot);
    const alone: number[] = [];
    for (let i = 0; i < Math.max(iterations, 20); i++) {
      const t0 = performance.now();
      const found = holdersOf(readCheckpoint(file), 'benchown0');
      alone.push(ms(t0));
      if (found[0]?.podUID !== POD_UID) throw new Error('the benched pod is not in the checkpoint');
    }

    const mp = median(plain);
    const mc = median(checked);
    console.log(
      `bench:ownership  ${iterations} interleaved ADDs each of ${plugin.map((p) => path.relative(ROOT, p)).join(' ')}; checkpoint ${pods} pods x ${perPod} devices, ${(bytes / 1024).toFixed(0)} KiB`,
    );
    console.log(`  ADD, ownership off                   median ${mp.toFixed(2)} ms`);
    console.log(
      `  ADD, ownership enforce (checked)     median ${mc.toFixed(2)} ms   (${mc - mp >= 0 ? '+' : ''}${(mc - mp).toFixed(2)} ms, ${(((mc - mp) / mp) * 100).toFixed(1)}%)`,
    );
    console.log(`  the check inside each checked ADD    median ${median(inProcess).toFixed(2)} ms   (cold process, its own timing)`);
    console.log(`  the check alone, warm process        median ${median(alone).toFixed(2)} ms   (read + parse + search)`);
    return 0;
  } finally {
    cleanup();
  }
}

try {
  process.exitCode = main();
} catch (err) {
  console.error(`bench:ownership: ${(err as Error).message}`);
  process.exitCode = 1;
}
