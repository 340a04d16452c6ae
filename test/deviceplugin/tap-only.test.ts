/**
 * A pod that consumes only the resource's /dev/tapN (deploy/examples/pod-tap-only.yaml): no network
 * annotation, so no CNI call. The device plugin's Allocate alone must give it a tap that passes frames both
 * ways through the lower device, proven with the demo's technique (a probe on the lower device's veth peer).
 */
import t from 'tap';
import { hostLinkName } from '../../lib/naming';
import { claimIfindexes, ipLink, makeLowerNetns, rootOnly } from '../support/kernel';
import { attachProbe, frameMacs, makeFrame, openTap, readFrame, writeFrame } from '../support/tap-io';
import { PREFIX, startDaemon } from './helpers';

const RES = `${PREFIX}/dataplane`;
const PEER_MAC = '02:70:65:65:72:01';

t.test('tap-only pod: the allocated /dev/tapN passes a frame both ways without any CNI call', { skip: rootOnly }, async (t) => {
  const { ns, peer } = makeLowerNetns(t);
  const idx = claimIfindexes(t, 16);
  const env = JSON.stringify([{ name: 'dataplane', lowerDevice: 'lower0', capacity: 2 }]);
  const { kubelet } = await startDaemon(t, { ns, env, args: ['--ifindex-range', `${idx[0]}-${idx[14]}`] });
  await kubelet.waitForDevices(RES, (l) => l.length === 2 && l.every((d) => d.health === 'Healthy'));

  const res = await kubelet.allocate(RES, [['dataplaneMvp1']]);
  const spec = res.containerResponses[0].devices[0];
  const link = ipLink(ns, hostLinkName('dataplaneMvp1'));
  t.ok(link, 'the macvtap stays in the host namespace');
  if (!link?.address) throw new Error('allocated link not found');
  t.ok(link.flags.includes('UP'), 'Allocate leaves it up, as kubevirt does');
  t.equal(spec.hostPath, `/dev/tap${link.ifindex}`);

  // The "pod": the container runtime opens the DeviceSpec path, nothing else.
  const podFd = openTap(t, spec.hostPath);
  const wire = attachProbe(t, { ns, wire: peer, index: idx[15], mac: PEER_MAC });

  writeFrame(podFd, makeFrame(PEER_MAC, link.address, 'tap-only out'));
  const out = await readFrame(wire.fd, 'tap-only out', 5000);
  t.ok(out, 'a frame written to the tap leaves through the lower device');
  if (out) t.same(frameMacs(out), { dst: PEER_MAC, src: link.address }, 'unchanged, from the macvtap MAC');

  writeFrame(wire.fd, makeFrame(link.address, PEER_MAC, 'tap-only in'));
  const back = await readFrame(podFd, 'tap-only in', 5000);
  t.ok(back, "a frame sent to the macvtap's MAC is read from the tap");
  if (back) t.same(frameMacs(back), { dst: link.address, src: PEER_MAC });
});
