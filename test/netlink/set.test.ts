// Changing links (root only): MAC, MTU, promisc, up/down, rename, alias — by name and by ifindex, sync and
// async, each checked with `ip -j -d link`.
import t from 'tap';
import { LinkChanges, LinkRef, NetlinkError, Netns } from '../../lib/netlink';
import { openFdCount, rootOnly } from '../support/kernel';
import { hasFlag, ipLink, names, scratch, oracle, settled } from './fixtures';

const twins = {
  sync: (h: Netns, ref: LinkRef, c: LinkChanges): Promise<void> => settled(() => h.setLinkSync(ref, c)),
  async: (h: Netns, ref: LinkRef, c: LinkChanges): Promise<void> => h.setLink(ref, c),
};

t.test('each change on its own, by name and by ifindex', { skip: rootOnly }, async (t) => {
  const s = scratch(t);
  let n = 0;
  for (const [twin, set] of Object.entries(twins)) {
    for (const by of ['name', 'index'] as const) {
      const index = s.idx[n];
      let name = `set${n}`;
      n += 1;
      s.h.createMacvtapSync({ name, lower: s.lower, index });
      const ref = (): LinkRef => (by === 'name' ? name : index);
      const what = `${twin} by ${by}`;

      const mac = `02:00:00:00:cc:0${n}`;
      await set(s.h, ref(), { mac });
      t.equal(oracle(s.ns, name).address, mac, `${what}: MAC`);

      await set(s.h, ref(), { mtu: 1300 });
      t.equal(oracle(s.ns, name).mtu, 1300, `${what}: MTU`);

      await set(s.h, ref(), { promisc: true });
      t.ok(hasFlag(s.ns, name, 'PROMISC'), `${what}: promisc on`);
      await set(s.h, ref(), { promisc: false });
      t.notOk(hasFlag(s.ns, name, 'PROMISC'), `${what}: promisc off`);

      await set(s.h, ref(), { up: true });
      t.ok(hasFlag(s.ns, name, 'UP'), `${what}: up`);
      await set(s.h, ref(), { up: false });
      t.notOk(hasFlag(s.ns, name, 'UP'), `${what}: down`);

      await set(s.h, ref(), { alias: 'vm disk 7 / nic 0' });
      t.equal(oracle(s.ns, name).ifalias, 'vm disk 7 / nic 0', `${what}: alias`);
      t.equal(s.h.getLinkSync(index)?.alias, 'vm disk 7 / nic 0', `${what}: alias read back`);
      await set(s.h, ref(), { alias: '' });
      t.equal(oracle(s.ns, name).ifalias, undefined, `${what}: alias cleared`);

      const renamed = `ren${n}`;
      await set(s.h, ref(), { name: renamed });
      t.notOk(ipLink(s.ns, name), `${what}: old name gone`);
      t.equal(ipLink(s.ns, renamed)?.ifindex, index, `${what}: renamed, same ifindex`);
      name = renamed;
    }
  }
});

t.test('all changes in one call', { skip: rootOnly }, async (t) => {
  const s = scratch(t);
  for (const [i, [twin, set]] of Object.entries(twins).entries()) {
    const name = `all${i}`;
    s.h.createMacvtapSync({ name, lower: s.lower, index: s.idx[i] });
    const mac = `02:00:00:00:dd:0${i}`;
    await set(s.h, name, { mac, mtu: 1280, promisc: true, up: true, alias: 'all at once', name: `done${i}` });
    const o = oracle(s.ns, `done${i}`);
    t.equal(o?.ifindex, s.idx[i], `${twin}: renamed`);
    t.equal(o.address, mac, `${twin}: MAC`);
    t.equal(o.mtu, 1280, `${twin}: MTU`);
    t.ok(o.flags.includes('PROMISC') && o.flags.includes('UP'), `${twin}: promisc and up`);
    t.equal(o.ifalias, 'all at once', `${twin}: alias`);
  }
});

t.test('rename together with down takes the link down first', { skip: rootOnly }, async (t) => {
  const s = scratch(t);
  s.h.createMacvtapSync({ name: 'upnow', lower: s.lower, index: s.idx[0], up: true });
  t.ok(hasFlag(s.ns, 'upnow', 'UP'));
  s.h.setLinkSync('upnow', { name: 'downnow', up: false });
  t.notOk(hasFlag(s.ns, 'downnow', 'UP'), 'down');
  t.equal(oracle(s.ns, 'downnow').ifindex, s.idx[0], 'renamed');
  await s.h.setLink(s.idx[0], { name: 'upagain', up: true });
  t.ok(hasFlag(s.ns, 'upagain', 'UP'), 'renamed and up in one call');
});

t.test('failures: missing link, name taken, MTU above the lower device', { skip: rootOnly }, async (t) => {
  const s = scratch(t);
  s.h.createMacvtapSync({ name: 'keep0', lower: s.lower, index: s.idx[0], mac: '02:00:00:00:ee:01' });
  s.h.createMacvtapSync({ name: 'keep1', lower: s.lower, index: s.idx[1] });
  s.h.listLinksSync(); // both sockets exist before counting fds
  await s.h.listLinks();
  const before = { names: names(s.ns), keep0: ipLink(s.ns, 'keep0'), fds: openFdCount() };

  t.throws(() => s.h.setLinkSync('nosuch', { up: true }), { name: 'NetlinkError', code: 'ENODEV', operation: 'set link', link: 'nosuch' });
  await t.rejects(s.h.setLink(s.idx[7], { up: true }), { code: 'ENODEV', link: `ifindex ${s.idx[7]}` });
  t.throws(() => s.h.setLinkSync('keep0', { name: 'keep1' }), { code: 'EEXIST', errno: 17 });
  await t.rejects(s.h.setLink('keep0', { mtu: 9000 }), { code: 'EINVAL', operation: 'set link' });
  t.throws(() => s.h.setLinkSync('keep0', { mac: '01:00:5e:00:00:01' }), RangeError, 'multicast MAC refused before any syscall');
  t.throws(() => s.h.setLinkSync('keep0', { mtu: 1.5 }), TypeError);
  t.throws(() => s.h.setLinkSync('keep0', { up: 'yes' as unknown as boolean }), TypeError);
  t.throws(() => s.h.setLinkSync('keep0', { alias: 'x'.repeat(256) }), RangeError);
  t.throws(() => s.h.setLinkSync('keep0', { alias: 5 as unknown as string }), TypeError);
  t.throws(() => s.h.setLinkSync('keep0', null as unknown as LinkChanges), TypeError);

  t.same(names(s.ns), before.names, 'no link added or removed');
  t.same(ipLink(s.ns, 'keep0'), before.keep0, 'keep0 unchanged');
  t.equal(openFdCount(), before.fds, 'no fd left behind');
  const err = (() => {
    try {
      s.h.setLinkSync('nosuch', {});
    } catch (e) {
      return e;
    }
  })();
  t.ok(err instanceof NetlinkError, 'instanceof NetlinkError');
});
