// Moving links between namespaces (root only): by handle, fd, path and pid, sync and async, with rename and
// new ifindex on arrival; failed moves leave the link where it was. Checked with `ip -j -d link`.
import t from 'tap';
import { MoveOptions, Netns, NetnsTarget } from '../../lib/netlink';
import { openFdCount, rootOnly, sysfsTapDev } from '../support/kernel';
import { emptyNetns, hasFlag, ipLink, names, scratch, sleeperIn, oracle, settle, settled } from './fixtures';

const twins = {
  sync: (h: Netns, ref: string | number, to: NetnsTarget, o?: MoveOptions): Promise<void> => settled(() => h.moveLinkSync(ref, to, o)),
  async: (h: Netns, ref: string | number, to: NetnsTarget, o?: MoveOptions): Promise<void> => h.moveLink(ref, to, o),
};

t.test('by handle, fd, path and pid; sync and async', { skip: rootOnly }, async (t) => {
  const s = scratch(t);
  const dst = emptyNetns(t);
  const pid = await sleeperIn(t, dst.ns);
  const targets: Record<string, NetnsTarget> = {
    handle: dst.h,
    fd: { fd: dst.h.fd },
    path: { path: `/var/run/netns/${dst.ns}` },
    pid: { pid },
  };
  let n = 0;
  for (const [twin, move] of Object.entries(twins)) {
    for (const [kind, target] of Object.entries(targets)) {
      const index = s.idx[n];
      const name = `mv${n++}`;
      s.h.createMacvtapSync({ name, lower: s.lower, index, up: true });
      if (n === 1) await Promise.all([s.h.listLinks(), dst.h.listLinks()]); // handles' sockets exist before counting fds
      const fds = openFdCount();
      await move(s.h, n % 2 ? name : index, target);
      t.notOk(ipLink(s.ns, name), `${twin} ${kind}: gone from the source`);
      const o = oracle(dst.ns, name);
      t.equal(o?.ifindex, index, `${twin} ${kind}: arrived with its ifindex`);
      t.notOk(o.flags.includes('UP'), `${twin} ${kind}: arrives down`);
      t.equal(o.link_netnsid, 0, `${twin} ${kind}: parent is in another namespace`);
      // The kernel re-registers the char device in the target and may give it another minor: re-read it there.
      const dev = await dst.h.tapDevice(name);
      t.equal(
        `${dev.major}:${dev.minor}`,
        sysfsTapDev(dst.ns, name, index),
        `${twin} ${kind}: tap char device as the target's sysfs shows it`,
      );
      // The first tapDevice() of a handle mounts the namespace's sysfs once and keeps that one fd until close().
      t.equal(openFdCount(), fds + (n === 1 ? 1 : 0), `${twin} ${kind}: no fd left behind`);
      const seen = await dst.h.getLink(name);
      t.equal(seen?.parentNetnsId, 0, 'record shows the parent namespace id');
    }
  }
});

t.test('rename and new ifindex on arrival', { skip: rootOnly }, async (t) => {
  const s = scratch(t);
  const dst = emptyNetns(t);
  s.h.createMacvtapSync({ name: 'host0', lower: s.lower, index: s.idx[0] });
  s.h.moveLinkSync('host0', dst.h, { name: 'eth0' });
  t.notOk(ipLink(s.ns, 'host0'), 'left the source');
  t.equal(ipLink(dst.ns, 'eth0')?.ifindex, s.idx[0], 'sync: renamed on arrival');

  s.h.createMacvtapSync({ name: 'host1', lower: s.lower, index: s.idx[1] });
  await s.h.moveLink(s.idx[1], { path: `/var/run/netns/${dst.ns}` }, { name: 'eth1', index: s.idx[2] });
  t.equal(ipLink(dst.ns, 'eth1')?.ifindex, s.idx[2], 'async: renamed and re-indexed on arrival');
  t.same(names(dst.ns), ['eth0', 'eth1', 'lo']);

  // Back again, by name, renaming on the way.
  await dst.h.moveLink('eth1', s.h, { name: 'home1' });
  t.equal(ipLink(s.ns, 'home1')?.ifindex, s.idx[2], 'moved back');
});

t.test('a failed move leaves the link where it was', { skip: rootOnly }, async (t) => {
  const s = scratch(t);
  const dst = emptyNetns(t);
  s.h.createMacvtapSync({ name: 'stay0', lower: s.lower, index: s.idx[0], up: true });
  s.h.setLinkSync('stay0', { alias: 'stays' });
  s.h.createMacvtapSync({ name: 'taken', lower: s.lower, index: s.idx[1] });
  s.h.moveLinkSync('taken', dst.h);
  await s.h.listLinks();
  const before = { src: ipLink(s.ns, 'stay0'), srcNames: names(s.ns), dstNames: names(dst.ns), fds: openFdCount() };

  // The kernel moves the link and then fails to rename it in the target: the library must undo the move.
  for (const [twin, move] of Object.entries(twins)) {
    await t.rejects(
      move(s.h, 'stay0', dst.h, { name: 'taken' }),
      { name: 'NetlinkError', code: 'EEXIST', operation: 'move link' },
      `${twin}: name taken in the target`,
    );
    t.same(names(dst.ns), before.dstNames, `${twin}: nothing arrived in the target`);
    const now = oracle(s.ns, 'stay0');
    t.equal(now.ifindex, s.idx[0], `${twin}: back in the source with its ifindex`);
    t.ok(now.flags.includes('UP'), `${twin}: up again, as before`);
    t.equal(now.ifalias, 'stays', `${twin}: alias kept`);
  }
  await t.rejects(
    s.h.moveLink('stay0', { fd: dst.h.fd }, { name: 'taken', index: s.idx[5] }),
    { code: 'EEXIST' },
    'also with a new ifindex',
  );
  t.equal(ipLink(s.ns, 'stay0')?.ifindex, s.idx[0], 'original ifindex restored');
  const pid = await sleeperIn(t, dst.ns);
  t.throws(() => s.h.moveLinkSync(s.idx[0], { pid }, { name: 'taken' }), { code: 'EEXIST' }, 'and with a pid target');

  // Refused before anything moved.
  t.throws(
    () => s.h.moveLinkSync('stay0', dst.h, { index: 1 }),
    { code: 'EBUSY', extack: /ifindex/ },
    'ifindex taken in the target (kernel explains)',
  );
  t.throws(() => s.h.moveLinkSync('nosuch', dst.h), { code: 'ENODEV', link: 'nosuch' });
  t.throws(() => s.h.moveLinkSync('stay0', { path: '/etc/hostname' }), { code: 'EINVAL', operation: 'open network namespace' });
  t.throws(() => s.h.moveLinkSync('stay0', { pid: 0x7ffffffe }), { code: 'ESRCH' });
  t.throws(() => s.h.moveLinkSync('stay0', { nowhere: 1 } as unknown as NetnsTarget), TypeError);
  t.throws(() => s.h.moveLinkSync('stay0', { fd: -1 }), RangeError);
  t.throws(() => s.h.moveLinkSync('stay0', dst.h, { name: 'a/b' }), RangeError);
  t.throws(() => s.h.moveLinkSync('stay0', dst.h, null as unknown as MoveOptions), TypeError);
  await t.rejects(s.h.moveLink('stay0', { path: '/proc/self/ns/uts' }), { code: 'EINVAL' });

  const after = ipLink(s.ns, 'stay0');
  t.same({ ...after, operstate: undefined }, { ...before.src, operstate: undefined }, 'link as it was');
  t.same(names(s.ns), before.srcNames, 'source links unchanged');
  t.same(names(dst.ns), before.dstNames, 'target links unchanged');
  await settle(); // a closed async socket's fd is released in its uv_close callback, on a later loop turn
  t.equal(openFdCount(), before.fds, 'no fd left behind');
  t.ok(hasFlag(s.ns, 'stay0', 'UP'));
});
