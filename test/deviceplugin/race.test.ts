// An Allocate racing a late CNI DEL of the same device (root only), as happens when the kubelet hands a device to a
// new pod while the old pod's sandbox is still being torn down. Real processes: the daemon serving the kubelet
// stand-in, and the CNI executable (`node dist/bin/macvtap.js`) spawned for each ADD and DEL as a runtime does. Both
// take the device's lock, so whichever comes second sees the other's work: DEL either returns the old link before
// Allocate retires it, or finds the new link on the host and deletes the pod's copy. Every round must end with both
// succeeding and exactly the answered device on the host: its record, its link, its tap node; nothing in the pod.
import { ChildProcess, spawn } from 'node:child_process';
import t, { Test } from 'tap';
import { hostLinkName } from '../../lib/naming';
import { ipLink, makeNetns, rootOnly, sysfsTapDev } from '../support/kernel';
import { cni, cniAsync, conf as cniConf, PLUGIN, type Scene } from '../cni/harness';
import { sleep } from './helpers';
import {
  assertConsistent,
  faultCount,
  makeNode,
  Node,
  nodeDev,
  pluginLinks,
  records,
  RES,
  startServing,
  stateFiles,
  waitForFault,
  waitNoRetired,
} from './faults-harness';

// Many real processes and kernel moves: longer than .taprc's per-file default on a loaded machine.
t.setTimeout(900_000);

const ROUNDS = 40;
const ID = 'dataplaneMvp3';

t.test(`Allocate races a late CNI DEL of the same device, ${ROUNDS} rounds: always consistent`, { skip: rootOnly }, async (t) => {
  const node = await makeNode(t);
  await startServing(t, node);
  const pod = makeNetns(t, 'mvdr');
  const scene: Scene = {
    host: node.ns,
    pod,
    netns: `/var/run/netns/${pod}`,
    lower: node.lower,
    stateDir: node.stateDir,
    indexes: node.indexes,
  };
  const config = cniConf(scene, { deviceID: ID });
  const first = await node.kubelet.allocate(RES, [[ID]]);
  let tap = first.containerResponses[0].devices[0].hostPath;
  const failures: string[] = [];
  const orders = { delFirst: 0, allocateFirst: 0 };
  for (let round = 0; round < ROUNDS; round++) {
    const containerId = `race${round}`;
    const add = cni(scene, { command: 'ADD', config, containerId });
    if (add.status !== 0) {
      failures.push(`round ${round}: ADD: ${add.stdout}`);
      break;
    }
    // The old pod's DEL and the new pod's Allocate, started together with a random offset so that every
    // interleaving of the two processes' steps comes up over the rounds.
    const del = cniAsync(scene, { command: 'DEL', config, containerId });
    await sleep(Math.floor(Math.random() * 250));
    const allocated = node.kubelet.allocate(RES, [[ID]]).then(
      (r) => r.containerResponses[0].devices[0].hostPath,
      (err: Error) => err,
    );
    const [d, a] = await Promise.all([del, allocated]);
    if (d.status !== 0) failures.push(`round ${round}: DEL: ${d.stdout}`);
    if (a instanceof Error) {
      failures.push(`round ${round}: Allocate: ${a.message}`);
      continue;
    }
    tap = a;
    const link = ipLink(node.ns, hostLinkName(ID));
    const rec = records(node).get(ID);
    if (!link || link.ifindex !== rec?.ifindex || `/dev/tap${link.ifindex}` !== tap)
      failures.push(`round ${round}: answered ${tap}, link ${link?.ifindex}, record ${rec?.ifindex}`);
    else if (nodeDev(tap) !== sysfsTapDev(node.ns, link.ifname, link.ifindex))
      failures.push(`round ${round}: ${tap} is not the answered link's char device`);
    if (ipLink(pod, 'net1')) failures.push(`round ${round}: the old pod still has net1`);
    if (stateFiles(node, 'locks').length) failures.push(`round ${round}: lock files left: ${stateFiles(node, 'locks').join(' ')}`);
    // Which one got the lock first: a DEL that ran first returned the old link (then retired); one that ran second
    // deleted the pod's copy. Both must come up for the test to have raced anything.
    if (/deleting the copy in the pod/.test(d.stderr + d.stdout)) orders.allocateFirst++;
    else orders.delFirst++;
  }
  t.same(failures, [], 'every round: DEL and Allocate succeed, the answer is the device on the host');
  t.comment(`DEL first: ${orders.delFirst}, Allocate first: ${orders.allocateFirst}`);
  await waitNoRetired(node);
  t.same(assertConsistent(t, node, 'at the end'), [ID], 'one device recorded');
  t.equal(ipLink(node.ns, hostLinkName(ID))?.ifindex, Number(tap.slice('/dev/tap'.length)), 'the last answer is the device');
  t.notOk(ipLink(pod, 'net1'), 'the pod is empty');
  t.same(stateFiles({ stateDir: node.stateDir } as typeof node, 'locks'), [], 'no lock file');
});

/** A node serving one allocated device, attached by CNI ADD to a pod. */
async function attached(
  t: Test,
  fault?: string,
): Promise<{ node: Node; scene: Scene; config: Record<string, unknown>; daemon: Awaited<ReturnType<typeof startServing>> }> {
  const node = await makeNode(t);
  const daemon = await startServing(t, node, { fault });
  const pod = makeNetns(t, 'mvdr');
  const scene: Scene = {
    host: node.ns,
    pod,
    netns: `/var/run/netns/${pod}`,
    lower: node.lower,
    stateDir: node.stateDir,
    indexes: node.indexes,
  };
  const config = cniConf(scene, { deviceID: ID });
  const first = node.kubelet.allocate(RES, [[ID]]);
  if (fault) {
    await waitForFault(daemon, 1);
    daemon.child.kill('SIGCONT');
  }
  await first;
  const add = cni(scene, { command: 'ADD', config, containerId: 'old' });
  t.equal(add.status, 0, `the old pod's ADD (${add.json?.msg ?? 'ok'})`);
  return { node, scene, config, daemon };
}

/** The CNI's DEL of the old pod with a fault armed; resolves with the child once it paused there. */
async function pausedDel(
  t: Test,
  scene: Scene,
  config: Record<string, unknown>,
): Promise<{ child: ChildProcess; done: Promise<number | null> }> {
  const child = spawn('ip', ['netns', 'exec', scene.host, process.execPath, PLUGIN], {
    env: {
      PATH: process.env.PATH,
      CNI_COMMAND: 'DEL',
      CNI_CONTAINERID: 'old',
      CNI_IFNAME: 'net1',
      CNI_NETNS: scene.netns,
      CNI_PATH: '/opt/cni/bin',
      MACVTAP_CNI_STATE_DIR: scene.stateDir,
      MACVTAP_TEST_FAULT: 'DEL:locked:pause',
    },
  });
  t.teardown(() => {
    child.kill('SIGCONT');
    child.kill('SIGKILL');
  });
  child.stdin?.end(JSON.stringify(config));
  let stderr = '';
  const done = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  await new Promise<void>((resolve, reject) => {
    child.stderr?.setEncoding('utf8').on('data', (d: string) => {
      stderr += d;
      if (stderr.includes('pause at DEL:locked')) resolve();
    });
    void done.then(() => reject(new Error(`DEL ended before pausing: ${stderr}`)));
  });
  return { child, done };
}

t.test('a DEL holding the lock makes Allocate wait, then Allocate replaces the returned link', { skip: rootOnly }, async (t) => {
  const { node, scene, config } = await attached(t);
  const del = await pausedDel(t, scene, config);
  let answered = false;
  const allocated = node.kubelet.allocate(RES, [[ID]]).then((r) => {
    answered = true;
    return r.containerResponses[0].devices[0].hostPath;
  });
  await sleep(500);
  t.notOk(answered, 'no answer while the DEL holds the device');
  t.same(
    pluginLinks(node).map((l) => l.ifname),
    [],
    'Allocate made and retired nothing meanwhile (the device is still in the pod)',
  );
  del.child.kill('SIGCONT');
  t.equal(await del.done, 0, 'DEL completes');
  const tap = await allocated;
  await waitNoRetired(node);
  t.same(assertConsistent(t, node, 'after both'), [ID]);
  t.equal(`/dev/tap${ipLink(node.ns, hostLinkName(ID))?.ifindex}`, tap, 'the answer is the device on the host');
  t.notOk(ipLink(scene.pod, 'net1'), 'the pod is empty');
});

t.test('an Allocate holding the lock makes DEL wait, then DEL deletes the pod copy', { skip: rootOnly }, async (t) => {
  const { node, scene, config, daemon } = await attached(t, 'Allocate:locked:pause');
  const allocated = node.kubelet.allocate(RES, [[ID]]);
  await waitForFault(daemon, 2);
  const del = cniAsync(scene, { command: 'DEL', config, containerId: 'old' });
  let deleted = false;
  void del.then(() => (deleted = true));
  await sleep(1000);
  t.notOk(deleted, 'DEL waits while Allocate holds the device');
  t.ok(ipLink(scene.pod, 'net1'), 'the old link is still in the pod');
  daemon.child.kill('SIGCONT');
  const tap = (await allocated).containerResponses[0].devices[0].hostPath;
  const d = await del;
  t.equal(d.status, 0, `DEL completes (${d.json?.msg ?? 'ok'})`);
  t.match(d.stderr, /deleting the copy in the pod/, 'it found the new device on the host');
  t.equal(faultCount(daemon), 2);
  await waitNoRetired(node);
  t.same(assertConsistent(t, node, 'after both'), [ID]);
  t.equal(`/dev/tap${ipLink(node.ns, hostLinkName(ID))?.ifindex}`, tap, 'the answer is the device on the host');
  t.notOk(ipLink(scene.pod, 'net1'), 'the pod is empty');
});
