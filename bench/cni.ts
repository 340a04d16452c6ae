/**
 * Benchmark of the CNI plugin's ADD and DEL wall time (`npm run bench:cni`), as a runtime sees it: one process
 * per call, env + stdin in, JSON out.
 *
 * Contenders, interleaved call by call so that machine noise hits every one alike:
 *   node -e 0       the runtime floor: starting Node and doing nothing (the baseline of every ratio)
 *   macvtap (node)  `node dist/bin/macvtap.js` ADD, then DEL (as built: tsc's modules, or one file after
 *                   `npm run build:cni`)
 *   macvtap (node, bundled)  the same entry bundled into one file by esbuild in this run (`build:cni`'s
 *                   command), to show what module loading costs
 *   macvtap (exe)   the single executable (dist/host/macvtap, or --exe PATH / MACVTAP_CNI_EXE), when present
 *   exe floor       the single executable's own start-up: VERSION, which touches no kernel state (when present)
 *   host-device     the reference Go plugin /usr/lib/cni/host-device (Debian containernetworking-plugins)
 *                   moving the same kind of link, when installed
 *   kernel only     the kernel work of an ADD (move + rename into the pod, then MAC/MTU/promisc/up) and of a DEL
 *                   (move back, restore), done in-process through the library: no process start, no CNI.
 *                   Moving a link between namespaces waits for RCU (synchronize_net, rcu_barrier), which costs
 *                   tens of milliseconds on some kernels and varies with the machine's load. It is the same for
 *                   every plugin that moves a link, so the bench also reports each ADD minus the move + set the
 *                   plugin timed inside its own process (it logs its phases at logLevel debug).
 * Each ADD moves a prepared macvtap (explicit ifindex, on a veth lower device) from a scratch "host" namespace
 * into a scratch "pod" namespace with a MAC and an MTU; each DEL returns it.
 *
 * The bench re-executes itself inside the scratch host namespace (`ip netns exec`), so every contender is
 * spawned directly, from the namespace it acts in, with no wrapper process in the timings.
 *
 * Options (argv or env): `--iterations N` / BENCH_ITERATIONS (default 40), `--exe PATH` / MACVTAP_CNI_EXE.
 * Needs root. Everything lives in two scratch namespaces and a temp state dir, removed at exit and on error.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import { Netns } from '../lib/netlink';
import { ip } from '../test/support/kernel';
import { median } from './stats';

const HOST_DEVICE = '/usr/lib/cni/host-device';
/** Above the test fixtures' ifindex range (20000-60000) and bench:netlink's (61000+). */
const FIRST_INDEX = 62000;
const POD_IFNAME = 'net1';
const ROOT = path.resolve(__dirname, '..', '..');
const PLUGIN = path.join(ROOT, 'dist', 'bin', 'macvtap.js');

function option(name: string, envName: string): string | undefined {
  const at = process.argv.indexOf(`--${name}`);
  return at >= 0 ? process.argv[at + 1] : process.env[envName] || undefined;
}

function iterations(): number {
  const raw = option('iterations', 'BENCH_ITERATIONS');
  if (raw === undefined) return 40;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 3 || n > 10000) throw new RangeError(`--iterations must be an integer from 3 to 10000, got ${raw}`);
  return n;
}

function exePath(): string | undefined {
  const given = option('exe', 'MACVTAP_CNI_EXE');
  const candidate = given ?? path.join(ROOT, 'dist', 'host', 'macvtap');
  if (fs.existsSync(candidate)) return path.resolve(candidate);
  if (given) throw new Error(`--exe ${given}: no such file`);
  return undefined;
}

/** Runs one command as a runtime does; returns wall ms. Throws with the plugin's output if it failed. */
function timed(cmd: string, args: string[], env: NodeJS.ProcessEnv, input: string, label: string): number {
  const start = performance.now();
  const r = spawnSync(cmd, args, { env, input, encoding: 'utf8' });
  const ms = performance.now() - start;
  if (r.status !== 0) throw new Error(`${label} failed (exit ${r.status}): ${r.stdout}${r.stderr}`);
  return ms;
}

interface Contender {
  label: string;
  add: () => number;
  del?: () => number;
}

/** bin/macvtap.ts as one file, as `npm run build:cni` makes it. */
function bundle(outfile: string): void {
  execFileSync(
    path.join(ROOT, 'node_modules', '.bin', 'esbuild'),
    [path.join(ROOT, 'bin', 'macvtap.ts'), '--bundle', '--platform=node', '--target=node20', `--outfile=${outfile}`, '--log-level=warning'],
    {
      stdio: ['ignore', 'ignore', 'inherit'],
    },
  );
}

/** Outer process: make the scratch namespaces, run the inner bench inside the host one, clean up. */
function outer(): void {
  if (process.getuid?.() !== 0) throw new Error('bench:cni needs root (it creates network namespaces)');
  if (!fs.existsSync(PLUGIN)) throw new Error(`${PLUGIN} is missing: run \`npx tsc -p .\` first`);
  const tag = `mvcb-${process.pid}`;
  const hostNs = `${tag}-host`;
  const podNs = `${tag}-pod`;
  const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'macvtap-bench-'));
  const cleanup = (): void => {
    for (const ns of [podNs, hostNs]) spawnSync('ip', ['netns', 'del', ns], { stdio: 'ignore' });
    fs.rmSync(stateDir, { recursive: true, force: true });
    for (let i = FIRST_INDEX; i < FIRST_INDEX + 4; i++) fs.rmSync(`/dev/tap${i}`, { force: true });
  };
  const onSignal = (sig: NodeJS.Signals): void => {
    cleanup();
    process.kill(process.pid, sig);
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    ip('netns', 'add', hostNs);
    ip('netns', 'add', podNs);
    ip('-n', hostNs, 'link', 'add', 'lower0', 'type', 'veth', 'peer', 'name', 'peer0');
    ip('-n', hostNs, 'link', 'set', 'lower0', 'up');
    ip('-n', hostNs, 'link', 'set', 'peer0', 'up');
    ip(
      '-n',
      hostNs,
      'link',
      'add',
      'link',
      'lower0',
      'name',
      'mvbench0',
      'index',
      String(FIRST_INDEX),
      'type',
      'macvtap',
      'mode',
      'bridge',
    );
    ip(
      '-n',
      hostNs,
      'link',
      'add',
      'link',
      'lower0',
      'name',
      'mvbench1',
      'index',
      String(FIRST_INDEX + 1),
      'type',
      'macvtap',
      'mode',
      'bridge',
    );
    ip(
      '-n',
      hostNs,
      'link',
      'add',
      'link',
      'lower0',
      'name',
      'mvbench2',
      'index',
      String(FIRST_INDEX + 2),
      'type',
      'macvtap',
      'mode',
      'bridge',
    );
    bundle(path.join(stateDir, 'macvtap.bundle.js'));
    const r = spawnSync(
      'ip',
      ['netns', 'exec', hostNs, process.execPath, __filename, '--inner', podNs, stateDir, ...process.argv.slice(2)],
      {
        stdio: 'inherit',
      },
    );
    if (r.status !== 0) process.exitCode = r.status ?? 1;
  } finally {
    cleanup();
  }
}

/** Inner process, inside the scratch host namespace. */
function inner(podNs: string, stateDir: string): void {
  const n = iterations();
  const exe = exePath();
  const netns = `/var/run/netns/${podNs}`;
  const baseEnv = { PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin', CNI_PATH: '/opt/cni/bin' };
  const cniEnv = (command: string, id: string): NodeJS.ProcessEnv => ({
    ...baseEnv,
    CNI_COMMAND: command,
    CNI_CONTAINERID: id,
    CNI_NETNS: netns,
    CNI_IFNAME: POD_IFNAME,
    CNI_ARGS: 'IgnoreUnknown=true;K8S_POD_NAMESPACE=bench;K8S_POD_NAME=bench;K8S_POD_INFRA_CONTAINER_ID=bench',
    // Host settings come from the runtime's environment (never the network configuration).
    MACVTAP_CNI_STATE_DIR: stateDir,
    MACVTAP_CNI_LOG_FILE: logFile,
    MACVTAP_CNI_LOG_LEVEL: 'debug',
  });
  // Debug level makes the plugin log its time per phase; the bench reads each ADD's own move + set from it.
  const logFile = path.join(stateDir, 'plugin.log');
  const macvtapConf = JSON.stringify({
    cniVersion: '1.0.0',
    name: 'bench',
    type: 'macvtap',
    deviceID: 'mvbench0',
    mac: '02:00:00:00:be:01',
    mtu: 1400,
  });
  let logOffset = 0;
  /** move + set (ms) of the last ADD, as the plugin measured them inside its own process (undefined for a build
   * that does not log its phases). */
  const lastAddKernelMs = (): number | undefined => {
    const text = fs.readFileSync(logFile, 'utf8');
    const fresh = text.slice(logOffset);
    logOffset = text.length;
    const m = /ADD phases \(ms\):.* move ([\d.]+), set ([\d.]+)/.exec(fresh);
    return m ? Number(m[1]) + Number(m[2]) : undefined;
  };
  const ownWork = new Map<string, number[]>();
  const addTimed = (label: string, cmd: string, args: string[], env: NodeJS.ProcessEnv): number => {
    const ms = timed(cmd, args, env, macvtapConf, `${label} ADD`);
    const kernel = lastAddKernelMs();
    if (kernel !== undefined) ownWork.set(label, [...(ownWork.get(label) ?? []), ms - kernel]);
    return ms;
  };
  const hostDeviceConf = JSON.stringify({ cniVersion: '1.0.0', name: 'bench-hd', type: 'host-device', device: 'mvbench1' });

  const bundled = path.join(stateDir, 'macvtap.bundle.js');
  const addon = path.join(ROOT, 'build', 'Release', 'macvtap_native.node');
  const host = Netns.current();
  const pod = Netns.open(netns);
  const kIndex = FIRST_INDEX + 2;
  const kOriginal = host.getLinkSync(kIndex);
  if (!kOriginal) throw new Error('mvbench2 missing');
  const kernelAdd = (): number => {
    const start = performance.now();
    host.moveLinkSync(kIndex, pod, { name: 'net2', index: kIndex });
    pod.setLinkSync(kIndex, { mac: '02:00:00:00:be:02', mtu: 1400, promisc: false, up: true });
    return performance.now() - start;
  };
  const kernelDel = (): number => {
    const start = performance.now();
    pod.moveLinkSync(kIndex, host, { name: 'mvbench2', index: kIndex });
    host.setLinkSync(kIndex, { mac: kOriginal.mac, mtu: kOriginal.mtu, promisc: false, up: false });
    return performance.now() - start;
  };

  const contenders: Contender[] = [
    { label: 'node -e 0', add: () => timed(process.execPath, ['-e', '0'], baseEnv, '', 'node -e 0') },
    { label: 'kernel only (in-process)', add: kernelAdd, del: kernelDel },
    {
      label: 'macvtap (node)',
      add: () => addTimed('macvtap (node)', process.execPath, [PLUGIN], cniEnv('ADD', 'benchnode')),
      del: () => timed(process.execPath, [PLUGIN], cniEnv('DEL', 'benchnode'), macvtapConf, 'macvtap DEL'),
    },
    {
      label: 'macvtap (node, bundled)',
      add: () =>
        addTimed('macvtap (node, bundled)', process.execPath, [bundled], { ...cniEnv('ADD', 'benchbundle'), MACVTAP_NATIVE_ADDON: addon }),
      del: () =>
        timed(process.execPath, [bundled], { ...cniEnv('DEL', 'benchbundle'), MACVTAP_NATIVE_ADDON: addon }, macvtapConf, 'bundled DEL'),
    },
  ];
  if (exe) {
    contenders.push(
      {
        label: 'exe floor (VERSION)',
        add: () => timed(exe, [], { ...baseEnv, CNI_COMMAND: 'VERSION' }, '{"cniVersion":"1.0.0"}', 'exe VERSION'),
      },
      {
        label: 'macvtap (exe)',
        add: () => addTimed('macvtap (exe)', exe, [], cniEnv('ADD', 'benchexe')),
        del: () => timed(exe, [], cniEnv('DEL', 'benchexe'), macvtapConf, 'exe DEL'),
      },
    );
  }
  if (fs.existsSync(HOST_DEVICE)) {
    contenders.push({
      label: 'host-device (Go)',
      add: () => timed(HOST_DEVICE, [], cniEnv('ADD', 'benchhd'), hostDeviceConf, 'host-device ADD'),
      del: () => timed(HOST_DEVICE, [], cniEnv('DEL', 'benchhd'), hostDeviceConf, 'host-device DEL'),
    });
  }

  const add = new Map<string, number[]>(contenders.map((c) => [c.label, []]));
  const del = new Map<string, number[]>(contenders.map((c) => [c.label, []]));
  // One warm-up round (page cache, dentries), then the measured ones.
  for (let i = -1; i < n; i++) {
    if (i === 0) ownWork.clear();
    for (const c of contenders) {
      const a = c.add();
      const d = c.del?.();
      if (i >= 0) {
        add.get(c.label)?.push(a);
        if (d !== undefined) del.get(c.label)?.push(d);
      }
    }
  }

  const floor = median(add.get('node -e 0') as number[]);
  const exeFloor = exe ? median(add.get('exe floor (VERSION)') as number[]) : undefined;
  const row = (label: string, ms: number, note = ''): string =>
    `  ${label.padEnd(28)} ${ms.toFixed(1).padStart(7)} ms   ${(ms / floor).toFixed(3)}x node -e 0${note}`;
  console.log(`bench:cni — ${n} iterations, medians of wall time per process (kernel ${os.release()}, node ${process.version})`);
  console.log(row('node -e 0 (baseline)', floor));
  for (const c of contenders.slice(1)) {
    const a = median(add.get(c.label) as number[]);
    const vsExe = c.label === 'macvtap (exe)' && exeFloor ? `, ${(a / exeFloor).toFixed(3)}x exe VERSION` : '';
    if (c.del) {
      console.log(row(`${c.label} ADD`, a, vsExe));
      console.log(row(`${c.label} DEL`, median(del.get(c.label) as number[])));
    } else {
      console.log(row(c.label, a));
    }
  }
  if (!exe) console.log('  (no single executable at dist/host/macvtap; pass --exe PATH to time one)');
  if (!fs.existsSync(HOST_DEVICE)) console.log(`  (no ${HOST_DEVICE}: install Debian's containernetworking-plugins to compare)`);
  // "Own work": each ADD's wall time minus the move + set it measured inside its own process, so the kernel's
  // RCU waits (which vary from call to call) are taken out call by call.
  const goal = (label: string, base: number, baseName: string): string => {
    const ratio = median(add.get(label) as number[]) / base;
    const met = (x: number): string => (x <= 1.15 ? 'met' : 'not met');
    const samples = ownWork.get(label);
    const own = samples?.length ? median(samples) / base : undefined;
    const ownText = own === undefined ? 'n/a (this build does not log its phases; rebuild it)' : `${own.toFixed(3)}x (${met(own)})`;
    return `  ${label} vs ${baseName}: ${ratio.toFixed(3)}x (${met(ratio)}); without its own kernel move + set: ${ownText}`;
  };
  console.log('goal: ADD within 1.15x of the runtime floor');
  console.log(goal('macvtap (node)', floor, 'node -e 0'));
  console.log(goal('macvtap (node, bundled)', floor, 'node -e 0'));
  if (exe && exeFloor) console.log(goal('macvtap (exe)', exeFloor, 'its own start-up (VERSION)'));
  host.close();
  pod.close();
}

try {
  const at = process.argv.indexOf('--inner');
  if (at >= 0) inner(process.argv[at + 1], process.argv[at + 2]);
  else outer();
} catch (err) {
  console.error(`bench:cni: ${(err as Error).message}`);
  process.exitCode = 1;
}
