// Creating macvtaps (root only): every mode, every option, sync and async, checked with `ip -j -d link`.
import t, { Test } from 'tap';
import { Link, MACVTAP_MODES, MacvtapOptions, Netns } from '../../lib/netlink';
import { rootOnly } from '../support/kernel';
import { hasFlag, ip, ipLink, scratch, oracle } from './fixtures';

const twins = {
  sync: (h: Netns, o: MacvtapOptions): Promise<Link> => Promise.resolve(h.createMacvtapSync(o)),
  async: (h: Netns, o: MacvtapOptions): Promise<Link> => h.createMacvtap(o),
};

/** The returned record agrees with the oracle on every field both report. */
function matchesOracle(t: Test, ns: string, link: Link): void {
  const o = oracle(ns, link.name);
  t.ok(o, `${link.name} exists per ip`);
  t.equal(link.index, o.ifindex, 'index');
  t.equal(link.kind, 'macvtap', 'kind');
  t.equal(o.linkinfo?.info_kind, 'macvtap', 'oracle kind');
  t.equal(link.mac, o.address, 'mac');
  t.equal(link.mtu, o.mtu, 'mtu');
  t.equal(link.txqueuelen, o.txqlen, 'txqueuelen');
  t.equal(link.flags.up, o.flags.includes('UP'), 'up flag');
  t.equal(link.macvtap?.mode, o.linkinfo?.info_data?.mode, 'mode');
}

t.test('every mode, sync and async, with an explicit ifindex', { skip: rootOnly }, async (t) => {
  const s = scratch(t, { count: 10 });
  let n = 0;
  for (const [twin, create] of Object.entries(twins)) {
    for (const mode of MACVTAP_MODES) {
      const index = s.idx[n++];
      const name = `mv${mode.slice(0, 4)}${twin === 'sync' ? 's' : 'a'}`;
      const sourceMacs = mode === 'source' ? ['02:00:00:00:aa:01', '02:00:00:00:aa:02'] : undefined;
      const link = await create(s.h, { name, lower: s.lower, mode, index, sourceMacs });
      t.equal(link.name, name, `${twin} ${mode}: name`);
      t.equal(link.index, index, `${twin} ${mode}: explicit ifindex honoured`);
      t.equal(link.parentIndex, s.lowerIndex, `${twin} ${mode}: parent is the lower device`);
      t.equal(oracle(s.ns, name).link, s.lower, 'oracle parent');
      matchesOracle(t, s.ns, link);
      if (mode === 'source') {
        t.same([...link.macvtap!.sourceMacs].sort(), sourceMacs, 'source MACs returned');
        t.same([...(oracle(s.ns, name).linkinfo?.info_data?.macaddr_data ?? [])].sort(), sourceMacs, 'source MACs per ip');
      } else {
        t.same(link.macvtap!.sourceMacs, [], 'no source MACs');
      }
      // passthru cannot share its lower device with any other macvtap: leave the lower device empty.
      s.h.deleteLinkSync(index);
      t.notOk(ipLink(s.ns, name), 'deleted');
    }
  }
});

t.test('options: mac, mtu, lower by ifindex, up', { skip: rootOnly }, async (t) => {
  const s = scratch(t);
  for (const [twin, create] of Object.entries(twins)) {
    const i = twin === 'sync' ? 0 : 1;
    const mac = `02:11:22:33:44:5${i}`;
    const link = await create(s.h, { name: `opt${i}`, lower: s.lowerIndex, mac, mtu: 1400, index: s.idx[i], up: true });
    const o = oracle(s.ns, `opt${i}`);
    t.equal(o.address, mac, `${twin}: MAC applied`);
    t.equal(o.mtu, 1400, `${twin}: MTU applied`);
    t.ok(hasFlag(s.ns, `opt${i}`, 'UP'), `${twin}: up`);
    t.equal(o.link, s.lower, `${twin}: lower given by ifindex`);
    matchesOracle(t, s.ns, link);
  }
  const down = s.h.createMacvtapSync({ name: 'optdown', lower: s.lower, index: s.idx[2] });
  t.equal(down.flags.up, false, 'down by default');
  t.notOk(hasFlag(s.ns, 'optdown', 'UP'), 'oracle: down by default');
  t.equal(down.mtu, 1500, 'MTU defaults to the lower device');
});

t.test('txqueuelen: copied from the lower device by default, or explicit', { skip: rootOnly }, async (t) => {
  const s = scratch(t);
  ip('-n', s.ns, 'link', 'set', s.lower, 'txqueuelen', '777');
  const copied = s.h.createMacvtapSync({ name: 'txq0', lower: s.lower, index: s.idx[0] });
  t.equal(oracle(s.ns, 'txq0').txqlen, 777, 'sync: lower device txqueuelen copied');
  t.equal(copied.txqueuelen, 777);
  await s.h.createMacvtap({ name: 'txq1', lower: s.lower, index: s.idx[1] });
  t.equal(oracle(s.ns, 'txq1').txqlen, 777, 'async: lower device txqueuelen copied');
  const explicit = await s.h.createMacvtap({ name: 'txq2', lower: s.lower, index: s.idx[2], txqueuelen: 55 });
  t.equal(oracle(s.ns, 'txq2').txqlen, 55, 'explicit txqueuelen');
  t.equal(explicit.txqueuelen, 55);
});

t.test('passthru puts the lower device in promiscuous mode unless nopromisc', { skip: rootOnly }, async (t) => {
  const s = scratch(t);
  const promisc = () => oracle(s.ns, s.lower).promiscuity;
  t.equal(promisc(), 0, 'lower starts non-promiscuous');
  const pt = s.h.createMacvtapSync({ name: 'pt0', lower: s.lower, mode: 'passthru', index: s.idx[0], up: true });
  t.equal(pt.macvtap?.nopromisc, false);
  t.equal(promisc(), 1, 'passthru made the lower device promiscuous');
  s.h.deleteLinkSync('pt0');
  t.equal(promisc(), 0, 'and releases it on delete');

  const np = await s.h.createMacvtap({ name: 'pt1', lower: s.lower, mode: 'passthru', nopromisc: true, index: s.idx[1], up: true });
  t.equal(np.macvtap?.nopromisc, true, 'record says nopromisc');
  t.equal(oracle(s.ns, 'pt1').linkinfo?.info_data?.nopromisc, true, 'oracle says nopromisc');
  t.equal(promisc(), 0, 'nopromisc left the lower device alone');
  t.equal(s.h.getLinkSync('pt1')?.macvtap?.nopromisc, true, 'read back');
});

t.test('source mode with and without a MAC list', { skip: rootOnly }, async (t) => {
  const s = scratch(t);
  const macs = ['02:00:00:00:bb:01', '02:00:00:00:bb:02', '02:00:00:00:bb:03'];
  await s.h.createMacvtap({ name: 'src0', lower: s.lower, mode: 'source', sourceMacs: macs, index: s.idx[0] });
  const o = oracle(s.ns, 'src0');
  t.equal(o.linkinfo?.info_data?.macaddr_count, 3, 'three source MACs per ip');
  t.same([...(o.linkinfo?.info_data?.macaddr_data ?? [])].sort(), macs);
  t.same([...(s.h.getLinkSync('src0')?.macvtap?.sourceMacs ?? [])].sort(), macs, 'read back');
  const empty = s.h.createMacvtapSync({ name: 'src1', lower: s.lower, mode: 'source', sourceMacs: [], index: s.idx[1] });
  t.same(empty.macvtap?.sourceMacs, [], 'empty list');
  t.equal(oracle(s.ns, 'src1').linkinfo?.info_data?.mode, 'source');
});
