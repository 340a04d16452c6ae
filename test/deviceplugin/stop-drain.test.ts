/**
 * SIGTERM deletes the retired links (`mvr<ifindex>`) still queued before the daemon exits: a node switched back
 * to kubevirt's device plugin, which never deletes that name, would otherwise keep them for good. Retired links
 * left by an earlier run are queued at start; the daemon is stopped right after it has started, while the
 * reaper still has most of them to delete.
 */
import t from 'tap';
import { claimIfindexes, ip, ipLinks, makeLowerNetns, rootOnly } from '../support/kernel';
import { PREFIX, startDaemon } from './helpers';

t.test('SIGTERM right after start: every queued retired link is deleted before exit', { skip: rootOnly }, async (t) => {
  const { ns } = makeLowerNetns(t);
  const indexes = [...claimIfindexes(t, 16), ...claimIfindexes(t, 16), ...claimIfindexes(t, 16)];
  const retired = indexes.slice(2);
  for (const i of retired)
    ip('-n', ns, 'link', 'add', 'link', 'lower0', 'name', `mvr${i}`, 'index', String(i), 'type', 'macvtap', 'mode', 'bridge');
  const env = JSON.stringify([{ name: 'dataplane', lowerDevice: 'lower0', capacity: 2 }]);
  const { daemon, kubelet } = await startDaemon(t, { ns, env, args: ['--ifindex-range', `${indexes[0]}-${indexes[1]}`] });
  await daemon.waitForLog((l) => l.msg === 'started', 30000);
  daemon.child.kill('SIGTERM');
  const exit = await daemon.exited;
  t.same(exit, { code: 0, signal: null }, 'exits 0');
  const left = ipLinks(ns)
    .map((l) => l.ifname)
    .filter((n) => n.startsWith('mvr'));
  t.same(left, [], `none of the ${retired.length} retired links is left`);
  t.ok(
    ipLinks(ns).some((l) => l.ifname === 'lower0'),
    'the lower device is untouched',
  );
  t.notOk(kubelet.devices(`${PREFIX}/dataplane`)?.length, 'the empty device list was sent on the way out (or none at all)');
});
