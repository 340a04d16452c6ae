// Move + configure in one RTM_SETLINK (root only). First the kernel's own behaviour, found out with raw
// requests and the `ip -j -d link` oracle (no library undo): in which order do_setlink applies the move,
// MAC, MTU, rename and flags, and what a refusal half-way leaves. Then the library's promise on top of it:
// moveLink(..., { name, index, mac, mtu, promisc, up }) either does all of it or leaves the link where it
// was, as it was — sync and async.
import t from 'tap';
import { Link, MoveOptions, Netns } from '../../lib/netlink';
import { native } from '../../lib/netlink/native';
import { moveLinkRequest } from '../../lib/netlink/ops/move';
import { IpLink, rootOnly, sysfsTapDev } from '../support/kernel';
import { emptyNetns, ip, ipLink, names, scratch, Scratch } from './fixtures';

type Teardown = Parameters<typeof scratch>[0];

/** What the oracle says of a link, in the terms the move request changes. */
interface Seen {
  ifindex: number;
  mac: string | undefined;
  mtu: number;
  up: boolean;
  promisc: boolean;
}
const seen = (l: IpLink | undefined): Seen | undefined =>
  l && { ifindex: l.ifindex, mac: l.address, mtu: l.mtu, up: l.flags.includes('UP'), promisc: l.flags.includes('PROMISC') };

const MAC0 = '02:00:00:00:0a:01';
const MAC1 = '02:00:00:00:0a:02';

/** A scratch namespace with macvtap `mv` (MAC0, MTU 1500, up), an empty target, and the target's name for ip. */
function setup(t: Teardown): { s: Scratch; dst: { ns: string; h: Netns }; link: Link } {
  const s = scratch(t);
  const dst = emptyNetns(t);
  const link = s.h.createMacvtapSync({ name: 'mv', lower: s.lower, index: s.idx[0], mac: MAC0, up: true });
  return { s, dst, link };
}

/** Sends the library's move request as is, with no undo: the kernel's behaviour alone. */
function rawMove(s: Scratch, link: Link, dst: Netns, opts: MoveOptions): unknown {
  const sock = new (native().NetlinkSocket)(s.h.fd, 0);
  try {
    sock.requestSync(moveLinkRequest(link.index, { fd: dst.fd }, opts), 'move link', link.name, 10000);
    return undefined;
  } catch (err) {
    return err;
  } finally {
    sock.close();
  }
}

/** Two macvtaps on one lower with the same MAC, `mva` up and `mv` down: bringing `mv` up must fail. */
function duplicateMac(s: Scratch): Link {
  s.h.setLinkSync('mv', { up: false });
  s.h.createMacvtapSync({ name: 'mva', lower: s.lower, index: s.idx[1], mac: MAC1 });
  s.h.setLinkSync('mv', { mac: MAC1 });
  s.h.setLinkSync('mva', { up: true });
  return s.h.getLinkSync('mv') as Link;
}

t.test('kernel order: everything in one request is applied, in the target', { skip: rootOnly }, (t) => {
  const { s, dst, link } = setup(t);
  const err = rawMove(s, link, dst.h, { name: 'net1', index: s.idx[2], mac: MAC1, mtu: 1400, promisc: true, up: true });
  t.equal(err, undefined, 'one request, accepted');
  t.notOk(ipLink(s.ns, 'mv'), 'left the source');
  t.same(seen(ipLink(dst.ns, 'net1')), { ifindex: s.idx[2], mac: MAC1, mtu: 1400, up: true, promisc: true }, 'all applied');
  const dev = dst.h.tapDeviceSync('net1');
  t.equal(`${dev.major}:${dev.minor}`, sysfsTapDev(dst.ns, 'net1', s.idx[2]), 'its tap device as the target sees it');
  t.end();
});

t.test('kernel order: a refused MAC leaves the link moved, with nothing else applied', { skip: rootOnly }, (t) => {
  const { s, dst, link } = setup(t);
  const lowerMac = ipLink(s.ns, s.lower)?.address as string;
  // A macvtap may not take its lower device's MAC: macvlan refuses it with EADDRINUSE.
  const err = rawMove(s, link, dst.h, { name: 'net1', mac: lowerMac, mtu: 1400, promisc: true, up: true });
  t.match(err, { name: 'NetlinkError', code: 'EADDRINUSE' }, 'refused');
  t.notOk(ipLink(s.ns, 'mv'), 'but the move happened first');
  t.same(names(dst.ns), ['lo', 'mv'], 'old name: the rename comes after the MAC');
  t.same(
    seen(ipLink(dst.ns, 'mv')),
    { ifindex: s.idx[0], mac: MAC0, mtu: 1500, up: false, promisc: false },
    'MTU, promisc, up not applied: they come after',
  );
  t.end();
});

t.test('kernel order: a refused MTU leaves the MAC applied, name and flags not', { skip: rootOnly }, (t) => {
  const { s, dst, link } = setup(t);
  const err = rawMove(s, link, dst.h, { name: 'net1', mac: MAC1, mtu: 9000, promisc: true, up: true });
  t.match(err, { name: 'NetlinkError', code: 'EINVAL' }, 'MTU above the lower device refused');
  t.same(names(dst.ns), ['lo', 'mv'], 'moved, not renamed: rename comes after the MTU');
  t.same(seen(ipLink(dst.ns, 'mv')), { ifindex: s.idx[0], mac: MAC1, mtu: 1500, up: false, promisc: false }, 'MAC before MTU; flags after');
  t.end();
});

t.test('kernel order: a refused rename leaves MAC and MTU applied, flags not', { skip: rootOnly }, (t) => {
  const { s, dst, link } = setup(t);
  ip('-n', dst.ns, 'link', 'add', 'net1', 'type', 'veth', 'peer', 'name', 'net1peer');
  const err = rawMove(s, link, dst.h, { name: 'net1', mac: MAC1, mtu: 1400, promisc: true, up: true });
  t.match(err, { name: 'NetlinkError', code: 'EEXIST' }, 'name taken in the target');
  t.same(
    seen(ipLink(dst.ns, 'mv')),
    { ifindex: s.idx[0], mac: MAC1, mtu: 1400, up: false, promisc: false },
    'MAC and MTU before the rename; flags after',
  );
  t.end();
});

t.test('kernel order: a refused up comes last, and promisc is applied anyway', { skip: rootOnly }, (t) => {
  const { s, dst } = setup(t);
  const link = duplicateMac(s);
  const err = rawMove(s, link, dst.h, { name: 'net1', mtu: 1400, promisc: true, up: true });
  t.match(err, { name: 'NetlinkError', code: 'EADDRINUSE' }, 'cannot come up with the MAC of an up sibling');
  t.same(names(dst.ns), ['lo', 'net1'], 'renamed: the flags are the last step');
  t.same(
    seen(ipLink(dst.ns, 'net1')),
    { ifindex: s.idx[0], mac: MAC1, mtu: 1400, up: false, promisc: true },
    'MTU applied; promisc set although up failed',
  );
  t.end();
});

t.test('kernel: the new name is used on arrival only when the old one is taken there', { skip: rootOnly }, (t) => {
  const { s, dst, link } = setup(t);
  ip('-n', dst.ns, 'link', 'add', 'mv', 'type', 'veth', 'peer', 'name', 'mvpeer');
  // Old name taken, MTU refused: the kernel renamed on arrival (it had to), then stopped at the MTU.
  const err = rawMove(s, link, dst.h, { name: 'net1', mtu: 9000 });
  t.match(err, { code: 'EINVAL' });
  t.equal(ipLink(dst.ns, 'net1')?.ifindex, s.idx[0], 'arrived as net1');
  t.end();
});

const twins = {
  sync: (h: Netns, ref: string | Link, to: Netns, o: MoveOptions): Promise<void> =>
    new Promise((resolve) => resolve(h.moveLinkSync(ref, to, o))),
  async: (h: Netns, ref: string | Link, to: Netns, o: MoveOptions): Promise<void> => h.moveLink(ref, to, o),
};

t.test('library: success is all of it, with a Link record or a name', { skip: rootOnly }, async (t) => {
  for (const [twin, move] of Object.entries(twins)) {
    const { s, dst, link } = setup(t);
    await move(s.h, twin === 'sync' ? link : 'mv', dst.h, { name: 'net1', index: s.idx[3], mac: MAC1, mtu: 1400, promisc: true, up: true });
    t.same(seen(ipLink(dst.ns, 'net1')), { ifindex: s.idx[3], mac: MAC1, mtu: 1400, up: true, promisc: true }, `${twin}: all applied`);
    t.notOk(ipLink(s.ns, 'mv'), `${twin}: gone from the source`);
  }
});

t.test('library: a failure half-way leaves the link where it was, as it was', { skip: rootOnly }, async (t) => {
  const cases: [string, string, (s: Scratch, dst: string) => Link | undefined, (s: Scratch) => MoveOptions][] = [
    ['MAC refused', 'EADDRINUSE', () => undefined, (s) => ({ mac: ipLink(s.ns, s.lower)?.address, mtu: 1400, promisc: true, up: true })],
    ['MTU refused', 'EINVAL', () => undefined, () => ({ mac: MAC1, mtu: 9000, promisc: true, up: true })],
    [
      'name taken in the target',
      'EEXIST',
      (_s, dst) => {
        ip('-n', dst, 'link', 'add', 'net1', 'type', 'veth', 'peer', 'name', 'net1peer');
        return undefined;
      },
      () => ({ mac: MAC1, mtu: 1400, promisc: true, up: true }),
    ],
    ['up refused', 'EADDRINUSE', (s) => duplicateMac(s), () => ({ mtu: 1400, promisc: true, up: true })],
  ];
  for (const [what, code, prepare, options] of cases) {
    for (const [twin, move] of Object.entries(twins)) {
      const { s, dst, link } = setup(t);
      const ref = prepare(s, dst.ns) ?? link;
      const before = seen(ipLink(s.ns, 'mv'));
      const dstNames = names(dst.ns);
      // A new ifindex too, so that the undo also has to restore the index.
      const opts = { name: 'net1', index: s.idx[4], ...options(s) };
      await t.rejects(
        move(s.h, twin === 'sync' ? ref : 'mv', dst.h, opts),
        { name: 'NetlinkError', code, operation: 'move link' },
        `${what} (${twin}): the kernel's error`,
      );
      t.same(seen(ipLink(s.ns, 'mv')), before, `${what} (${twin}): back in the source with ifindex, MAC, MTU, up and promisc as before`);
      t.same(names(dst.ns), dstNames, `${what} (${twin}): nothing left in the target`);
      const dev = s.h.tapDeviceSync('mv');
      t.equal(
        `${dev.major}:${dev.minor}`,
        sysfsTapDev(s.ns, 'mv', s.idx[0]),
        `${what} (${twin}): tap device registered in the source again`,
      );
    }
  }
});

t.test('library: the async path undoes a half-done move without one blocking request', { skip: rootOnly }, async (t) => {
  const { s, dst } = setup(t);
  const addon = native();
  const Original = addon.NetlinkSocket;
  let blocking = 0;
  let sockets = 0;
  // Every socket the library makes from here on counts its blocking requests.
  addon.NetlinkSocket = class extends Original {
    constructor(nsFd: number, groups: number) {
      super(nsFd, groups);
      sockets += 1;
    }
    override requestSync(request: Buffer, operation: string, link: string, timeoutMs: number): Buffer[] {
      blocking += 1;
      return super.requestSync(request, operation, link, timeoutMs);
    }
  };
  t.teardown(() => {
    addon.NetlinkSocket = Original;
  });
  await t.rejects(s.h.moveLink('mv', dst.h, { name: 'net1', mtu: 9000, up: true }), { code: 'EINVAL' });
  addon.NetlinkSocket = Original;
  t.ok(sockets >= 2, `the handle's async socket and one in the target for the undo (${sockets})`);
  t.equal(blocking, 0, 'no requestSync on the async path');
  t.ok(ipLink(s.ns, 'mv')?.flags.includes('UP'), 'and the link is back, up');
});
