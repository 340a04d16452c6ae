// Crashes of the CNI plugin (root only): each verb SIGKILLed at each of its named steps (MACVTAP_TEST_FAULT, a
// test-only hook), then the verb or DEL run again. The device must end attached (record present, matching the
// kernel) or back on the host under its name with the settings it had before ADD (no record): never lost,
// duplicated, or carrying the previous pod's MAC/MTU.
import { spawn } from 'node:child_process';
import t, { Test } from 'tap';
import { makeNetns, rootOnly } from '../support/kernel';
import {
  addMacvtap,
  cni,
  CniCall,
  CniResult,
  conf,
  ipLink,
  linkOf,
  makeScene,
  PLUGIN,
  Scene,
  stateEntries,
  writeAllocation,
} from './harness';

// Many real processes and kernel moves: longer than .taprc's per-file default on a loaded machine.
t.setTimeout(900_000);

/** Runs the plugin with a fault armed; resolves when it died at that step (or, if it never got there, ended). */
function crash(s: Scene, call: CniCall, fault: string): Promise<{ killed: boolean; stderr: string }> {
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH,
    CNI_COMMAND: call.command,
    CNI_CONTAINERID: call.containerId ?? 'c0ffee01',
    CNI_IFNAME: call.ifname ?? 'net1',
    CNI_NETNS: call.netns ?? s.netns,
    CNI_ARGS: 'IgnoreUnknown=true;K8S_POD_NAMESPACE=default;K8S_POD_NAME=vm;K8S_POD_UID=1234',
    CNI_PATH: '/opt/cni/bin',
    MACVTAP_CNI_STATE_DIR: s.stateDir,
    // No kubelet here: the ownership check has its own tests (test/security).
    MACVTAP_CNI_OWNERSHIP: 'off',
    MACVTAP_TEST_FAULT: `${fault}:kill`,
    ...call.env,
  };
  return new Promise((resolve, reject) => {
    const child = spawn('ip', ['netns', 'exec', s.host, process.execPath, PLUGIN], { env });
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', reject);
    child.on('close', (_code, signal) => resolve({ killed: signal === 'SIGKILL' && stderr.includes(`kill at ${fault}`), stderr }));
    child.stdin.end(JSON.stringify(call.config));
  });
}

interface Device {
  deviceID: string;
  hostName: string;
  index: number;
  mac: string;
  mtu: number;
}

/** A device-plugin device (allocation record + its mvt<hash> link) with MTU 1450 and a known MAC. */
function device(s: Scene, deviceID: string, index: number): Device {
  const hostName = writeAllocation(s, { deviceID, ifindex: index }).linkName;
  addMacvtap(s, hostName, index, 'bridge', ['address', '02:00:00:00:0a:01', 'mtu', '1450']);
  return { deviceID, hostName, index, mac: '02:00:00:00:0a:01', mtu: 1450 };
}

/** The pod's settings, different from the device's own, so that inheriting them shows. */
const POD = { mac: '02:00:00:00:0b:02', mtu: 1300 };

/** Back on the host exactly as before ADD, nothing in the pod, no record. */
function assertReleased(t: Test, s: Scene, d: Device, pod: string, label: string): void {
  const host = ipLink(s.host, d.hostName);
  t.equal(host?.ifindex, d.index, `${label}: back on the host as ${d.hostName}`);
  t.equal(host?.address, d.mac, `${label}: with its own MAC, not the pod's`);
  t.equal(host?.mtu, d.mtu, `${label}: and its own MTU`);
  t.notOk(ipLink(pod, 'net1'), `${label}: nothing left in the pod`);
  t.same(stateEntries(s, 'attachments'), [], `${label}: no attachment record or temp file`);
  t.same(stateEntries(s, 'locks'), [], `${label}: no lock file`);
}

/** Attached in the pod, once, with its record. */
function assertAttached(t: Test, s: Scene, d: Device, pod: string, containerId: string, label: string): void {
  const link = linkOf(pod, 'net1');
  t.equal(link.ifindex, d.index, `${label}: attached in the pod`);
  t.equal(link.address, POD.mac, `${label}: configured`);
  t.notOk(ipLink(s.host, d.hostName), `${label}: not also on the host`);
  t.same(stateEntries(s, 'attachments'), [`${d.deviceID}+${containerId}+net1.json`], `${label}: its record, and only it`);
}

function ok(t: Test, r: CniResult, what: string): void {
  t.equal(r.status, 0, `${what} (${r.json?.msg ?? 'ok'})`);
}

const ADD_STEPS = ['locked', 'recorded', 'moved', 'configured', 'committed'];

t.test('ADD killed at each step, then DEL: the device is back as it was', { skip: rootOnly }, async (t) => {
  const s = makeScene(t, { indexes: 1 });
  const d = device(s, 'faultMvp0', s.indexes[0]);
  const config = conf(s, { deviceID: d.deviceID, ...POD });
  for (const step of ADD_STEPS) {
    const c = await crash(s, { command: 'ADD', config }, `ADD:${step}`);
    t.ok(c.killed, `ADD:${step}: killed there`);
    ok(t, cni(s, { command: 'DEL', config }), `ADD:${step}: the runtime's DEL`);
    assertReleased(t, s, d, s.pod, `ADD:${step} + DEL`);
  }
});

t.test('ADD killed at each step, then ADD again: attached once; DEL then restores it', { skip: rootOnly }, async (t) => {
  const s = makeScene(t, { indexes: 1 });
  const d = device(s, 'faultMvp1', s.indexes[0]);
  const config = conf(s, { deviceID: d.deviceID, ...POD });
  for (const step of ADD_STEPS) {
    const c = await crash(s, { command: 'ADD', config }, `ADD:${step}`);
    t.ok(c.killed, `ADD:${step}: killed there`);
    // A retried ADD of this very attachment first finishes (undoes) the crashed one, then attaches afresh.
    const r = cni(s, { command: 'ADD', config });
    ok(t, r, `ADD:${step}: ADD again`);
    assertAttached(t, s, d, s.pod, 'c0ffee01', `ADD:${step} + ADD`);
    ok(t, cni(s, { command: 'DEL', config }), `ADD:${step}: DEL`);
    assertReleased(t, s, d, s.pod, `ADD:${step} + ADD + DEL`);
  }
});

t.test('DEL killed at each step, then DEL again (or a new sandbox ADD): restored, never inherited', { skip: rootOnly }, async (t) => {
  const s = makeScene(t, { indexes: 1 });
  const d = device(s, 'faultMvp2', s.indexes[0]);
  const config = conf(s, { deviceID: d.deviceID, ...POD });
  for (const step of ['locked', 'moved', 'restored', 'dropped']) {
    ok(t, cni(s, { command: 'ADD', config }), `DEL:${step}: ADD`);
    const c = await crash(s, { command: 'DEL', config }, `DEL:${step}`);
    t.ok(c.killed, `DEL:${step}: killed there`);
    ok(t, cni(s, { command: 'DEL', config }), `DEL:${step}: DEL again`);
    assertReleased(t, s, d, s.pod, `DEL:${step} + DEL`);
  }
  // The case: DEL dies after the link is back on the host (with the pod's MAC/MTU still on it), and the
  // next thing is a new sandbox's ADD without a DEL retry. The new pod must not record the old pod's settings.
  const pod2 = makeNetns(t, 'mvcf');
  const netns2 = `/var/run/netns/${pod2}`;
  ok(t, cni(s, { command: 'ADD', config }), 'ADD of the first sandbox');
  t.ok((await crash(s, { command: 'DEL', config }, 'DEL:moved')).killed, 'its DEL killed after the move');
  ok(
    t,
    cni(s, { command: 'ADD', config: conf(s, { deviceID: d.deviceID }), containerId: 'sandbox2', netns: netns2 }),
    'a new sandbox takes it',
  );
  t.equal(linkOf(pod2, 'net1').address, d.mac, "the new pod (no MAC configured) has the device's MAC, not the old pod's");
  t.equal(linkOf(pod2, 'net1').mtu, d.mtu, "and the device's MTU");
  ok(t, cni(s, { command: 'DEL', config, containerId: 'sandbox2', netns: netns2 }), 'its DEL');
  assertReleased(t, s, d, pod2, 'after the new sandbox');
});

t.test('CHECK and GC killed mid-way: a rerun completes', { skip: rootOnly }, async (t) => {
  const s = makeScene(t, { indexes: 1 });
  const d = device(s, 'faultMvp3', s.indexes[0]);
  const config = conf(s, { cniVersion: '1.1.0', deviceID: d.deviceID, ...POD });
  const add = cni(s, { command: 'ADD', config });
  ok(t, add, 'ADD');
  const check = { command: 'CHECK', config: { ...config, prevResult: add.json } };
  t.ok((await crash(s, check, 'CHECK:locked')).killed, 'CHECK killed holding the lock');
  ok(t, cni(s, check), 'CHECK again passes');
  assertAttached(t, s, d, s.pod, 'c0ffee01', 'after CHECK');
  const gc = {
    command: 'GC',
    config: { ...config, 'cni.dev/valid-attachments': [] },
    env: { CNI_CONTAINERID: undefined, CNI_IFNAME: undefined, CNI_NETNS: undefined },
  } as unknown as CniCall;
  // GC never takes a link out of a live pod namespace, so what it finishes is a DEL that died after the move.
  for (const step of ['restored', 'dropped']) {
    ok(t, cni(s, { command: 'ADD', config }), `GC:${step}: ADD`);
    t.ok((await crash(s, { command: 'DEL', config }, 'DEL:moved')).killed, `GC:${step}: a DEL killed after the move`);
    t.ok((await crash(s, gc, `GC:${step}`)).killed, `GC:${step}: killed there`);
    ok(t, cni(s, { ...gc, netns: null }), `GC:${step}: GC again`);
    assertReleased(t, s, d, s.pod, `GC:${step} + GC`);
  }
});
