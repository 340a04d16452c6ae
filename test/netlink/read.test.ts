// Reading and deleting links (root only): get by name/index (missing = null), list (multi-part dumps),
// delete; sync and async, checked with `ip -j -d link`.
import t, { Test } from 'tap';
import { Link } from '../../lib/netlink';
import { rootOnly } from '../support/kernel';
import { claimIfindexes, ipLink, names, scratch, oracle } from './fixtures';

/** Every field of the record against the oracle. */
function sameAsOracle(t: Test, ns: string, link: Link | null, what: string): void {
  if (!link) {
    t.fail(`${what}: no link`);
    return;
  }
  const o = oracle(ns, link.name);
  t.equal(link.index, o.ifindex, `${what}: index`);
  t.equal(link.kind, o.linkinfo?.info_kind, `${what}: kind`);
  t.equal(link.mac, o.address, `${what}: mac`);
  t.equal(link.mtu, o.mtu, `${what}: mtu`);
  t.equal(link.txqueuelen, o.txqlen, `${what}: txqueuelen`);
  t.equal(link.operstate.toUpperCase(), o.operstate, `${what}: operstate`);
  t.equal(link.flags.up, o.flags.includes('UP'), `${what}: up`);
  t.equal(link.flags.promisc, o.flags.includes('PROMISC'), `${what}: promisc`);
  t.equal(link.flags.lowerUp, o.flags.includes('LOWER_UP'), `${what}: lower-up`);
  t.equal(link.flags.loopback, o.flags.includes('LOOPBACK'), `${what}: loopback`);
  t.equal(link.alias, o.ifalias, `${what}: alias`);
}

t.test('get by name and by ifindex, sync and async', { skip: rootOnly }, async (t) => {
  const s = scratch(t);
  s.h.createMacvtapSync({ name: 'rd0', lower: s.lower, index: s.idx[0], mode: 'vepa', up: true, mac: '02:00:00:00:f0:01' });
  s.h.setLinkSync('rd0', { alias: 'read me', promisc: true });
  for (const ref of ['rd0', s.idx[0], 'lo', 1, s.lower, s.lowerIndex]) {
    sameAsOracle(t, s.ns, s.h.getLinkSync(ref), `sync ${ref}`);
    sameAsOracle(t, s.ns, await s.h.getLink(ref), `async ${ref}`);
  }
  const rd0 = s.h.getLinkSync('rd0')!;
  t.equal(rd0.parentIndex, s.lowerIndex, 'parent index');
  t.equal(rd0.parentNetnsId, undefined, 'parent in the same namespace');
  t.equal(rd0.macvtap?.mode, 'vepa');
  t.equal(s.h.getLinkSync('lo')?.flags.loopback, true, 'lo is loopback');
  t.equal(s.h.getLinkSync('lo')?.kind, undefined, 'lo has no kind');
  t.equal(s.h.getLinkSync(s.lower)?.kind, 'veth');
  t.equal(s.h.getLinkSync(s.lower)?.macvtap, undefined, 'no macvtap data on a veth');
  t.equal(s.h.getLinkSync(s.lower)?.flags.lowerUp, true, 'veth with its peer up is lower-up');
});

t.test('a missing link is null, by name and by ifindex', { skip: rootOnly }, async (t) => {
  const s = scratch(t);
  t.equal(s.h.getLinkSync('nosuch0'), null);
  t.equal(s.h.getLinkSync(s.idx[3]), null);
  t.equal(await s.h.getLink('nosuch0'), null);
  t.equal(await s.h.getLink(s.idx[3]), null);
  t.throws(() => s.h.getLinkSync(0), RangeError, 'ifindex 0 is not a link');
  t.throws(() => s.h.getLinkSync(''), RangeError);
  t.throws(() => s.h.getLinkSync({} as unknown as string), TypeError);
});

t.test('list: every link, sync and async, across a multi-part dump', { skip: rootOnly }, async (t) => {
  const s = scratch(t, { count: 16 });
  const indexes = [...s.idx, ...claimIfindexes(t, 16), ...claimIfindexes(t, 16)];
  for (const [i, index] of indexes.entries()) s.h.createMacvtapSync({ name: `l${i}`, lower: s.lower, index });
  const want = names(s.ns);
  t.equal(want.length, 3 + indexes.length);
  const sync = s.h.listLinksSync();
  const async_ = await s.h.listLinks();
  t.same(sync.map((l) => l.name).sort(), want, 'sync list = ip link');
  t.same(async_.map((l) => l.name).sort(), want, 'async list = ip link');
  const byName = new Map(sync.map((l) => [l.name, l]));
  for (const name of ['lo', s.lower, 'l0', `l${indexes.length - 1}`]) sameAsOracle(t, s.ns, byName.get(name) ?? null, `listed ${name}`);
  // 51 links of ~1.4 kB each do not fit one dump datagram (at most 32 kB): all of them means all parts were read.
  t.equal(sync.length, 51, 'every part of the dump was read');
});

t.test('delete by name and by ifindex; a missing link is ENODEV', { skip: rootOnly }, async (t) => {
  const s = scratch(t);
  for (let i = 0; i < 4; i++) s.h.createMacvtapSync({ name: `del${i}`, lower: s.lower, index: s.idx[i] });
  s.h.deleteLinkSync('del0');
  t.notOk(ipLink(s.ns, 'del0'), 'sync by name');
  s.h.deleteLinkSync(s.idx[1]);
  t.notOk(ipLink(s.ns, 'del1'), 'sync by ifindex');
  await s.h.deleteLink('del2');
  t.notOk(ipLink(s.ns, 'del2'), 'async by name');
  await s.h.deleteLink(s.idx[3]);
  t.notOk(ipLink(s.ns, 'del3'), 'async by ifindex');
  t.same(names(s.ns), ['lo', 'lower0', 'peer0'], 'only the veth pair is left');
  t.throws(() => s.h.deleteLinkSync('del0'), { name: 'NetlinkError', code: 'ENODEV', operation: 'delete link', link: 'del0' });
  await t.rejects(s.h.deleteLink(s.idx[0]), { code: 'ENODEV', link: `ifindex ${s.idx[0]}` });
  t.same(names(s.ns), ['lo', 'lower0', 'peer0'], 'nothing changed');
});
