/**
 * Switching a node from kubevirt's macvtap-cni to this project (root; upstream's binaries from
 * $MACVTAP_UPSTREAM_DIR or ../shared/upstream, skipped with a message when absent). One test per row of the
 * README's migration table, direction upstream -> ours; each checks the oracle (`ip -j -d link`) for where every
 * device's link is, under which name, and that no link is left under a name nobody reuses.
 */
import t from 'tap';
import { hostLinkName } from '../../lib/naming';
import { ipLink } from '../support/kernel';
import { allocate, macvtaps, makeNode, runCni, said, skip, startDevicePlugin, stopDevicePlugin, waitNoStrays } from './node';

const MVP0 = 'dataplaneMvp0';
const MVP1 = 'dataplaneMvp1';

t.test("allocated by upstream's device plugin, attached and released by our CNI", { skip }, async (t) => {
  const node = await makeNode(t);
  await startDevicePlugin(t, node, 'upstream');
  const tap = await allocate(node, MVP1);
  const made = ipLink(node.host, hostLinkName(MVP1));
  t.equal(tap, `/dev/tap${made?.ifindex}`, "upstream's DeviceSpec names its macvtap's tap");

  const add = runCni(node, 'ours', 'ADD', MVP1, { mac: '02:00:00:00:1a:01' });
  t.equal(add.status, 0, `our ADD finds upstream's link by the naming rule (${said(add)})`);
  const inPod = ipLink(node.pod, 'net1');
  t.equal(inPod?.ifindex, made?.ifindex, 'the same macvtap (its ifindex names the tap the kubelet handed out)');
  t.equal(inPod?.address, '02:00:00:00:1a:01', 'with the pod MAC');
  t.ok(inPod?.flags.includes('UP'), 'up in the pod');

  const del = runCni(node, 'ours', 'DEL', MVP1);
  t.equal(del.status, 0, `our DEL (${said(del)})`);
  const back = ipLink(node.host, hostLinkName(MVP1));
  t.equal(back?.ifindex, made?.ifindex, `back on the host as ${hostLinkName(MVP1)}, the name upstream's Allocate replaces`);
  t.equal(back?.address, made?.address, "restored to its settings before our ADD (our record): upstream's MAC");
  t.ok(back?.flags.includes('UP'), "and up, as upstream's Allocate left it");

  // The next pod: upstream's Allocate deletes and recreates that name; nothing else is left.
  const again = await allocate(node, MVP1);
  t.match(again, /^\/dev\/tap\d+$/, "upstream's next Allocate of the device succeeds");
  t.same([...macvtaps(node.host).keys()], [hostLinkName(MVP1)], 'one macvtap on the host: the device');
  t.same(await waitNoStrays(node), [], 'no stray link');
});

t.test("attached by upstream's CNI, released by our CNI after the switch, re-allocated by ours", { skip }, async (t) => {
  const node = await makeNode(t);
  await startDevicePlugin(t, node, 'upstream');
  await allocate(node, MVP1);
  const made = ipLink(node.host, hostLinkName(MVP1));
  const add = runCni(node, 'upstream', 'ADD', MVP1, { mac: '02:00:00:00:1a:02' });
  t.equal(add.status, 0, `upstream's ADD (${said(add)})`);
  t.equal(ipLink(node.pod, 'net1')?.ifindex, made?.ifindex, 'attached by upstream');

  // The DaemonSet is replaced: our device plugin and our CNI binary; the pod keeps running.
  await startDevicePlugin(t, node, 'ours');
  t.equal(ipLink(node.pod, 'net1')?.ifindex, made?.ifindex, "our device plugin's start leaves the pod's link alone");

  const del = runCni(node, 'ours', 'DEL', MVP1);
  t.equal(del.status, 0, `our DEL of upstream's attachment (no record) (${said(del)})`);
  t.notOk(ipLink(node.pod, 'net1'), 'gone from the pod');
  const back = ipLink(node.host, hostLinkName(MVP1));
  t.equal(back?.ifindex, made?.ifindex, `back on the host as ${hostLinkName(MVP1)}`);
  t.not(back?.address, '02:00:00:00:1a:02', "reset: not the pod's MAC");
  t.notOk(ipLink(node.host, MVP1), `never as ${MVP1}`);

  // Our Allocate of the device replaces it (the old one retired and deleted in the background).
  const tap = await allocate(node, MVP1);
  const fresh = ipLink(node.host, hostLinkName(MVP1));
  t.equal(tap, `/dev/tap${fresh?.ifindex}`, "our Allocate's DeviceSpec names the new macvtap");
  t.ok(fresh?.flags.includes('UP'), 'up, as upstream makes it');
  t.same(await waitNoStrays(node), [], 'the returned link was deleted, nothing retired is left');
  t.same([...macvtaps(node.host).keys()], [hostLinkName(MVP1)], 'one macvtap on the host: the device');
});

t.test('device plugin restart, upstream -> ours, on a node whose links upstream made', { skip }, async (t) => {
  const node = await makeNode(t);
  await startDevicePlugin(t, node, 'upstream');
  const upstreamIds = node.kubelet.devices('macvtap.network.kubevirt.io/dataplane')?.map((d) => d.ID);
  await allocate(node, MVP0); // allocated, its pod not started yet
  await allocate(node, MVP1);
  t.equal(runCni(node, 'upstream', 'ADD', MVP1).status, 0, "upstream's ADD of the second device");
  const host0 = ipLink(node.host, hostLinkName(MVP0));
  const pod1 = ipLink(node.pod, 'net1');

  await startDevicePlugin(t, node, 'ours');
  const ours = node.kubelet.devices('macvtap.network.kubevirt.io/dataplane');
  t.same(
    ours?.map((d) => d.ID),
    upstreamIds,
    'the same device IDs, all Healthy',
  );
  t.equal(ipLink(node.host, hostLinkName(MVP0))?.ifindex, host0?.ifindex, "upstream's allocated link is kept on the host");
  t.equal(ipLink(node.pod, 'net1')?.ifindex, pod1?.ifindex, "the running pod's link is untouched");

  // The pod of the first device starts now, with our CNI: upstream's link is found and attached.
  const add = runCni(node, 'ours', 'ADD', MVP0, { containerId: 'c0ffee02', ifname: 'net2' });
  t.equal(add.status, 0, `our ADD of a device upstream allocated before the restart (${said(add)})`);
  t.equal(ipLink(node.pod, 'net2')?.ifindex, host0?.ifindex, 'the macvtap whose tap the kubelet handed out');

  // Kubelet re-allocates the second device (its pod was recreated elsewhere): ours replaces the host link.
  t.equal(runCni(node, 'upstream', 'DEL', MVP1).status, 0, "upstream's DEL (it deletes the link)");
  const tap = await allocate(node, MVP1);
  t.equal(tap, `/dev/tap${ipLink(node.host, hostLinkName(MVP1))?.ifindex}`, 'our Allocate of it');
  t.same(await waitNoStrays(node), [], 'no stray link');
});

t.test("allocated by upstream's device plugin, ours restarts before the pod's ADD, our CNI attaches it", { skip }, async (t) => {
  const node = await makeNode(t);
  await startDevicePlugin(t, node, 'upstream');
  const tap = await allocate(node, MVP1);
  await stopDevicePlugin(node);
  await startDevicePlugin(t, node, 'ours');
  t.equal(`/dev/tap${ipLink(node.host, hostLinkName(MVP1))?.ifindex}`, tap, "upstream's link is still there");

  const add = runCni(node, 'ours', 'ADD', MVP1);
  t.equal(add.status, 0, `our ADD (${said(add)})`);
  t.equal(`/dev/tap${ipLink(node.pod, 'net1')?.ifindex}`, tap, "attached: the macvtap of upstream's DeviceSpec");
  const del = runCni(node, 'ours', 'DEL', MVP1);
  t.equal(del.status, 0, `our DEL (${said(del)})`);
  t.equal(`/dev/tap${ipLink(node.host, hostLinkName(MVP1))?.ifindex}`, tap, `back as ${hostLinkName(MVP1)}`);
  // A sandbox recreation (same device, no new Allocate) takes it again: what upstream's deleting DEL cannot do.
  const readd = runCni(node, 'ours', 'ADD', MVP1, { containerId: 'c0ffee03' });
  t.equal(readd.status, 0, `a recreated sandbox's ADD takes it again (${said(readd)})`);
  t.equal(runCni(node, 'ours', 'DEL', MVP1, { containerId: 'c0ffee03' }).status, 0, 'and its DEL returns it');
  t.same(await waitNoStrays(node), [], 'no stray link');
});

t.test("attached by upstream's CNI and re-allocated by upstream meanwhile, released by our CNI", { skip }, async (t) => {
  const node = await makeNode(t);
  await startDevicePlugin(t, node, 'upstream');
  await allocate(node, MVP1);
  t.equal(runCni(node, 'upstream', 'ADD', MVP1).status, 0, "upstream's ADD");
  const attached = ipLink(node.pod, 'net1');
  // The kubelet hands the device out again (its checkpoint lost the pod): upstream makes a new mvt<hash>.
  const tap = await allocate(node, MVP1);
  const newer = ipLink(node.host, hostLinkName(MVP1));
  t.equal(tap, `/dev/tap${newer?.ifindex}`, 'a newer link of the device on the host');

  const del = runCni(node, 'ours', 'DEL', MVP1);
  t.equal(del.status, 0, `our DEL of the old attachment (${said(del)})`);
  t.notOk(ipLink(node.pod, 'net1'), "the pod's copy is deleted, as upstream's DEL would (its name is taken on the host)");
  t.equal(ipLink(node.host, hostLinkName(MVP1))?.ifindex, newer?.ifindex, 'the newer, answered link is untouched');
  t.not(newer?.ifindex, attached?.ifindex, 'and it is not the old one');
  t.same(await waitNoStrays(node), [], 'no stray link');
});
