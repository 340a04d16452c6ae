/**
 * --config FILE is watched: resources are added, changed and removed live; a broken entry is skipped (its
 * resource keeps its running configuration), a broken file is reported and the running configuration kept. Also the way a mounted ConfigMap changes (a `..data` symlink swapped).
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import t from 'tap';
import { makeLowerNetns, rootOnly } from '../support/kernel';
import { waitForFault } from './faults-harness';
import { PREFIX, startDaemon, tempDir } from './helpers';

const A = `${PREFIX}/alpha`;
const B = `${PREFIX}/beta`;

/** Writes the file as a ConfigMap volume does: a new timestamped dir, then `..data` swapped by rename. */
function writeConfigMap(dir: string, text: string, n: number): void {
  const data = path.join(dir, `..2026_${n}`);
  fs.mkdirSync(data);
  fs.writeFileSync(path.join(data, 'config.json'), text);
  fs.symlinkSync(path.basename(data), path.join(dir, '..data_tmp'));
  fs.renameSync(path.join(dir, '..data_tmp'), path.join(dir, '..data'));
  if (!fs.existsSync(path.join(dir, 'config.json'))) fs.symlinkSync('..data/config.json', path.join(dir, 'config.json'));
}

t.test('config file: add, change, remove; a broken file keeps the running configuration', { skip: rootOnly }, async (t) => {
  const { ns } = makeLowerNetns(t);
  const confDir = tempDir(t);
  const file = path.join(confDir, 'conf.json');
  fs.writeFileSync(file, JSON.stringify([{ name: 'alpha', lowerDevice: 'lower0', capacity: 2 }]));
  const { daemon, kubelet, pluginDir } = await startDaemon(t, {
    ns,
    args: ['--config', file],
    env: '[{"name":"ignored","lowerDevice":"lower0"}]',
  });
  await kubelet.waitForDevices(A, (l) => l.length === 2);
  t.ok(
    daemon.logs.some((l) => l.level === 'warn' && /ignoring DP_MACVTAP_CONF/.test(l.msg)),
    'the file wins over DP_MACVTAP_CONF, with a warning',
  );
  t.notOk(kubelet.registrations.some((r) => r.resourceName === `${PREFIX}/ignored`));

  // Add a resource (editor-style in-place write).
  fs.writeFileSync(
    file,
    JSON.stringify([
      { name: 'alpha', lowerDevice: 'lower0', capacity: 2 },
      { name: 'beta', lowerDevice: 'peer0', capacity: 1 },
    ]),
  );
  await kubelet.waitForDevices(B, (l) => l.length === 1 && l[0].health === 'Healthy', 2000);
  t.pass('beta added and registered');

  // Change alpha's capacity (atomic replace, as most tools write).
  fs.writeFileSync(
    `${file}.tmp`,
    JSON.stringify([
      { name: 'alpha', lowerDevice: 'lower0', capacity: 5 },
      { name: 'beta', lowerDevice: 'peer0', capacity: 1 },
    ]),
  );
  fs.renameSync(`${file}.tmp`, file);
  await kubelet.waitForDevices(A, (l) => l.length === 5, 2000);
  t.pass('alpha now lists 5 devices, on the same stream');
  t.equal(kubelet.registrations.filter((r) => r.resourceName === A).length, 1, 'a change needs no new registration');

  // One broken entry: skipped with its entry and key named; alpha keeps its running configuration while beta,
  // which still parses, takes its new capacity.
  fs.writeFileSync(
    file,
    JSON.stringify([
      { name: 'alpha', lowerDevice: 'lower0', mode: 'fast' },
      { name: 'beta', lowerDevice: 'peer0', capacity: 2 },
    ]),
  );
  await kubelet.waitForDevices(B, (l) => l.length === 2, 2000);
  const skipped = await daemon.waitForLog((l) => l.msg === 'configuration entry skipped', 2000);
  t.match(skipped, { level: 'error', source: file, entry: 0, name: 'alpha', key: 'mode', value: '"fast"' });
  t.match(String(skipped.problem), /entry 0 \(name "alpha"\), key "mode" = "fast": unknown mode/);
  const kept = await daemon.waitForLog((l) => l.msg === 'entries skipped: keeping their running configuration', 2000);
  t.same(kept.resources, ['alpha']);
  t.equal(kubelet.devices(A)?.length, 5, 'alpha unchanged');

  // Not JSON at all: reported in one line, nothing changes.
  fs.writeFileSync(file, '[{"name":\n"alpha",');
  const report = await daemon.waitForLog((l) => l.msg === 'new configuration is invalid; keeping the running configuration', 2000);
  t.match(String(report.problem), /not JSON: .* at line 2, column 9/);
  t.notMatch(String(report.problem), /\n/, 'one line');
  t.equal(report.level, 'error');

  // Replaced by a FIFO nobody writes: reported at once, and the gRPC server keeps answering.
  execFileSync('mkfifo', [`${file}.fifo`]);
  fs.renameSync(`${file}.fifo`, file);
  const fifo = await daemon.waitForLog((l) => l.msg === 'configuration file is unreadable; keeping the running configuration', 2000);
  t.match(String(fifo.problem), /it is a FIFO, not a regular file/);
  t.same(await kubelet.getDevicePluginOptions(A), { preStartRequired: false, getPreferredAllocationAvailable: false }, 'gRPC answers');
  fs.rmSync(file);
  t.equal(kubelet.devices(A)?.length, 5, 'alpha unchanged');
  t.equal(kubelet.devices(B)?.length, 2, 'beta unchanged');
  t.ok(fs.existsSync(path.join(pluginDir, 'macvtap.network.kubevirt.io_beta')));

  // Remove beta, and point alpha at another lower device (missing: its devices turn unhealthy).
  fs.writeFileSync(file, JSON.stringify([{ name: 'alpha', lowerDevice: 'nosuch0', capacity: 5 }]));
  await kubelet.waitForDevices(B, (l) => l.length === 0, 2000);
  t.pass('beta withdrawn: empty list');
  await kubelet.waitForStreamEnd(B, 2000);
  await daemon.waitForLog((l) => l.msg === 'resource removed' && l.resource === B, 2000);
  t.notOk(fs.existsSync(path.join(pluginDir, 'macvtap.network.kubevirt.io_beta')), "beta's socket removed");
  await kubelet.waitForDevices(A, (l) => l.length === 5 && l.every((d) => d.health === 'Unhealthy'), 2000);
  t.pass('alpha follows its new lower device');
  t.equal(daemon.child.exitCode, null, 'still running');
});

t.test('a mounted ConfigMap update (..data symlink swap) is picked up', { skip: rootOnly }, async (t) => {
  const { ns } = makeLowerNetns(t);
  const confDir = tempDir(t);
  writeConfigMap(confDir, JSON.stringify([{ name: 'alpha', lowerDevice: 'lower0', capacity: 1 }]), 1);
  const { kubelet } = await startDaemon(t, { ns, args: ['--config', path.join(confDir, 'config.json')] });
  await kubelet.waitForDevices(A, (l) => l.length === 1);
  writeConfigMap(confDir, JSON.stringify([{ name: 'alpha', lowerDevice: 'lower0', capacity: 3 }]), 2);
  await kubelet.waitForDevices(A, (l) => l.length === 3, 2000);
  t.pass('new capacity applied');
  writeConfigMap(confDir, '[]', 3);
  await kubelet.waitForDevices(A, (l) => l.length === 0, 2000);
  t.pass('switching to [] discovery withdraws the explicit resource (no NIC in this namespace)');
});

t.test('a change written while the daemon starts is applied without another change', { skip: rootOnly }, async (t) => {
  const { ns } = makeLowerNetns(t);
  const confDir = tempDir(t);
  const file = path.join(confDir, 'conf.json');
  fs.writeFileSync(file, JSON.stringify([{ name: 'alpha', lowerDevice: 'lower0', capacity: 2 }]));
  // Paused after it read and validated the file, before it watches it: the write below makes no event it sees.
  const { daemon, kubelet } = await startDaemon(t, { ns, args: ['--config', file], fault: 'Start:config-read:pause' });
  await waitForFault(daemon, 1);
  fs.writeFileSync(
    file,
    JSON.stringify([
      { name: 'alpha', lowerDevice: 'lower0', capacity: 3 },
      { name: 'beta', lowerDevice: 'peer0', capacity: 1 },
    ]),
  );
  process.kill(daemon.pid, 'SIGCONT');
  await kubelet.waitForDevices(B, (l) => l.length === 1, 5000);
  t.pass('beta, added during start-up, registered');
  await kubelet.waitForDevices(A, (l) => l.length === 3, 5000);
  t.pass("alpha's new capacity applied");
  t.equal(daemon.child.exitCode, null, 'still running');
});
