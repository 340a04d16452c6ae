/**
 * The CNI plugin against kubevirt's Go original (`npm run bench:cni`), one process per call as a runtime runs
 * it, interleaved in one run (each round runs every contender once, in an order that rotates from round to
 * round, so machine load hits all alike):
 *   runtime -e 0    the embedded runtime's own empty start: the stripped node binary build-host embeds
 *   VERSION         CNI_COMMAND=VERSION of ours (dist/host/macvtap as deployed) and of upstream
 *   ADD, DEL        ADD of a prepared macvtap (`mvt` + hash of its deviceID, on a veth, explicit ifindex) into
 *                   a pod namespace with a MAC (CNI_ARGS) and an MTU, then DEL; both from the "node"
 *                   namespace. Upstream's DEL deletes the link, ours returns it to the node: every round
 *                   recreates both links (untimed), so each ADD starts from the same state.
 *   kernel only     the kernel work of such an ADD done in-process (the move with name, ifindex, MAC, MTU and
 *                   up in one RTM_SETLINK): no process, no CNI. The floor of any plugin.
 * Then the table: medians, p90, ADD − VERSION (what is not start-up), and ours / upstream.
 *
 *   npm run bench:cni -- [--rounds N] [--exe PATH] [--upstream PATH] [--runtime PATH]
 *
 * Needs root. Everything lives in scratch namespaces and a temp dir, removed at exit, on error and on signals.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import { Netns } from '../lib/netlink';
import {
  checkAddResult,
  cniEnv,
  device,
  fmt,
  intOption,
  makeLower,
  MTU,
  netConf,
  percentile,
  POD_IFNAME,
  prepare,
  ratio,
  reexecInside,
  resolvePaths,
  runSync,
  Scratch,
  type Device,
} from './cni-support';
import { median } from './stats';

/** Above the test fixtures' ifindex range (20000-60000) and bench:netlink's (61000+). */
const FIRST_INDEX = 62000;
const DEVICES = {
  ours: device('bench-ours', FIRST_INDEX),
  upstream: device('bench-upstream', FIRST_INDEX + 1),
  kernel: device('bench-kernel', FIRST_INDEX + 2),
};

function outer(): void {
  if (process.getuid?.() !== 0) throw new Error('bench:cni needs root (it creates network namespaces)');
  const scratch = new Scratch();
  try {
    const node = scratch.netns(`mvcb-${process.pid}-node`);
    const pod = scratch.netns(`mvcb-${process.pid}-pod`);
    const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'macvtap-bench-'));
    scratch.dirs.push(stateDir);
    scratch.tapIndexes.push(...Object.values(DEVICES).map((d) => d.index));
    makeLower(node);
    process.exitCode = reexecInside(node, __filename, [pod, stateDir]);
  } finally {
    scratch.cleanup();
  }
}

type Samples = Map<string, number[]>;

function inner(podNs: string, stateDir: string): void {
  const rounds = intOption('rounds', 30, 3, 10000);
  const paths = resolvePaths();
  const netns = `/var/run/netns/${podNs}`;
  const host = Netns.current();
  const pod = Netns.open(netns);
  const lower = host.getLinkSync('lower0');
  if (!lower) throw new Error('lower0 missing');
  const samples: Samples = new Map();
  const add = (label: string, ms: number): void => void (samples.get(label) ?? samples.set(label, []).get(label))?.push(ms);

  /** The pod has the device as net1 with the MAC and MTU asked for (checked untimed, every round). */
  const checkPod = (d: Device, label: string): void => {
    const l = pod.getLinkSync(POD_IFNAME);
    if (!l || l.index !== d.index || l.mac !== d.mac || l.mtu !== MTU || !l.flags.up)
      throw new Error(`${label}: pod link wrong: ${JSON.stringify(l)}`);
  };
  const plugin = (who: 'ours' | 'upstream', exe: string): (() => void) => {
    const d = DEVICES[who];
    const env = (cmd: string): NodeJS.ProcessEnv => cniEnv(cmd, { netns, containerId: `bench-${who}`, stateDir, mac: d.mac });
    return () => {
      prepare(host, lower.index, d);
      const a = runSync(exe, [], env('ADD'), netConf(d.deviceID), `${who} ADD`);
      add(`${who} ADD`, a.ms);
      checkAddResult(a.stdout, d.mac, who);
      checkPod(d, who);
      add(`${who} DEL`, runSync(exe, [], env('DEL'), netConf(d.deviceID), `${who} DEL`).ms);
      if (pod.getLinkSync(POD_IFNAME)) throw new Error(`${who} DEL left ${POD_IFNAME} in the pod`);
    };
  };
  const version = (who: string, exe: string) => () =>
    add(
      `${who} VERSION`,
      runSync(exe, [], { PATH: '/usr/bin:/bin', CNI_COMMAND: 'VERSION' }, '{"cniVersion":"0.4.0"}', `${who} VERSION`).ms,
    );
  const kernel = (): void => {
    const d = DEVICES.kernel;
    prepare(host, lower.index, d);
    const start = performance.now();
    host.moveLinkSync(d.index, pod, { name: POD_IFNAME, index: d.index, mac: d.mac, mtu: MTU, promisc: false, up: true });
    add('kernel ADD', performance.now() - start);
    checkPod(d, 'kernel');
    pod.deleteLinkSync(d.index);
  };

  const jobs: (() => void)[] = [version('ours', paths.exe), plugin('ours', paths.exe), kernel];
  if (paths.runtime) {
    const rt = paths.runtime;
    jobs.push(() => add('runtime -e 0', runSync(rt, ['-e', '0'], { PATH: '/usr/bin:/bin' }, '', 'runtime -e 0').ms));
  }
  if (paths.upstream) jobs.push(version('upstream', paths.upstream), plugin('upstream', paths.upstream));

  // One warm-up round (page cache, dentries, the addon's temp copy), then the measured ones.
  for (let r = -1; r < rounds; r++) {
    if (r === 0) samples.clear();
    for (let j = 0; j < jobs.length; j++) jobs[(j + Math.max(r, 0)) % jobs.length]();
  }
  host.close();
  pod.close();
  report(samples, rounds, paths.upstream !== undefined);
}

function report(samples: Samples, rounds: number, withUpstream: boolean): void {
  const med = (label: string): number | undefined => (samples.has(label) ? median(samples.get(label) as number[]) : undefined);
  const p90 = (label: string): number | undefined => (samples.has(label) ? percentile(samples.get(label) as number[], 90) : undefined);
  const cell = (x: number | undefined): string => (x === undefined ? '—' : fmt(x));
  const rat = (a: number | undefined, b: number | undefined): string => (a === undefined || b === undefined ? '—' : ratio(a, b));
  const row = (what: string, ours: number | undefined, up: number | undefined): string =>
    `| ${what} | ${cell(up)} | ${cell(ours)} | ${rat(ours, up)} |`;
  const diff = (a: number | undefined, b: number | undefined): number | undefined =>
    a === undefined || b === undefined ? undefined : a - b;

  const [load1] = os.loadavg();
  console.log(
    `\nbench:cni — ${rounds} rounds, interleaved; kernel ${os.release()}, ${os.cpus().length} CPUs, load average ${load1.toFixed(1)} at the end\n`,
  );
  console.log('| | upstream (Go) | ours (host executable) | ours / upstream |');
  console.log('|---|---|---|---|');
  console.log(row('ADD median', med('ours ADD'), med('upstream ADD')));
  console.log(row('ADD p90', p90('ours ADD'), p90('upstream ADD')));
  console.log(row('DEL median', med('ours DEL'), med('upstream DEL')));
  console.log(row('DEL p90', p90('ours DEL'), p90('upstream DEL')));
  console.log(row('`CNI_COMMAND=VERSION` median', med('ours VERSION'), med('upstream VERSION')));
  console.log(
    row('ADD − VERSION (medians)', diff(med('ours ADD'), med('ours VERSION')), diff(med('upstream ADD'), med('upstream VERSION'))),
  );
  console.log(`| embedded runtime's empty start (\`node -e 0\`, stripped) | | ${cell(med('runtime -e 0'))} | |`);
  console.log(
    `\nthe floor, the kernel's part of such an ADD (move + name + ifindex + MAC + MTU + up, one RTM_SETLINK, in-process): ${cell(med('kernel ADD'))} median, ${cell(p90('kernel ADD'))} p90`,
  );

  console.log('\ngoals (issue 14):');
  const oursAdd = med('ours ADD');
  const upAdd = med('upstream ADD');
  if (withUpstream && oursAdd !== undefined && upAdd !== undefined) {
    const rm = oursAdd / upAdd;
    const rp = (p90('ours ADD') as number) / (p90('upstream ADD') as number);
    console.log(
      `  1. ADD ≤ 1.5× upstream: median ${rm.toFixed(2)}×, p90 ${rp.toFixed(2)}× — ${rm <= 1.5 && rp <= 1.5 ? 'met' : 'NOT met'}`,
    );
  } else console.log('  1. ADD ≤ 1.5× upstream: skipped (no upstream plugin)');
  const v = med('ours VERSION');
  const e = med('runtime -e 0');
  if (v !== undefined && e !== undefined) {
    const over = v - e;
    console.log(
      `  2. VERSION ≤ empty runtime start + 3 ms: ${fmt(v)} vs ${fmt(e)} (${over >= 0 ? '+' : ''}${over.toFixed(1)} ms) — ${over <= 3 ? 'met' : 'NOT met'}`,
    );
  } else console.log('  2. VERSION ≤ empty runtime start + 3 ms: skipped (no stripped runtime)');
}

try {
  const at = process.argv.indexOf('--inner');
  if (at >= 0) inner(process.argv[at + 1], process.argv[at + 2]);
  else outer();
} catch (err) {
  console.error(`bench:cni: ${(err as Error).message}`);
  process.exitCode = 1;
}
