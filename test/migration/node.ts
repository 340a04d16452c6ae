/**
 * One "node" in the middle of a switch between kubevirt's macvtap-cni and this project: a scratch host
 * namespace (veth lower0/peer0), a pod namespace, the shared state directory, and a kubelet stand-in whose
 * plugin directory either device plugin serves. Each side's programs are run as production runs them:
 *   - ours: `node dist/bin/macvtap-deviceplugin.js` and `node dist/bin/macvtap.js` (state dir by env);
 *   - upstream: the binaries of $MACVTAP_UPSTREAM_DIR (default ../shared/upstream), see test/support/upstream.ts.
 * Upstream's device plugin lets the kernel choose ifindexes, so every test holds the machine's one claim on
 * kernel-chosen indexes (lockKernelChosenIfindexes) and ours picks from this test's claimed block.
 */
import { hostLinkName } from '../../lib/naming';
import { cni, CniResult, conf, makeScene, Scene } from '../cni/harness';
import { DaemonProcess, spawnDaemon, tempDir } from '../deviceplugin/helpers';
import { ipLinks, IpLink } from '../support/kernel';
import { KubeletStandIn } from '../support/kubelet';
import {
  CniOutcome,
  lockKernelChosenIfindexes,
  runUpstreamCni,
  startUpstreamDevicePlugin,
  UpstreamDevicePlugin,
  upstreamMissing,
} from '../support/upstream';
import * as fs from 'node:fs';
import * as path from 'node:path';

export const RES = 'macvtap.network.kubevirt.io/dataplane';
export const CAPACITY = 4;
export const DP_CONF = JSON.stringify([{ name: 'dataplane', lowerDevice: 'lower0', mode: 'bridge', capacity: CAPACITY }]);
/** Skip message for every migration test: root and the upstream binaries are needed. */
export const skip: string | false =
  process.getuid?.() !== 0 ? 'needs root: drives the real kernel in network namespaces' : upstreamMissing();

type Test = { teardown(fn: () => void | Promise<void>): void };

export type Side = 'ours' | 'upstream';

export interface Node extends Scene {
  pluginDir: string;
  kubelet: KubeletStandIn;
  /** The device plugin now running, if any. */
  dp: { side: Side; ours?: DaemonProcess; upstream?: UpstreamDevicePlugin } | undefined;
}

/**
 * A node with no device plugin running yet; everything is removed at teardown. A test that makes two nodes
 * takes the kernel-chosen-ifindex claim itself first and passes `{ locked: true }` (the claim is not re-entrant).
 */
export async function makeNode(t: Test, opts: { locked?: boolean } = {}): Promise<Node> {
  if (!opts.locked) await lockKernelChosenIfindexes(t);
  const scene = makeScene(t, { indexes: 16 });
  const pluginDir = path.join(tempDir(t, 'mvtmig-'), 'dp');
  fs.mkdirSync(pluginDir);
  const kubelet = await KubeletStandIn.start(pluginDir, { grpcGoClients: true });
  const node: Node = { ...scene, pluginDir, kubelet, dp: undefined };
  t.teardown(async () => {
    await stopDevicePlugin(node);
    await kubelet.stop();
  });
  return node;
}

/** Starts `side`'s device plugin (stopping the running one first) and waits for its healthy device list. */
export async function startDevicePlugin(t: Test, node: Node, side: Side): Promise<void> {
  await stopDevicePlugin(node);
  const before = node.kubelet.registrations.length;
  if (side === 'ours') {
    const args = ['--device-plugin-path', node.pluginDir, '--state-dir', node.stateDir, '--log-level', 'debug'];
    args.push('--ifindex-range', `${node.indexes[0]}-${node.indexes[15]}`);
    node.dp = { side, ours: spawnDaemon(t, node.host, args, DP_CONF) };
  } else {
    node.dp = { side, upstream: startUpstreamDevicePlugin(t, node.host, node.pluginDir, DP_CONF) };
  }
  // A fresh registration of this plugin, then its full healthy list.
  await node.kubelet.waitFor(
    'registration',
    () => (node.kubelet.registrations.slice(before).some((r) => r.resourceName === RES) ? true : undefined),
    30000,
    `registration of ${RES} by ${side}'s device plugin`,
  );
  try {
    await node.kubelet.waitForDevices(RES, (l) => l.length === CAPACITY && l.every((d) => d.health === 'Healthy'), 60000);
  } catch (err) {
    const log = node.dp.upstream?.log ?? node.dp.ours?.stderr ?? '';
    const lines = node.dp.ours ? `; last log lines ${JSON.stringify(node.dp.ours.logs.slice(-8))}` : '';
    throw new Error(`${(err as Error).message}; ${side}'s device plugin stderr (tail): ${log.slice(-3000)}${lines}`, { cause: err });
  }
}

/** Stops the running device plugin as a DaemonSet rollout does (SIGTERM; upstream: SIGKILL, it ignores TERM). */
export async function stopDevicePlugin(node: Node): Promise<void> {
  const dp = node.dp;
  node.dp = undefined;
  if (dp?.upstream) await dp.upstream.kill();
  if (dp?.ours) {
    const child = dp.ours.child;
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 10000);
      await dp.ours.exited;
      clearTimeout(timer);
    }
  }
}

/** The kubelet's Allocate of `deviceID` from whichever plugin runs; returns the DeviceSpec's host path. */
export async function allocate(node: Node, deviceID: string): Promise<string> {
  const res = await node.kubelet.allocate(RES, [[deviceID]]);
  return res.containerResponses[0].devices[0].hostPath;
}

export interface CniCallOptions {
  containerId?: string;
  ifname?: string;
  mac?: string;
}

/** One CNI call by `side`'s plugin in the node's namespace; status 0 and the parsed output or error. */
export function runCni(node: Node, side: Side, command: 'ADD' | 'DEL', deviceID: string, o: CniCallOptions = {}): CniResult {
  const containerId = o.containerId ?? 'c0ffee01';
  const ifname = o.ifname ?? 'net1';
  if (side === 'ours') {
    return cni(node, { command, containerId, ifname, config: conf(node, { deviceID, ...(o.mac && { mac: o.mac }) }) });
  }
  const env: Record<string, string> = {
    CNI_COMMAND: command,
    CNI_CONTAINERID: containerId,
    CNI_NETNS: node.netns,
    CNI_IFNAME: ifname,
    CNI_PATH: '/usr/lib/cni',
  };
  if (o.mac) env.CNI_ARGS = `MAC=${o.mac}`;
  const out: CniOutcome = runUpstreamCni(
    node.host,
    env,
    JSON.stringify({ cniVersion: '0.3.1', name: 'dataplane', type: 'macvtap', deviceID }),
  );
  let json: CniResult['json'];
  try {
    json = out.stdout.trim() ? (JSON.parse(out.stdout) as CniResult['json']) : undefined;
  } catch {
    json = undefined;
  }
  return { ...out, json };
}

/** What a CNI call printed, for assertion messages. */
export function said(r: CniResult): string {
  return `${r.status}: ${r.json?.msg ?? ''} ${r.json?.details ?? ''} ${r.stderr.slice(-400)}`.trim();
}

/** The oracle's macvtaps of a namespace by name. */
export function macvtaps(ns: string): Map<string, IpLink> {
  return new Map(
    ipLinks(ns)
      .filter((l) => l.linkinfo?.info_kind === 'macvtap')
      .map((l) => [l.ifname, l]),
  );
}

/** Every macvtap name of the host namespace that is neither a configured device's `mvt` name nor in `allowed`. */
export function strayLinks(node: Node, allowed: string[] = []): string[] {
  const known = new Set(Array.from({ length: CAPACITY }, (_, i) => hostLinkName(`dataplaneMvp${i}`)));
  return [...macvtaps(node.host).keys()].filter((n) => !known.has(n) && !allowed.includes(n)).sort();
}

/** Resolves once the host namespace has no retired or foreign macvtap (ours deletes retired ones in the background). */
export async function waitNoStrays(node: Node, timeoutMs = 10000): Promise<string[]> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const strays = strayLinks(node);
    if (strays.length === 0 || Date.now() > deadline) return strays;
    await new Promise((r) => setTimeout(r, 50));
  }
}
