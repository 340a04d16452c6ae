/**
 * `[]` discovery. A test namespace has no physical NIC and this kernel has no bonding, so the default
 * classification can only be shown to offer nothing here (the rule itself is checked on kernel-decoded link
 * records in config.test.ts). The live path (links appearing and disappearing) is driven with
 * `--discover-kinds veth`, which makes veths count as NICs.
 */
import * as fs from 'node:fs';
import t from 'tap';
import { ip, makeLowerNetns, rootOnly } from '../support/kernel';
import { PREFIX, sleep, startDaemon } from './helpers';

t.test('[] in a namespace without NICs offers nothing, and veths do not change that', { skip: rootOnly }, async (t) => {
  const { ns } = makeLowerNetns(t);
  const { daemon, kubelet, pluginDir } = await startDaemon(t, { ns, env: '[]' });
  const started = await daemon.waitForLog((l) => l.msg === 'started');
  t.equal(started.config, 'discover');
  t.same(started.resources, [], 'no resource: lo, lower0 and peer0 are not NICs');
  ip('-n', ns, 'link', 'add', 'eth7', 'type', 'veth', 'peer', 'name', 'eth8');
  ip('-n', ns, 'link', 'set', 'eth7', 'up');
  await sleep(300);
  t.same(fs.readdirSync(pluginDir), ['kubelet.sock'], 'no plugin socket');
  t.same(kubelet.registrations, [], 'nothing registered');
  t.equal(daemon.child.exitCode, null, 'the daemon keeps running');
});

t.test('[] follows links live (veths counted as NICs with --discover-kinds veth)', { skip: rootOnly }, async (t) => {
  const { ns } = makeLowerNetns(t);
  ip('-n', ns, 'link', 'add', 'bad-', 'type', 'veth', 'peer', 'name', 'bad2');
  const { daemon, kubelet, pluginDir } = await startDaemon(t, { ns, env: '[]', args: ['--discover-kinds', 'veth'] });
  const healthy100 = (l: { health: string }[]) => l.length === 100 && l.every((d) => d.health === 'Healthy');
  await kubelet.waitForDevices(`${PREFIX}/lower0`, healthy100);
  await kubelet.waitForDevices(`${PREFIX}/peer0`, healthy100);
  const reg = await kubelet.waitForRegistration(`${PREFIX}/lower0`);
  t.equal(reg.endpoint, 'macvtap.network.kubevirt.io_lower0', 'named after the link');
  t.equal(kubelet.devices(`${PREFIX}/lower0`)?.[99].ID, 'lower0Mvp99', 'default capacity 100');
  await kubelet.waitForRegistration(`${PREFIX}/bad2`);
  t.notOk(
    kubelet.registrations.some((r) => r.resourceName === `${PREFIX}/bad-`),
    'a link whose name is no resource name is skipped',
  );

  ip('-n', ns, 'link', 'add', 'nic1', 'type', 'veth', 'peer', 'name', 'nic2');
  ip('-n', ns, 'link', 'set', 'nic1', 'up');
  await kubelet.waitForDevices(`${PREFIX}/nic1`, healthy100, 2000);
  t.pass('a new link becomes a resource');
  await kubelet.waitForDevices(`${PREFIX}/nic2`, (l) => l.length === 100 && l[0].health === 'Unhealthy', 2000);
  t.pass('a down link is offered, unhealthy');

  ip('-n', ns, 'link', 'del', 'nic1');
  await kubelet.waitForDevices(`${PREFIX}/nic1`, (l) => l.length === 0, 2000);
  await kubelet.waitForStreamEnd(`${PREFIX}/nic1`, 2000);
  await kubelet.waitForStreamEnd(`${PREFIX}/nic2`, 2000);
  t.pass('removed links are withdrawn: empty list, stream ended');
  await daemon.waitForLog((l) => l.msg === 'resource removed' && l.resource === `${PREFIX}/nic1`, 2000);
  t.pass('the removal is logged');
  t.notOk(fs.existsSync(`${pluginDir}/macvtap.network.kubevirt.io_nic1`), 'socket removed');
  t.ok(fs.existsSync(`${pluginDir}/macvtap.network.kubevirt.io_lower0`), 'others stay');
});
