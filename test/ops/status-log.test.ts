/**
 * The facts `kubectl logs` shows (root only): one `resource status` line per resource at start and on each
 * change of capacity, allocated devices, health or registration.
 */
import t from 'tap';
import { startDaemon, type LogLine } from '../deviceplugin/helpers';
import { claimIfindexes, ip, makeLowerNetns, rootOnly } from '../support/kernel';
import { conf, RES } from './helpers';

t.test('one status line per resource at start and on change', { skip: rootOnly }, async (t) => {
  const { ns } = makeLowerNetns(t);
  const idx = claimIfindexes(t, 4);
  const { daemon, kubelet } = await startDaemon(t, { ns, env: conf(), args: ['--ifindex-range', `${idx[0]}-${idx[3]}`] });
  const status = (pred: (l: LogLine) => boolean): Promise<LogLine> =>
    daemon.waitForLog((l) => l.msg === 'resource status' && pred(l), 15000);
  const first = await daemon.waitForLog((l) => l.msg === 'resource status' && l.registered === true, 60000);
  t.match(
    first,
    { level: 'info', resource: RES, capacity: 4, allocated: 0, healthy: true, lowerDevice: 'lower0', lowerState: 'up' },
    'at start',
  );

  await kubelet.allocate(RES, [['dataplaneMvp0', 'dataplaneMvp1']]);
  t.match(await status((l) => l.allocated === 2), { capacity: 4, healthy: true }, 'after an Allocate');

  ip('-n', ns, 'link', 'set', 'lower0', 'down');
  t.match(await status((l) => l.healthy === false), { allocated: 2, lowerState: 'down' }, 'when the lower device goes down');

  const count = daemon.logs.filter((l) => l.msg === 'resource status').length;
  await new Promise((r) => setTimeout(r, 2500));
  t.equal(daemon.logs.filter((l) => l.msg === 'resource status').length, count, 'no line while nothing changes');
});
