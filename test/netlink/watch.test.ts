// Link events (root only): EventEmitter and async iterator, overrun (ENOBUFS) reported instead of silently
// lost, and close() releasing the socket.
import { once } from 'node:events';
import t from 'tap';
import { LinkEvent, NetlinkError } from '../../lib/netlink';
import { openFdCount, rootOnly } from '../support/kernel';
import { scratch, settle } from './fixtures';

/** Resolves with the first event for which `match` holds. */
function nextEvent(
  w: { on(e: 'link', f: (ev: LinkEvent) => void): unknown; off(e: 'link', f: (ev: LinkEvent) => void): unknown },
  match: (e: LinkEvent) => boolean,
): Promise<LinkEvent> {
  return new Promise((resolve) => {
    const on = (e: LinkEvent): void => {
      if (!match(e)) return;
      w.off('link', on);
      resolve(e);
    };
    w.on('link', on);
  });
}

t.test('EventEmitter: new, change and del events', { skip: rootOnly }, async (t) => {
  const s = scratch(t);
  const w = s.h.watchLinks();
  t.teardown(() => w.close());
  t.equal(w.netnsPath, s.h.path);
  t.equal(w.closed, false);

  const created = nextEvent(w, (e) => e.type === 'new' && e.link.name === 'ev0');
  await s.h.createMacvtap({ name: 'ev0', lower: s.lower, index: s.idx[0] });
  const c = await created;
  t.equal(c.link.index, s.idx[0], 'new event carries the link');
  t.equal(c.link.kind, 'macvtap');

  const changed = nextEvent(w, (e) => e.type === 'new' && e.link.name === 'ev0' && e.link.mtu === 1400);
  s.h.setLinkSync('ev0', { mtu: 1400 });
  t.equal((await changed).link.index, s.idx[0], 'a change arrives as a new event with the new state');

  const deleted = nextEvent(w, (e) => e.type === 'del' && e.link.index === s.idx[0]);
  s.h.deleteLinkSync('ev0');
  t.equal((await deleted).link.name, 'ev0', 'del event');
});

t.test('async iterator, and close() ending it', { skip: rootOnly }, async (t) => {
  const s = scratch(t);
  const w = s.h.watchLinks();
  t.teardown(() => w.close());
  const seen: string[] = [];
  const consumer = (async () => {
    for await (const e of w) {
      if (e.link.name.startsWith('it')) seen.push(`${e.type} ${e.link.name}`);
      if (e.type === 'del' && e.link.name === 'it1') break;
    }
  })();
  await settle();
  s.h.createMacvtapSync({ name: 'it0', lower: s.lower, index: s.idx[0] });
  s.h.createMacvtapSync({ name: 'it1', lower: s.lower, index: s.idx[1] });
  s.h.deleteLinkSync('it1');
  await consumer;
  t.same([...new Set(seen)], ['new it0', 'new it1', 'del it1'], 'events in order');
  t.equal(w.listenerCount('link'), 0, 'break removed the iterator listeners');

  const second = (async () => {
    const got: LinkEvent[] = [];
    for await (const e of w) got.push(e);
    return got;
  })();
  await settle();
  const closed = once(w, 'close');
  w.close();
  await closed;
  t.same(await second, [], 'close() ends the iteration');
  t.equal(w.closed, true);
  t.doesNotThrow(() => w.close(), 'close is idempotent');
});

t.test('overrun: a blocked reader is told to resync (emitter and iterator)', { skip: rootOnly }, async (t) => {
  const s = scratch(t);
  s.h.createMacvtapSync({ name: 'burst', lower: s.lower, index: s.idx[0] });
  // Each MTU change is one RTM_NEWLINK event; the loop never yields, so the watcher cannot read and its
  // receive buffer overflows (the kernel then reports ENOBUFS on the socket).
  const burst = (): void => {
    for (let i = 0; i < 12000; i++) s.h.setLinkSync('burst', { mtu: 1300 + (i % 2) });
  };

  const w = s.h.watchLinks();
  t.teardown(() => w.close());
  let events = 0;
  w.on('link', () => events++);
  const overrun = once(w, 'overrun');
  burst();
  const [err] = (await overrun) as [NetlinkError];
  t.ok(err instanceof NetlinkError, 'overrun carries a NetlinkError');
  t.equal(err.code, 'ENOBUFS');
  t.match(err.message, /resync/);
  // The watcher keeps working after an overrun: the queued events still arrive, and once they are read, so do
  // new ones.
  for (let last = -1; last !== events;) {
    last = events;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  const after = nextEvent(w, (e) => e.link.name === 'burst' && e.link.mtu === 1450);
  s.h.setLinkSync('burst', { mtu: 1450 });
  t.equal((await after).link.index, s.idx[0], 'events flow again after the overrun');
  t.ok(events > 1 && events < 12001, `some events were delivered, the rest lost (${events} of 12001)`);
  w.close();

  const w2 = s.h.watchLinks();
  t.teardown(() => w2.close());
  const iterate = (async () => {
    for await (const e of w2) void e;
  })();
  burst();
  await t.rejects(iterate, { code: 'ENOBUFS' }, 'the iterator throws so the consumer cannot miss it');
});

t.test('closed watchers release their sockets', { skip: rootOnly }, async (t) => {
  const s = scratch(t);
  await settle();
  const fds = openFdCount();
  const watchers = Array.from({ length: 50 }, () => s.h.watchLinks());
  t.equal(openFdCount(), fds + 50, 'one socket per watcher');
  for (const w of watchers) w.close();
  await settle();
  t.equal(openFdCount(), fds, 'all released');
});
