// The CNI plugin's versions (root only): VERSION, the ADD result shape of every supported version, a chained
// prevResult passed through, and configs it cannot serve (0.1.0, 0.2.0, none, unknown: code 1).
import t from 'tap';
import { rootOnly } from '../support/kernel';
import { addMacvtap, cni, conf, ipLink, makeScene, noStack, world } from './harness';

t.test("VERSION lists exactly the versions served, answering in the caller's version", { skip: rootOnly }, (t) => {
  const s = makeScene(t, { indexes: 1 });
  const all = ['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'];
  for (const v of all) {
    const r = cni(s, { command: 'VERSION', stdin: JSON.stringify({ cniVersion: v }), netns: null });
    t.equal(r.status, 0, `VERSION for ${v} exits 0`);
    t.same(r.json, { cniVersion: v, supportedVersions: all }, `VERSION for ${v}`);
  }
  for (const stdin of ['', '{"cniVersion":"0.2.0"}', 'not json']) {
    const r = cni(s, { command: 'VERSION', stdin, netns: null });
    t.same(r.json, { cniVersion: '1.1.0', supportedVersions: all }, `VERSION with stdin ${JSON.stringify(stdin)}: latest`);
  }
  t.end();
});

t.test('ADD result shape for every version; DEL after each', { skip: rootOnly }, (t) => {
  const s = makeScene(t, { indexes: 1 });
  const idx = s.indexes[0];
  addMacvtap(s, 'mvtver', idx);
  const mac = '02:11:22:33:44:01';
  for (const v of ['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0']) {
    const config = conf(s, { cniVersion: v, deviceID: 'mvtver', mac, mtu: 1400 });
    const r = cni(s, { command: 'ADD', config });
    t.equal(r.status, 0, `${v}: ADD exits 0 (${r.stdout}${r.stderr})`);
    const iface: Record<string, unknown> = { name: 'net1', mac, sandbox: s.netns };
    if (v === '1.1.0') iface.mtu = 1400;
    t.same(r.json, { cniVersion: v, interfaces: [iface], dns: {} }, `${v}: result shape`);
    t.strictSame(Object.keys(r.json?.interfaces?.[0] ?? {}).sort(), Object.keys(iface).sort(), `${v}: exactly these interface keys`);
    t.equal(ipLink(s.pod, 'net1')?.ifindex, idx, `${v}: the macvtap is in the pod`);
    const d = cni(s, { command: 'DEL', config });
    t.equal(d.status, 0, `${v}: DEL exits 0`);
    t.equal(d.stdout, '', `${v}: DEL prints nothing`);
    t.ok(ipLink(s.host, 'mvtver'), `${v}: back in the host`);
  }
  t.end();
});

t.test('a chained prevResult is passed through with this interface appended', { skip: rootOnly }, (t) => {
  const s = makeScene(t, { indexes: 1 });
  addMacvtap(s, 'mvtchain', s.indexes[0]);
  const prevResult = {
    cniVersion: '0.4.0',
    interfaces: [{ name: 'eth0', mac: '02:00:00:00:00:aa', sandbox: s.netns }],
    ips: [{ version: '4', address: '10.1.2.3/24', interface: 0 }],
    routes: [{ dst: '0.0.0.0/0' }],
    dns: { nameservers: ['10.1.2.1'] },
  };
  const config = conf(s, { cniVersion: '0.4.0', deviceID: 'mvtchain', mac: '02:11:22:33:44:02', prevResult });
  const r = cni(s, { command: 'ADD', config });
  t.equal(r.status, 0, r.stdout);
  t.same(r.json, {
    cniVersion: '0.4.0',
    interfaces: [prevResult.interfaces[0], { name: 'net1', mac: '02:11:22:33:44:02', sandbox: s.netns }],
    ips: prevResult.ips,
    routes: prevResult.routes,
    dns: prevResult.dns,
  });
  t.equal(cni(s, { command: 'DEL', config }).status, 0);
  t.end();
});

t.test('configs it cannot serve: code 1, nothing touched', { skip: rootOnly }, (t) => {
  const s = makeScene(t, { indexes: 1 });
  addMacvtap(s, 'mvtold', s.indexes[0]);
  const before = world(s, s.indexes);
  for (const [label, version] of [
    ['0.1.0', '0.1.0'],
    ['0.2.0', '0.2.0'],
    ['missing (means 0.1.0)', undefined],
    ['unknown', '2.0.0'],
    ['malformed', 'one'],
  ] as const) {
    const config = conf(s, { deviceID: 'mvtold' });
    if (version === undefined) delete config.cniVersion;
    else config.cniVersion = version;
    for (const command of ['ADD', 'DEL', 'CHECK']) {
      const r = cni(s, { command, config });
      t.equal(r.status, 1, `${label} ${command}: exit 1`);
      t.equal(r.json?.code, 1, `${label} ${command}: code 1`);
      t.equal(r.json?.cniVersion, version ?? '1.1.0', `${label} ${command}: error in the config's version`);
      t.type(r.json?.msg, 'string');
      t.type(r.json?.details, 'string');
      t.ok(noStack(r), `${label} ${command}: no stack trace`);
    }
  }
  // Verbs newer than the config's version.
  for (const [command, version] of [
    ['CHECK', '0.3.1'],
    ['GC', '1.0.0'],
    ['STATUS', '1.0.0'],
  ]) {
    const r = cni(s, {
      command,
      config: conf(s, { cniVersion: version, deviceID: 'mvtold', prevResult: { cniVersion: version, interfaces: [] } }),
    });
    t.equal(r.json?.code, 1, `${command} with cniVersion ${version}: code 1`);
  }
  t.same(world(s, s.indexes), before, 'both namespaces and the tap node unchanged');
  t.end();
});
