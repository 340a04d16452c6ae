/**
 * Metrics (root only): the real daemon in a test namespace, scraped over real HTTP from inside that namespace;
 * every value is checked to move with the action that should move it.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import t from 'tap';
import { tempDir } from '../deviceplugin/helpers';
import { ip, rootOnly } from '../support/kernel';
import { conf, RES, startWithEndpoint } from './helpers';

const L = `resource="${RES}"`;

t.test('metrics move with Allocate, health, registration and config reloads', { skip: rootOnly }, async (t) => {
  const s = await startWithEndpoint(t);
  await s.kubelet.waitForDevices(RES, (l) => l.length === 4 && l.every((d) => d.health === 'Healthy'), 60000);

  const m0 = await s.scrape();
  t.equal(m0.get(`macvtap_resource_capacity{${L}}`), 4, 'capacity');
  t.equal(m0.get(`macvtap_resource_allocated{${L}}`), 0, 'nothing allocated yet');
  t.equal(m0.get(`macvtap_resource_healthy{${L}}`), 1, 'healthy');
  t.equal(m0.get(`macvtap_resource_registered{${L}}`), 1, 'registered');
  t.equal(m0.get(`macvtap_lower_device_oper_state{${L},lower_device="lower0",state="up"}`), 1, 'lower device up');
  t.equal(m0.get(`macvtap_lower_device_oper_state{${L},lower_device="lower0",state="down"}`), 0);
  t.equal(m0.get(`macvtap_kubelet_registrations_total{${L}}`), 1, 'one registration');
  t.equal(m0.get(`macvtap_kubelet_reregistrations_total{${L}}`), 0, 'no re-registration');
  t.equal(m0.get(`macvtap_allocate_requests_total{${L},result="ok"}`), 0, 'Allocate series exist from registration on');
  t.ok((m0.get('macvtap_link_resyncs_total{reason="start"}') ?? 0) >= 1, 'the start-up link dump is counted');
  t.ok((m0.get('process_resident_memory_bytes') ?? 0) > 1 << 20, 'process RSS is reported');

  // Allocate: one request of two devices, one of an unknown ID.
  await s.kubelet.allocate(RES, [['dataplaneMvp0', 'dataplaneMvp1']]);
  await t.rejects(s.kubelet.allocate(RES, [['nosuchMvp9']]), /unknown device ID/);
  const m1 = await s.scrape();
  t.equal(m1.get(`macvtap_allocate_requests_total{${L},result="ok"}`), 1, 'one ok Allocate');
  t.equal(m1.get(`macvtap_allocate_devices_total{${L},result="ok"}`), 2, 'two devices in it');
  t.equal(m1.get(`macvtap_allocate_requests_total{${L},result="invalid"}`), 1, 'one invalid Allocate');
  t.equal(m1.get(`macvtap_allocate_duration_seconds_count{${L},result="ok"}`), 1, 'latency histogram has the ok request');
  t.ok((m1.get(`macvtap_allocate_duration_seconds_sum{${L},result="ok"}`) ?? 0) > 0, 'with a positive duration');
  t.equal(m1.get(`macvtap_allocate_duration_seconds_bucket{le="+Inf",${L},result="ok"}`), 1, '+Inf bucket');
  t.equal(m1.get(`macvtap_resource_allocated{${L}}`), 2, 'two devices allocated (records)');
  t.ok(
    (m1.get('macvtap_link_events_total{type="new"}') ?? 0) > (m0.get('macvtap_link_events_total{type="new"}') ?? 0),
    'link events counted',
  );

  // Health: lower device down, then up.
  ip('-n', s.ns, 'link', 'set', 'lower0', 'down');
  await s.kubelet.waitForDevices(RES, (l) => l.every((d) => d.health === 'Unhealthy'));
  const m2 = await s.scrape();
  t.equal(m2.get(`macvtap_resource_healthy{${L}}`), 0, 'unhealthy while the lower device is down');
  t.equal(m2.get(`macvtap_lower_device_oper_state{${L},lower_device="lower0",state="down"}`), 1, 'oper state down');
  t.equal(m2.get(`macvtap_lower_device_oper_state{${L},lower_device="lower0",state="up"}`), 0);
  ip('-n', s.ns, 'link', 'set', 'lower0', 'up');
  await s.kubelet.waitForDevices(RES, (l) => l.every((d) => d.health === 'Healthy'));
  t.equal((await s.scrape()).get(`macvtap_resource_healthy{${L}}`), 1, 'healthy again');

  // Kubelet restart: a re-registration.
  await s.kubelet.restart();
  await s.kubelet.waitForRegistration(RES);
  await s.kubelet.waitForDevices(RES, (l) => l.length === 4, 60000);
  const m3 = await s.scrape();
  t.equal(m3.get(`macvtap_kubelet_registrations_total{${L}}`), 2, 'two registrations');
  t.equal(m3.get(`macvtap_kubelet_reregistrations_total{${L}}`), 1, 'one of them a re-registration');
  t.same(s.daemon.garbage, [], 'stdout holds only JSON lines');
});

t.test('config reloads: applied and rejected are counted', { skip: rootOnly }, async (t) => {
  const dir = tempDir(t);
  const file = path.join(dir, 'conf.json');
  fs.writeFileSync(file, conf(4));
  const s = await startWithEndpoint(t, { env: undefined, extraArgs: ['--config', file] });
  await s.kubelet.waitForDevices(RES, (l) => l.length === 4, 60000);
  fs.writeFileSync(file, conf(6));
  await s.kubelet.waitForDevices(RES, (l) => l.length === 6, 60000);
  const m1 = await s.scrape();
  t.equal(m1.get('macvtap_config_reloads_total{result="applied"}'), 1, 'one applied reload');
  t.equal(m1.get(`macvtap_resource_capacity{${L}}`), 6, 'capacity follows the reload');
  fs.writeFileSync(file, '{not json');
  await s.daemon.waitForLog((l) => l.msg === 'new configuration is invalid; keeping the running configuration');
  const m2 = await s.scrape();
  t.equal(m2.get('macvtap_config_reloads_total{result="rejected"}'), 1, 'one rejected reload');
  t.equal(m2.get(`macvtap_resource_capacity{${L}}`), 6, 'the running configuration is kept');
});

t.test('configuration entries skipped as invalid are counted, at start and on reload', { skip: rootOnly }, async (t) => {
  const dir = tempDir(t);
  const file = path.join(dir, 'conf.json');
  const good = { name: 'dataplane', lowerDevice: 'lower0', capacity: 4 };
  fs.writeFileSync(file, JSON.stringify([good, { name: 'bad', lowerDevice: 'lower0', mode: 'fast' }]));
  const s = await startWithEndpoint(t, { env: undefined, extraArgs: ['--config', file] });
  await s.kubelet.waitForDevices(RES, (l) => l.length === 4, 60000);
  t.equal((await s.scrape()).get('macvtap_config_rejected_entries_total'), 1, 'the bad entry at start');
  fs.writeFileSync(
    file,
    JSON.stringify([good, { name: 'bad2', lowerDevice: 'lower0', mode: 'fast' }, { name: 'no/slash', lowerDevice: 'lower0' }]),
  );
  await s.daemon.waitForLog((l) => l.msg === 'configuration reloaded' || (typeof l.msg === 'string' && l.msg.includes('skipped')), 20000);
  const deadline = Date.now() + 20000;
  let n = 0;
  while (Date.now() < deadline && (n = (await s.scrape()).get('macvtap_config_rejected_entries_total') ?? 0) < 3)
    await new Promise((r) => setTimeout(r, 200));
  t.equal(n, 3, 'and the two bad entries of the reload');
});
