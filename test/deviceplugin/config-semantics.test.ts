/**
 * The daemon reads DP_MACVTAP_CONF with kubevirt's meaning: what kubevirt accepts serves, with a warning where
 * the meaning is surprising; a broken entry is skipped and logged with its index, key and value while the
 * other entries serve. The daemon stays up in every case here.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import t from 'tap';
import { hostLinkName } from '../../lib/naming';
import { claimIfindexes, ip, makeLowerNetns, rootOnly } from '../support/kernel';
import { LogLine, PREFIX, requireLink, startDaemon, tempDir } from './helpers';

const res = (name: string): string => `${PREFIX}/${name}`;
const healthy = (n: number) => (l: { health: string }[]) => l.length === n && l.every((d) => d.health === 'Healthy');

function problemLogs(logs: LogLine[]): { level: string; entry: unknown; key: unknown; name: unknown }[] {
  return logs
    .filter((l) => l.msg === 'configuration entry skipped' || l.msg === 'configuration warning')
    .map((l) => ({ level: l.level, entry: l.entry, key: l.key, name: l.name }));
}

t.test('kubevirt configurations serve; a broken entry is skipped, the others serve', { skip: rootOnly }, async (t) => {
  const { ns } = makeLowerNetns(t);
  const idx = claimIfindexes(t, 16);
  const env = JSON.stringify([
    { name: 'a', lowerDevice: 'lower0', capacity: 0, vlan: 7 },
    { name: 'b', lowerDevice: 'lower0', mode: 'fast' },
    { name: 'c', capacity: 2 },
    { name: 'd', lowerDevice: 'lower0', mode: 'Bridge', capacity: 2 },
    { name: 'e', lowerDevice: 'lower0', capacity: 9 },
    { name: 'f', lowerDevice: 'lower0', capacity: 2.5 },
    { name: 'e', lowerDevice: 'peer0', capacity: 3 },
  ]);
  const { daemon, kubelet } = await startDaemon(t, { ns, env, args: ['--ifindex-range', `${idx[0]}-${idx[15]}`] });
  await kubelet.waitForDevices(res('a'), healthy(100));
  t.pass('capacity 0 offers the default 100 devices');
  await kubelet.waitForDevices(res('e'), (l) => l.length === 3);
  t.pass('duplicate name: the last entry (3 devices on peer0) wins');
  await kubelet.waitForDevices(res('d'), healthy(2));
  await kubelet.waitForDevices(res('c'), (l) => l.length === 0);
  t.pass('no lowerDevice: registered with no devices');
  t.same(
    kubelet.registrations.map((r) => r.resourceName).sort(),
    ['a', 'c', 'd', 'e'].map(res),
    'b (bad mode) and f (capacity 2.5) are skipped, nothing else',
  );

  t.same(problemLogs(daemon.logs), [
    { level: 'warn', entry: 0, key: 'vlan', name: 'a' },
    { level: 'warn', entry: 0, key: 'capacity', name: 'a' },
    { level: 'error', entry: 1, key: 'mode', name: 'b' },
    { level: 'warn', entry: 2, key: 'lowerDevice', name: 'c' },
    { level: 'warn', entry: 3, key: 'mode', name: 'd' },
    { level: 'error', entry: 5, key: 'capacity', name: 'f' },
    { level: 'warn', entry: 4, key: 'name', name: 'e' },
  ]);
  const bad = daemon.logs.find((l) => l.msg === 'configuration entry skipped' && l.entry === 1);
  t.match(bad, { source: 'DP_MACVTAP_CONF', value: '"fast"', problem: /entry 1 \(name "b"\), key "mode" = "fast": unknown mode/ });

  const d = await kubelet.allocate(res('d'), [['dMvp1']]);
  const link = requireLink(ns, hostLinkName('dMvp1'));
  t.equal(link.linkinfo?.info_data?.mode, 'bridge', '"Bridge" made a bridge-mode macvtap');
  t.equal(d.containerResponses[0].devices[0].hostPath, `/dev/tap${link.ifindex}`);
  await t.rejects(kubelet.allocate(res('c'), [['cMvp0']]), { code: 9, details: /has no lowerDevice in its configuration/ });
  t.equal(daemon.child.exitCode, null, 'still running');
});

t.test('a lower device that appears later: unhealthy until it exists and is up', { skip: rootOnly }, async (t) => {
  const { ns } = makeLowerNetns(t);
  const idx = claimIfindexes(t, 16);
  const env = JSON.stringify([{ name: 'late', lowerDevice: 'later0', capacity: 2 }]);
  const { kubelet } = await startDaemon(t, { ns, env, args: ['--ifindex-range', `${idx[0]}-${idx[15]}`] });
  await kubelet.waitForDevices(res('late'), (l) => l.length === 2 && l.every((x) => x.health === 'Unhealthy'));
  await t.rejects(kubelet.allocate(res('late'), [['lateMvp0']]), { code: 9, details: /lower device later0 .* does not exist/ });
  ip('-n', ns, 'link', 'add', 'later0', 'type', 'veth', 'peer', 'name', 'later1');
  ip('-n', ns, 'link', 'set', 'later0', 'up');
  await kubelet.waitForDevices(res('late'), healthy(2), 3000);
  await kubelet.allocate(res('late'), [['lateMvp0']]);
  t.equal(requireLink(ns, hostLinkName('lateMvp0')).link, 'later0', 'Allocate works once it exists');
});

t.test(
  'a 1 MB configuration file with a byte order mark: the good entry serves, the huge one is a short line',
  { skip: rootOnly },
  async (t) => {
    const { ns } = makeLowerNetns(t);
    const file = path.join(tempDir(t), 'config.json');
    const huge = 'x'.repeat(1024 * 1024);
    fs.writeFileSync(file, `\ufeff[{"name":"${huge}","lowerDevice":"lower0"},\n{"name":"ok","lowerDevice":"lower0","capacity":1}]`);
    const { daemon, kubelet } = await startDaemon(t, { ns, args: ['--config', file] });
    await kubelet.waitForDevices(res('ok'), healthy(1));
    const skipped = await daemon.waitForLog((l) => l.msg === 'configuration entry skipped');
    t.match(skipped, { entry: 0, key: 'name' });
    t.ok(JSON.stringify(skipped).length < 1000, `the log line is short (${JSON.stringify(skipped).length} bytes)`);
    t.ok(
      daemon.logs.some((l) => l.msg === 'configuration warning' && /byte order mark/.test(String(l.problem))),
      'the BOM is reported',
    );
    t.same(
      kubelet.registrations.map((r) => r.resourceName),
      [res('ok')],
    );
  },
);

t.test('Allocate of 1,000 unknown IDs: INVALID_ARGUMENT with a capped message', { skip: rootOnly }, async (t) => {
  const { ns } = makeLowerNetns(t);
  const env = JSON.stringify([{ name: 'dataplane', lowerDevice: 'lower0', capacity: 4 }]);
  const { kubelet } = await startDaemon(t, { ns, env });
  await kubelet.waitForDevices(res('dataplane'), healthy(4));
  const ids = Array.from({ length: 1000 }, (_, i) => `otherMvp${i}`);
  const err = await kubelet.allocate(res('dataplane'), [['dataplaneMvp0', ...ids]]).then(
    () => undefined,
    (e: unknown) => e as { code: number; details: string },
  );
  t.equal(err?.code, 3, 'INVALID_ARGUMENT, not RESOURCE_EXHAUSTED');
  t.match(
    err?.details,
    /^1000 unknown device IDs for macvtap.network.kubevirt.io\/dataplane, first 5: "otherMvp0", "otherMvp1", "otherMvp2", "otherMvp3", "otherMvp4"$/,
  );
  t.ok((err?.details.length ?? Infinity) < 300, 'short');
  await t.rejects(kubelet.allocate(res('dataplane'), [['dataplaneMvp4']]), { code: 3, details: /^unknown device ID "dataplaneMvp4"/ });
  await t.rejects(kubelet.allocate(res('dataplane'), [['dataplaneMvp01']]), { code: 3, details: /unknown device ID "dataplaneMvp01"/ });
  t.same(ip('-n', ns, '-br', 'link').match(/mvt/g), null, 'nothing made');
});
