/**
 * Switching a node back from this project to kubevirt's macvtap-cni (a rollback), and the mixed states on the
 * way (root; upstream's binaries from $MACVTAP_UPSTREAM_DIR or ../shared/upstream, skipped with a message when
 * absent). One test per row of the README's migration table, direction ours -> upstream.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import t from 'tap';
import { hostLinkName } from '../../lib/naming';
import { ip, ipLink } from '../support/kernel';
import { stateEntries } from '../cni/harness';
import {
  allocate,
  macvtaps,
  makeNode,
  RES,
  runCni,
  said,
  skip,
  startDevicePlugin,
  stopDevicePlugin,
  strayLinks,
  waitNoStrays,
} from './node';

const MVP0 = 'dataplaneMvp0';
const MVP1 = 'dataplaneMvp1';
const MVP2 = 'dataplaneMvp2';

t.test("allocated by our device plugin, attached and released by upstream's CNI", { skip }, async (t) => {
  const node = await makeNode(t);
  await startDevicePlugin(t, node, 'ours');
  const tap = await allocate(node, MVP1);
  const add = runCni(node, 'upstream', 'ADD', MVP1, { mac: '02:00:00:00:2a:01' });
  t.equal(add.status, 0, `upstream's ADD finds our link by its name (${said(add)})`);
  const inPod = ipLink(node.pod, 'net1');
  t.equal(`/dev/tap${inPod?.ifindex}`, tap, 'the macvtap of our DeviceSpec, keeping its ifindex');
  t.ok(inPod?.flags.includes('UP'), 'up in the pod');

  const del = runCni(node, 'upstream', 'DEL', MVP1);
  t.equal(del.status, 0, `upstream's DEL (${said(del)})`);
  t.notOk(ipLink(node.pod, 'net1'), 'upstream deletes the link');
  t.notOk(ipLink(node.host, hostLinkName(MVP1)), 'nothing comes back to the host');

  // The next pod of the device: our Allocate makes a new link (the old record is overwritten).
  const again = await allocate(node, MVP1);
  t.equal(again, `/dev/tap${ipLink(node.host, hostLinkName(MVP1))?.ifindex}`, 'our next Allocate of the device');
  t.same(await waitNoStrays(node), [], 'no stray link');
});

t.test("attached by our CNI, released by upstream's CNI after a rollback; the next ADD by ours", { skip }, async (t) => {
  const node = await makeNode(t);
  await startDevicePlugin(t, node, 'ours');
  await allocate(node, MVP1);
  t.equal(runCni(node, 'ours', 'ADD', MVP1).status, 0, 'our ADD');
  t.same(stateEntries(node, 'attachments'), [`${MVP1}+c0ffee01+net1.json`], 'our attachment record');

  // Rolled back to upstream: its device plugin, its CNI binary; the pod is deleted.
  await startDevicePlugin(t, node, 'upstream');
  const del = runCni(node, 'upstream', 'DEL', MVP1);
  t.equal(del.status, 0, `upstream's DEL of our attachment (${said(del)})`);
  t.notOk(ipLink(node.pod, 'net1'), 'deleted in the pod');
  ip('netns', 'del', node.pod); // the sandbox goes
  ip('netns', 'add', node.pod);

  // A new pod of the device, upstream's Allocate, and (switched forward again) our CNI: our stale record of the
  // gone attachment must not get in the way, nor be applied to upstream's new link.
  const tap = await allocate(node, MVP1);
  const fresh = ipLink(node.host, hostLinkName(MVP1));
  const add = runCni(node, 'ours', 'ADD', MVP1, { containerId: 'c0ffee02' });
  t.equal(add.status, 0, `our ADD past the stale record (${said(add)})`);
  t.equal(`/dev/tap${ipLink(node.pod, 'net1')?.ifindex}`, tap, "attached: the macvtap of upstream's DeviceSpec");
  t.same(stateEntries(node, 'attachments'), [`${MVP1}+c0ffee02+net1.json`], 'the stale record is dropped');
  const del2 = runCni(node, 'ours', 'DEL', MVP1, { containerId: 'c0ffee02' });
  t.equal(del2.status, 0, `our DEL (${said(del2)})`);
  t.equal(ipLink(node.host, hostLinkName(MVP1))?.ifindex, fresh?.ifindex, `back as ${hostLinkName(MVP1)}`);
  t.same(await waitNoStrays(node), [], 'no stray link');
});

t.test('device plugin restart, ours -> upstream, on a node whose links ours made', { skip }, async (t) => {
  const node = await makeNode(t);
  await startDevicePlugin(t, node, 'ours');
  const ourIds = node.kubelet.devices(RES)?.map((d) => d.ID);
  await allocate(node, MVP0); // allocated, its pod not started yet
  await allocate(node, MVP1);
  t.equal(runCni(node, 'ours', 'ADD', MVP1).status, 0, 'our ADD of the second device');
  // Re-allocations retire links (renamed mvr<ifindex>, deleted in the background): the rollout's SIGTERM comes
  // right after them, and upstream never deletes an mvr link.
  for (let i = 0; i < 8; i++) await allocate(node, MVP2);
  const host0 = ipLink(node.host, hostLinkName(MVP0));
  const pod1 = ipLink(node.pod, 'net1');
  await stopDevicePlugin(node);
  t.same(strayLinks(node), [], 'our device plugin deleted every retired link before exiting');

  await startDevicePlugin(t, node, 'upstream');
  t.same(
    node.kubelet.devices(RES)?.map((d) => d.ID),
    ourIds,
    'upstream lists the same device IDs, all Healthy',
  );
  t.equal(ipLink(node.host, hostLinkName(MVP0))?.ifindex, host0?.ifindex, 'our allocated link is kept on the host');
  t.equal(ipLink(node.pod, 'net1')?.ifindex, pod1?.ifindex, "the running pod's link is untouched");

  // The pod of the first device starts now, with upstream's CNI: our link is found and attached.
  const add = runCni(node, 'upstream', 'ADD', MVP0, { containerId: 'c0ffee02', ifname: 'net2' });
  t.equal(add.status, 0, `upstream's ADD of a device ours allocated (${said(add)})`);
  t.equal(ipLink(node.pod, 'net2')?.ifindex, host0?.ifindex, 'the macvtap whose tap the kubelet handed out');

  // Our CNI binary still on the node releases its own attachment: back as mvt<hash>; upstream's next Allocate
  // replaces exactly that name.
  const del = runCni(node, 'ours', 'DEL', MVP1);
  t.equal(del.status, 0, `our DEL under upstream's device plugin (${said(del)})`);
  t.equal(ipLink(node.host, hostLinkName(MVP1))?.ifindex, pod1?.ifindex, `back as ${hostLinkName(MVP1)}`);
  await allocate(node, MVP1);
  t.not(ipLink(node.host, hostLinkName(MVP1))?.ifindex, pod1?.ifindex, "upstream's Allocate replaced it");
  t.same(strayLinks(node), [], 'no stray link');
  t.same(
    [...macvtaps(node.host).keys()].sort(),
    [hostLinkName(MVP1), hostLinkName(MVP2)].sort(),
    'on the host: the two allocated devices not in a pod',
  );
});

t.test('allocated by upstream after ours (our allocation record is stale), attached by our CNI', { skip }, async (t) => {
  const node = await makeNode(t);
  await startDevicePlugin(t, node, 'ours');
  await allocate(node, MVP1); // its pod never started
  const ours = ipLink(node.host, hostLinkName(MVP1));
  const recordFile = path.join(node.stateDir, 'allocations', `${MVP1}.json`);
  t.ok(fs.existsSync(recordFile), 'our allocation record');

  await startDevicePlugin(t, node, 'upstream');
  const tap = await allocate(node, MVP1);
  const theirs = ipLink(node.host, hostLinkName(MVP1));
  t.not(theirs?.ifindex, ours?.ifindex, "upstream's Allocate replaced our link (the record now names another ifindex)");

  const add = runCni(node, 'ours', 'ADD', MVP1);
  t.equal(add.status, 0, `our ADD (${said(add)})`);
  t.equal(`/dev/tap${ipLink(node.pod, 'net1')?.ifindex}`, tap, "the kernel's link wins over the record: upstream's DeviceSpec's");
  t.equal(ipLinksWithIndex(node.host, ours?.ifindex), undefined, 'the recorded one was not recreated');
  const del = runCni(node, 'ours', 'DEL', MVP1);
  t.equal(del.status, 0, `our DEL (${said(del)})`);
  t.equal(ipLink(node.host, hostLinkName(MVP1))?.ifindex, theirs?.ifindex, `back as ${hostLinkName(MVP1)}`);
  await stopDevicePlugin(node);
  t.same(strayLinks(node), [], 'no stray link');
});

function ipLinksWithIndex(ns: string, index: number | undefined): string | undefined {
  return [...macvtaps(ns).values()].find((l) => l.ifindex === index)?.ifname;
}

t.test("attached by our CNI, released by upstream's CNI, re-allocated by ours at the same ifindex", { skip }, async (t) => {
  const node = await makeNode(t);
  await startDevicePlugin(t, node, 'ours');
  await allocate(node, MVP1);
  const first = ipLink(node.host, hostLinkName(MVP1));
  t.equal(runCni(node, 'ours', 'ADD', MVP1).status, 0, 'our ADD');
  t.equal(runCni(node, 'upstream', 'DEL', MVP1).status, 0, "upstream's DEL deletes the link (our record stays)");

  // The device's next pod: our Allocate picks the lowest free index of its range, the one just freed.
  const tap = await allocate(node, MVP1);
  const fresh = ipLink(node.host, hostLinkName(MVP1));
  t.equal(fresh?.ifindex, first?.ifindex, 'the new link has the old ifindex (and name)');
  t.not(fresh?.address, first?.address, 'and a MAC of its own');
  const add = runCni(node, 'ours', 'ADD', MVP1, { containerId: 'c0ffee02' });
  t.equal(add.status, 0, `our ADD past the stale record (${said(add)})`);
  const inPod = ipLink(node.pod, 'net1');
  t.equal(`/dev/tap${inPod?.ifindex}`, tap, 'the new link is attached');
  t.equal(inPod?.address, fresh?.address, "the stale record's settings were not applied to it: its own MAC");
  t.same(stateEntries(node, 'attachments'), [`${MVP1}+c0ffee02+net1.json`], 'the stale record is dropped');
  t.same(await waitNoStrays(node), [], 'no stray link');
});
