// Namespace handles (root only): create/remove named namespaces (checked with `ip netns list`), open by path
// and pid, the current namespace, close() releasing every fd, and no Node thread ever changing namespace.
import * as fs from 'node:fs';
import t from 'tap';
import { NetlinkError, Netns, NETNS_RUN_DIR } from '../../lib/netlink';
import { ip, ipLinks, openFdCount, removeNetns, rootOnly, uniqueName } from '../support/kernel';
import { names, scratch, settle, sleeperIn } from './fixtures';

const listed = (name: string): boolean =>
  ip('netns', 'list')
    .split('\n')
    .some((line) => line.split(' ')[0] === name);

/** The network namespace of every thread of this process. */
const threadNamespaces = (): string[] =>
  fs.readdirSync('/proc/self/task').map((tid) => {
    try {
      return fs.readlinkSync(`/proc/self/task/${tid}/ns/net`);
    } catch {
      return 'exited';
    }
  });

t.test('create and remove a named namespace, as ip netns add/del', { skip: rootOnly }, (t) => {
  const name = uniqueName('mvtns');
  t.teardown(() => removeNetns(name));
  const fds = openFdCount();
  const h = Netns.create(name);
  t.ok(listed(name), 'ip netns list shows it');
  t.equal(h.path, `${NETNS_RUN_DIR}/${name}`);
  t.same(
    h.listLinksSync().map((l) => l.name),
    ['lo'],
    'a new namespace has only lo',
  );
  t.same(names(name), ['lo'], 'ip sees the same namespace');
  t.throws(
    () => Netns.create(name),
    { name: 'NetlinkError', code: 'EEXIST', operation: 'create network namespace' },
    'no second one of that name',
  );
  h.close();
  t.equal(openFdCount(), fds, 'close released the fd and socket');
  Netns.remove(name);
  t.notOk(listed(name), 'ip netns list no longer shows it');
  t.notOk(fs.existsSync(`${NETNS_RUN_DIR}/${name}`), 'file gone');
  t.throws(() => Netns.remove(name), { code: 'ENOENT', operation: 'remove network namespace' });
  for (const bad of ['', '.', '..', 'a/b', 7]) {
    t.throws(() => Netns.create(bad as string), TypeError, `create ${JSON.stringify(bad)}`);
    t.throws(() => Netns.remove(bad as string), TypeError, `remove ${JSON.stringify(bad)}`);
  }
  t.end();
});

t.test('a namespace made by ip netns add is usable, and one made here by ip', { skip: rootOnly }, (t) => {
  const name = uniqueName('mvtns');
  t.teardown(() => removeNetns(name));
  ip('netns', 'add', name);
  const h = Netns.open(`/var/run/netns/${name}`);
  t.same(
    h.listLinksSync().map((l) => l.name),
    ['lo'],
  );
  h.close();
  Netns.remove(name);
  t.notOk(listed(name), 'removed what ip made');
  t.end();
});

t.test('current namespace, open by path, by pid', { skip: rootOnly }, async (t) => {
  const s = scratch(t);
  const cur = Netns.current();
  t.teardown(() => cur.close());
  t.equal(cur.path, '/proc/self/ns/net');
  const hostLinks = ipLinks()
    .map((l) => l.ifname)
    .sort();
  t.same(
    cur
      .listLinksSync()
      .map((l) => l.name)
      .sort(),
    hostLinks,
    'current = the namespace ip sees without -n (read only)',
  );
  const self = Netns.fromPid(process.pid);
  t.teardown(() => self.close());
  t.same((await self.listLinks()).map((l) => l.name).sort(), hostLinks, 'fromPid(own pid) is the current namespace');

  const pid = await sleeperIn(t, s.ns);
  const viaPid = Netns.fromPid(pid);
  t.teardown(() => viaPid.close());
  t.equal(viaPid.path, `/proc/${pid}/ns/net`);
  t.same(
    viaPid
      .listLinksSync()
      .map((l) => l.name)
      .sort(),
    names(s.ns),
    'fromPid(sleeper) sees the scratch namespace',
  );
  t.ok(Number.isInteger(viaPid.fd) && viaPid.fd > 2, 'fd exposed');
});

t.test('close releases every fd; pending and later calls fail cleanly', { skip: rootOnly }, async (t) => {
  const s = scratch(t);
  await settle();
  const fds = openFdCount();
  const h = Netns.open(`/var/run/netns/${s.ns}`);
  t.equal(openFdCount(), fds + 1, 'the handle holds the namespace fd');
  h.listLinksSync();
  await h.listLinks();
  t.equal(openFdCount(), fds + 3, 'plus a sync and an async socket, made on first use');
  const inFlight = h.listLinks();
  // A few microtasks and no loop turn: the request is sent and its reply not yet read by the poller.
  for (let i = 0; i < 10; i++) await Promise.resolve();
  const queued = h.getLink('lo');
  h.close();
  await t.rejects(
    inFlight,
    { name: 'NetlinkError', code: 'ECANCELED', message: /socket closed before the reply/ },
    'the request in flight is cancelled by the addon',
  );
  await t.rejects(
    queued,
    { name: 'NetlinkError', code: 'ECANCELED', message: /closed before the request was sent/ },
    'the queued request is cancelled by the handle',
  );
  await settle(); // the async socket's fd closes in its uv_close callback
  t.equal(openFdCount(), fds, 'every fd released');
  t.doesNotThrow(() => h.close(), 'close is idempotent');
  t.throws(() => h.listLinksSync(), /closed/);
  await t.rejects(h.listLinks(), /closed/);
  t.throws(() => h.fd, /closed/);
  t.throws(() => h.watchLinks(), /closed/);

  // 200 handles opened, used and closed: nothing accumulates.
  for (let i = 0; i < 200; i++) {
    const x = Netns.open(`/var/run/netns/${s.ns}`);
    x.getLinkSync('lo');
    await x.getLink('lo');
    x.close();
  }
  await settle();
  t.equal(openFdCount(), fds, 'no fd accumulates over 200 handles');
});

t.test('no Node thread ever changes namespace', { skip: rootOnly }, async (t) => {
  const s = scratch(t);
  const own = fs.readlinkSync('/proc/self/ns/net');
  s.h.createMacvtapSync({ name: 'thr0', lower: s.lower, index: s.idx[0] });
  // Socket creation, namespace creation and sysfs reads in other namespaces all use private threads/children.
  const h2 = Netns.open(`/var/run/netns/${s.ns}`);
  await Promise.all([h2.listLinks(), h2.tapDevice('thr0'), s.h.tapDevice(s.idx[0])]);
  h2.close();
  const name = uniqueName('mvtns');
  t.teardown(() => removeNetns(name));
  Netns.create(name).close();
  Netns.remove(name);
  const threads = threadNamespaces().filter((ns) => ns !== 'exited');
  t.ok(threads.length > 1, 'several threads checked');
  t.same([...new Set(threads)], [own], 'every thread is in the namespace the process started in');
  t.equal(fs.readlinkSync('/proc/self/ns/net'), own);
});

t.test('errors are NetlinkError instances with typed fields', { skip: rootOnly }, (t) => {
  const err = (() => {
    try {
      Netns.open('/etc/hostname');
    } catch (e) {
      return e;
    }
  })() as NetlinkError;
  t.ok(err instanceof NetlinkError);
  t.ok(err instanceof Error);
  t.equal(err.name, 'NetlinkError');
  t.equal(err.errno, 22);
  t.equal(err.code, 'EINVAL');
  t.equal(err.extack, undefined, 'no kernel text for a local check');
  t.end();
});
