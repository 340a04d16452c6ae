// The CNI ADD's one request (root only): a macvtap as ADD finds it on the node (down, named `mvt<hash>`) is
// moved into the pod, renamed to CNI_IFNAME, keeping its ifindex, with MAC, MTU, promisc off and up, by one
// RTM_SETLINK. These check, against the `ip -j -d link` oracle, that the kernel moves first and applies the
// rest in the NEW namespace: the rename is checked against the pod's names, not the node's; up holds although a
// moved link arrives down. test/netlink/attach.test.ts has the order of the steps after the move.
import t from 'tap';
import {
  IFF_PROMISC,
  IFF_UP,
  IFLA_ADDRESS,
  IFLA_IFNAME,
  IFLA_MTU,
  IFLA_NET_NS_FD,
  IFLA_NEW_IFINDEX,
  RTM_SETLINK,
} from '../../lib/netlink/constants';
import { Link, MoveOptions } from '../../lib/netlink';
import { moveLinkRequest } from '../../lib/netlink/ops/move';
import { ip, IpLink, rootOnly } from '../support/kernel';
import { emptyNetns, ipLink, names, scratch } from './fixtures';

const HOST_NAME = 'mvt0123456789ab';
const MAC = '02:00:00:00:0b:01';

/** ADD's options for `link`: CNI_IFNAME, its own ifindex, the configured MAC and MTU, promisc off, up. */
const addOptions = (link: Link, mtu = 1400): MoveOptions => ({ name: 'net1', index: link.index, mac: MAC, mtu, promisc: false, up: true });

const view = (l: IpLink | undefined): unknown =>
  l && { ifindex: l.ifindex, name: l.ifname, mac: l.address, mtu: l.mtu, up: l.flags.includes('UP'), promisc: l.flags.includes('PROMISC') };

/** The attribute types of an RTM_SETLINK, in order, with its ifinfomsg's index, flags and change mask. */
function decode(msg: Buffer): { type: number; index: number; flags: number; change: number; attrs: number[] } {
  const attrs: number[] = [];
  for (let off = 32; off + 4 <= msg.length;) {
    const len = msg.readUInt16LE(off);
    attrs.push(msg.readUInt16LE(off + 2));
    off += (len + 3) & ~3;
  }
  return { type: msg.readUInt16LE(4), index: msg.readInt32LE(20), flags: msg.readUInt32LE(24), change: msg.readUInt32LE(28), attrs };
}

t.test("ADD's request is one RTM_SETLINK carrying the move, name, ifindex, MAC, MTU and flags", (t) => {
  const link = { index: 4242 } as Link;
  const m = decode(moveLinkRequest(link.index, { fd: 7 }, addOptions(link)));
  t.equal(m.type, RTM_SETLINK, 'RTM_SETLINK');
  t.equal(m.index, 4242, 'addressed by ifindex (IFLA_IFNAME then carries the new name)');
  t.same(m.attrs, [IFLA_NET_NS_FD, IFLA_IFNAME, IFLA_NEW_IFINDEX, IFLA_ADDRESS, IFLA_MTU], 'every attribute in the one message');
  t.equal(m.change & (IFF_UP | IFF_PROMISC), IFF_UP | IFF_PROMISC, 'changes up and promisc');
  t.equal(m.flags & (IFF_UP | IFF_PROMISC), IFF_UP, 'to up, promisc off');
  t.end();
});

t.test('kernel: all of it lands in the pod, up although a moved link arrives down', { skip: rootOnly }, (t) => {
  const s = scratch(t);
  const pod = emptyNetns(t);
  const link = s.h.createMacvtapSync({ name: HOST_NAME, lower: s.lowerIndex, index: s.idx[0] });
  t.notOk(link.flags.up, 'starts down, as the device plugin leaves it');
  s.h.moveLinkSync(link, pod.h, addOptions(link));
  t.notOk(ipLink(s.ns, HOST_NAME), 'gone from the node');
  t.same(view(ipLink(pod.ns, 'net1')), { ifindex: s.idx[0], name: 'net1', mac: MAC, mtu: 1400, up: true, promisc: false }, 'all applied');
  t.end();
});

t.test('kernel: the rename is checked in the pod, after the move, not in the node', { skip: rootOnly }, (t) => {
  const s = scratch(t);
  const pod = emptyNetns(t);
  const link = s.h.createMacvtapSync({ name: HOST_NAME, lower: s.lowerIndex, index: s.idx[0] });
  // The node has a `net1` of its own: a rename applied before the move would fail there with EEXIST.
  s.h.createMacvtapSync({ name: 'net1', lower: s.lowerIndex, index: s.idx[1] });
  // The pod has a link under the host name: the move alone could not land, the requested name makes it.
  ip('-n', pod.ns, 'link', 'add', HOST_NAME, 'type', 'veth', 'peer', 'name', 'peer1');
  s.h.moveLinkSync(link, pod.h, addOptions(link));
  t.same(
    view(ipLink(pod.ns, 'net1')),
    { ifindex: s.idx[0], name: 'net1', mac: MAC, mtu: 1400, up: true, promisc: false },
    'landed as net1',
  );
  t.ok(ipLink(pod.ns, HOST_NAME), "the pod's own link untouched");
  t.equal(ipLink(s.ns, 'net1')?.ifindex, s.idx[1], "the node's net1 untouched");
  t.notOk(ipLink(s.ns, HOST_NAME), 'gone from the node');
  t.end();
});

t.test('library: refused half-way (MTU above the lower device), the link is back in the node as it was', { skip: rootOnly }, (t) => {
  const s = scratch(t);
  const pod = emptyNetns(t);
  const link = s.h.createMacvtapSync({ name: HOST_NAME, lower: s.lowerIndex, index: s.idx[0] });
  const before = view(ipLink(s.ns, HOST_NAME));
  // The kernel moves, sets the MAC, then refuses the MTU (a macvtap's MTU is at most its lower device's).
  t.throws(() => s.h.moveLinkSync(link, pod.h, addOptions(link, 9000)), { code: 'EINVAL' }, "the kernel's refusal");
  t.same(view(ipLink(s.ns, HOST_NAME)), before, 'in the node under its name, MAC, MTU, down');
  t.same(names(pod.ns), ['lo'], 'nothing left in the pod');
  t.end();
});
