/**
 * The attacks of issue 11, staged on the real kernel: a scratch "node" namespace (the harness's HOST) with a victim
 * pod that holds its device (attached by ADD, in its own namespace) or a victim device still waiting in the host
 * namespace, a tenant pod, and a kubelet directory whose device-manager checkpoint is written as the kubelet
 * writes it. The plugin runs as production runs it (`node dist/bin/macvtap.js`, env + stdin, inside HOST), with a
 * timeout so that a hang is a failure, not a stuck suite.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { Test } from 'tap';
import { KubeletCheckpoint } from '../support/checkpoint';
import { makeNetns } from '../support/kernel';
import { addMacvtap, CniJson, linkOf, makeScene, noStack, PLUGIN, Scene, world, writeAllocation } from '../cni/harness';

export const RESOURCE = 'macvtap.network.kubevirt.io/dataplane';
export const TENANT_UID = '7e7a0001-0000-4000-8000-000000000001';
export const VICTIM_UID = '71c71002-0000-4000-8000-000000000002';
/** What Multus sends for a pod. */
export function podArgs(uid: string, name = 'vm'): string {
  return `IgnoreUnknown=true;K8S_POD_NAMESPACE=tenant;K8S_POD_NAME=${name};K8S_POD_INFRA_CONTAINER_ID=c0ffee01;K8S_POD_UID=${uid}`;
}

export interface Stage extends Scene {
  /** The kubelet's root (its device-plugins/ holds the checkpoint). */
  kubeletRoot: string;
  checkpoint: KubeletCheckpoint;
  /** A scratch directory outside the state dir, for attack targets. */
  scratch: string;
}

export function makeStage(t: Test, indexes = 4): Stage {
  const scene = makeScene(t, { indexes });
  const kubeletRoot = fs.mkdtempSync(path.join(os.tmpdir(), 'macvtap-sec-kubelet-'));
  const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'macvtap-sec-scratch-'));
  t.teardown(() => {
    fs.rmSync(kubeletRoot, { recursive: true, force: true });
    fs.rmSync(scratch, { recursive: true, force: true });
  });
  return { ...scene, kubeletRoot, scratch, checkpoint: new KubeletCheckpoint(path.join(kubeletRoot, 'device-plugins')) };
}

export interface Device {
  deviceID: string;
  hostName: string;
  index: number;
  mac: string;
}

/** A device-plugin device: its allocation record and its `mvt<hash>` macvtap in the host namespace. */
export function device(s: Stage, deviceID: string, index: number, mac: string): Device {
  const hostName = writeAllocation(s, { deviceID, ifindex: index }).linkName;
  addMacvtap(s, hostName, index, 'bridge', ['address', mac]);
  return { deviceID, hostName, index, mac };
}

export interface Call {
  command: string;
  config: unknown;
  containerId?: string;
  ifname?: string;
  /** null: unset. */
  netns?: string | null;
  args?: string;
  /** Default enforce, as deploy/ installs it. */
  ownership?: 'enforce' | 'warn' | 'off';
  env?: Record<string, string | undefined>;
  stdin?: string;
}

export interface Run {
  status: number | null;
  stdout: string;
  stderr: string;
  json: CniJson | undefined;
  timedOut: boolean;
}

/** Runs the plugin in HOST as a runtime would, at most 20 s. */
export function run(s: Stage, call: Call): Run {
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH,
    CNI_COMMAND: call.command,
    CNI_CONTAINERID: call.containerId ?? 'c0ffee01',
    CNI_IFNAME: call.ifname ?? 'net1',
    CNI_PATH: '/opt/cni/bin',
    CNI_ARGS: call.args ?? podArgs(TENANT_UID),
    MACVTAP_CNI_STATE_DIR: s.stateDir,
    MACVTAP_CNI_KUBELET_ROOT: s.kubeletRoot,
    MACVTAP_CNI_OWNERSHIP: call.ownership ?? 'enforce',
    // A host configuration file is never picked up by accident (dist/bin has none; this names none).
    MACVTAP_CNI_HOST_CONFIG: path.join(s.scratch, 'no-host-config.json'),
  };
  if (call.netns !== null) env.CNI_NETNS = call.netns ?? s.netns;
  for (const [k, v] of Object.entries(call.env ?? {})) {
    if (v === undefined) delete env[k];
    else env[k] = v;
  }
  const r = spawnSync('ip', ['netns', 'exec', s.host, process.execPath, PLUGIN], {
    env,
    input: call.stdin ?? JSON.stringify(call.config),
    encoding: 'utf8',
    timeout: 20_000,
    killSignal: 'SIGKILL',
  });
  let json: CniJson | undefined;
  try {
    json = r.stdout.trim() ? (JSON.parse(r.stdout) as CniJson) : undefined;
  } catch {
    json = undefined;
  }
  const timedOut = r.signal === 'SIGKILL' || (r.error !== undefined && 'code' in r.error && r.error.code === 'ETIMEDOUT');
  return { status: r.status, stdout: r.stdout, stderr: r.stderr, json, timedOut };
}

/** The network configuration a tenant's NAD gives (cniVersion, name, type) plus `extra`. */
export function nad(extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { cniVersion: '1.1.0', name: 'dataplane', type: 'macvtap', ...extra };
}

/** Asserts the spec's error answer: exit 1, `code`, a message matching `msg`, no stack, no hang. */
export function refused(t: Test, r: Run, code: number, msg: RegExp, label: string): void {
  t.notOk(r.timedOut, `${label}: no hang`);
  t.equal(r.status, 1, `${label}: exit 1`);
  t.equal(r.json?.code, code, `${label}: code ${code} (${r.json?.msg ?? r.stdout})`);
  t.match(r.json?.msg, msg, `${label}: message`);
  t.ok(noStack({ status: r.status, stdout: r.stdout, stderr: r.stderr, json: r.json }), `${label}: no stack trace`);
}

/** Every state file (name and content) and both namespaces with the given tap nodes: "nothing changed" snapshots. */
export function snapshot(s: Stage, indexes: number[] = s.indexes): string {
  const files: string[] = [];
  const walk = (dir: string): void => {
    if (!fs.existsSync(dir)) return;
    for (const name of fs.readdirSync(dir).sort()) {
      const full = path.join(dir, name);
      const st = fs.lstatSync(full);
      files.push(`${path.relative(s.stateDir, full)}:${st.isFile() ? fs.readFileSync(full, 'utf8') : st.isDirectory() ? 'dir' : 'other'}`);
      if (st.isDirectory()) walk(full);
    }
  };
  walk(s.stateDir);
  return JSON.stringify({ ...world(s, indexes), files });
}

/** The victim: a pod holding `d` (attached by ADD in its own namespace), as the kubelet and Multus made it. */
export function victimPod(t: Test, s: Stage, d: Device): string {
  const pod = makeNetns(t, 'mvsv');
  s.checkpoint.assign(VICTIM_UID, 'compute', RESOURCE, [d.deviceID]);
  s.checkpoint.write();
  const r = run(s, {
    command: 'ADD',
    config: nad({ deviceID: d.deviceID }),
    containerId: 'v1c71m01',
    netns: `/var/run/netns/${pod}`,
    args: podArgs(VICTIM_UID, 'victim'),
  });
  if (r.status !== 0) throw new Error(`the victim's ADD failed: ${r.stdout}${r.stderr}`);
  t.equal(linkOf(pod, 'net1').ifindex, d.index, "the victim's pod holds its device");
  return pod;
}

export { linkOf };
