// Errors (root only): the right NetlinkError (errno, code, operation, link, extack) or TypeError/RangeError,
// and nothing left behind — no link (per `ip -j -d link`), no fd.
import t from 'tap';
import { MacvtapOptions, NetlinkError, Netns } from '../../lib/netlink';
import { MessageBuilder } from '../../lib/netlink/message';
import { native } from '../../lib/netlink/native';
import { openFdCount, rootOnly } from '../support/kernel';
import { emptyNetns, ipLink, names, scratch } from './fixtures';

const NLM_F_REQUEST_ACK_CREATE_EXCL = 0x01 | 0x04 | 0x400 | 0x200;
const RTM_NEWLINK = 16;
const IFLA_IFNAME = 3;
const IFLA_LINKINFO = 18;
const IFLA_INFO_KIND = 1;

t.test('kernel refusals leave nothing behind', { skip: rootOnly }, async (t) => {
  const s = scratch(t);
  s.h.createMacvtapSync({ name: 'exists', lower: s.lower, index: s.idx[0] });
  s.h.listLinksSync();
  await s.h.listLinks();
  const before = { names: names(s.ns), fds: openFdCount(), lower: ipLink(s.ns, s.lower) };
  const cases: [string, MacvtapOptions, object][] = [
    [
      'existing name',
      { name: 'exists', lower: s.lower, index: s.idx[1] },
      { code: 'EEXIST', errno: 17, operation: 'create macvtap', link: 'exists' },
    ],
    [
      'existing ifindex',
      { name: 'fresh', lower: s.lower, index: s.idx[0] },
      { code: 'EEXIST', operation: 'create macvtap', link: 'fresh' },
    ],
    [
      'unknown lower device',
      { name: 'fresh', lower: 'nolower', index: s.idx[1] },
      { code: 'ENODEV', errno: 19, operation: 'find lower device', link: 'nolower' },
    ],
    ['unknown lower ifindex', { name: 'fresh', lower: 4242, index: s.idx[1] }, { code: 'ENODEV', link: 'ifindex 4242' }],
    [
      'MTU above the lower device',
      { name: 'fresh', lower: s.lower, mtu: 9000, index: s.idx[1] },
      { code: 'EINVAL', errno: 22, operation: 'create macvtap' },
    ],
    ['second macvtap next to passthru', { name: 'fresh', lower: s.lower, mode: 'passthru', index: s.idx[1] }, { code: 'EINVAL' }],
  ];
  for (const [what, opts, want] of cases) {
    const sync = (() => {
      try {
        s.h.createMacvtapSync(opts);
      } catch (err) {
        return err;
      }
    })();
    t.ok(sync instanceof NetlinkError, `${what}: sync throws a NetlinkError`);
    t.match(sync, { name: 'NetlinkError', ...want }, `${what}: sync`);
    await t.rejects(s.h.createMacvtap(opts), { name: 'NetlinkError', ...want }, `${what}: async`);
    t.same(names(s.ns), before.names, `${what}: no link left`);
    t.equal(openFdCount(), before.fds, `${what}: no fd left`);
  }
  t.same(ipLink(s.ns, s.lower), before.lower, 'lower device untouched');
  t.equal((s.h.getLinkSync('exists') as { index: number }).index, s.idx[0], 'existing link untouched');
});

t.test('invalid arguments fail in TypeScript before any syscall', { skip: rootOnly }, async (t) => {
  const s = scratch(t);
  // A fresh handle has no socket yet: any syscall would open one and show in the fd count.
  const fresh = Netns.open(`/var/run/netns/${s.ns}`);
  t.teardown(() => fresh.close());
  const before = { names: names(s.ns), fds: openFdCount() };
  const base = { name: 'bad0', lower: s.lower };
  const bad: [string, unknown, new (...a: never[]) => Error][] = [
    ['invalid MAC', { ...base, mac: 'zz:zz:zz:zz:zz:zz' }, TypeError],
    ['short MAC', { ...base, mac: '02:00:00:00:00' }, TypeError],
    ['MAC not a string', { ...base, mac: 42 }, TypeError],
    ['multicast MAC', { ...base, mac: '03:00:00:00:00:01' }, RangeError],
    ['all-zero MAC', { ...base, mac: '00:00:00:00:00:00' }, RangeError],
    ['bad mode', { ...base, mode: 'bridged' }, RangeError],
    ['numeric mode', { ...base, mode: 4 }, RangeError],
    ['source MACs outside source mode', { ...base, sourceMacs: ['02:00:00:00:00:01'] }, RangeError],
    ['source MACs not an array', { ...base, mode: 'source', sourceMacs: '02:00:00:00:00:01' }, TypeError],
    ['bad source MAC', { ...base, mode: 'source', sourceMacs: ['nope'] }, TypeError],
    ['nopromisc outside passthru', { ...base, nopromisc: true }, RangeError],
    ['nopromisc not boolean', { ...base, mode: 'passthru', nopromisc: 1 }, TypeError],
    ['name too long', { ...base, name: 'a-very-long-name-indeed' }, RangeError],
    ['name with slash', { ...base, name: 'a/b' }, RangeError],
    ['name missing', { lower: s.lower }, TypeError],
    ['lower missing', { name: 'bad0' }, TypeError],
    ['MTU too small', { ...base, mtu: 20 }, RangeError],
    ['MTU not integer', { ...base, mtu: 1500.5 }, TypeError],
    ['ifindex negative', { ...base, index: -3 }, RangeError],
    ['txqueuelen negative', { ...base, txqueuelen: -1 }, RangeError],
    ['up not boolean', { ...base, up: 'yes' }, TypeError],
    ['not an object', null, TypeError],
  ];
  for (const [what, opts, cls] of bad) {
    t.throws(() => fresh.createMacvtapSync(opts as MacvtapOptions), cls, `${what}: sync ${cls.name}`);
    await t.rejects(fresh.createMacvtap(opts as MacvtapOptions), cls, `${what}: async ${cls.name}`);
  }
  t.equal(openFdCount(), before.fds, 'no socket was opened: nothing reached the kernel');
  t.same(names(s.ns), before.names, 'no link created');
});

t.test('extended ACK text from the kernel reaches err.extack', { skip: rootOnly }, async (t) => {
  const s = scratch(t);
  // The kernel explains an unknown link kind (EOPNOTSUPP "Unknown device type"); no public call sends one.
  const sock = new (native().NetlinkSocket)(s.h.fd, 0);
  t.teardown(() => sock.close());
  const request = new MessageBuilder(RTM_NEWLINK, NLM_F_REQUEST_ACK_CREATE_EXCL)
    .ifinfo(0)
    .string(IFLA_IFNAME, 'bogus0')
    .begin(IFLA_LINKINFO)
    .string(IFLA_INFO_KIND, 'nosuchkind')
    .end()
    .finish();
  const err = (() => {
    try {
      sock.requestSync(request, 'create link', 'bogus0', 5000);
    } catch (e) {
      return e as NetlinkError;
    }
  })();
  t.ok(err instanceof NetlinkError, 'a NetlinkError');
  t.equal(err?.code, 'EOPNOTSUPP');
  t.equal(typeof err?.extack, 'string');
  t.ok(err?.extack && err.extack.length > 0, 'extack is non-empty');
  t.match(err?.extack, /Unknown device type/);
  t.match(err?.message, /\(kernel: Unknown device type\)/, 'message carries the kernel text');
  t.notOk(ipLink(s.ns, 'bogus0'), 'nothing created');

  // Through the public API: a move to an ifindex taken in the target.
  s.h.createMacvtapSync({ name: 'ack0', lower: s.lower, index: s.idx[0] });
  const dst = emptyNetns(t);
  await t.rejects(s.h.moveLink('ack0', dst.h, { index: 1 }), { code: 'EBUSY', extack: /ifindex 1 is not available/ });
  t.same(names(dst.ns), ['lo'], 'nothing arrived');
  t.equal(ipLink(s.ns, 'ack0')?.ifindex, s.idx[0], 'link not moved');

  sock.close();
  t.throws(() => sock.requestSync(request, 'create link', 'bogus0', 5000), { code: 'EBADF', message: /closed/ }, 'closed socket');
  t.doesNotThrow(() => sock.close(), 'close is idempotent');
});
