// Every configuration key of the CNI plugin and every MAC source with its precedence (root only), checked with
// the iproute2 oracle, the pod namespace's sysfs and the tap node itself.
import * as fs from 'node:fs';
import * as path from 'node:path';
import t from 'tap';
import { hostLinkName } from '../../lib/naming';
import { rootOnly } from '../support/kernel';
import { addMacvtap, cni, conf, ipLink, linkOf, makeScene, nodeDev, nodeOwner, sysfsDev, writeAllocation } from './harness';

const ARGS = 'IgnoreUnknown=true;K8S_POD_NAMESPACE=default;K8S_POD_NAME=vm;K8S_POD_INFRA_CONTAINER_ID=c0ffee01';

t.test('MAC sources, lowest to highest: config mac < CNI_ARGS MAC < runtimeConfig.mac < args.cni.mac', { skip: rootOnly }, (t) => {
  const s = makeScene(t, { indexes: 1 });
  addMacvtap(s, 'mvtmac', s.indexes[0]);
  const kernelMac = linkOf(s.host, 'mvtmac').address as string;
  const macs = { config: '02:00:00:00:01:01', cniArgs: '02:00:00:00:01:02', runtime: '02:00:00:00:01:03', args: '02:00:00:00:01:04' };
  const cases: [string, Record<string, unknown>, string, string][] = [
    [
      'all four',
      { mac: macs.config, runtimeConfig: { mac: macs.runtime }, args: { cni: { mac: macs.args } } },
      `${ARGS};MAC=${macs.cniArgs}`,
      macs.args,
    ],
    ['no args.cni.mac', { mac: macs.config, runtimeConfig: { mac: macs.runtime } }, `${ARGS};MAC=${macs.cniArgs}`, macs.runtime],
    ['config and CNI_ARGS', { mac: macs.config }, `${ARGS};MAC=${macs.cniArgs}`, macs.cniArgs],
    ['config only', { mac: macs.config }, ARGS, macs.config],
    ['CNI_ARGS only (Multus)', {}, `${ARGS};MAC=${macs.cniArgs}`, macs.cniArgs],
    ['runtimeConfig only (mac capability)', { runtimeConfig: { mac: macs.runtime } }, ARGS, macs.runtime],
    ['args.cni only', { args: { cni: { mac: macs.args } } }, ARGS, macs.args],
    ['upper-case and dashes', { mac: '02-00-00-00-0A-BC' }, ARGS, '02:00:00:00:0a:bc'],
    ['none: the link keeps its own', {}, ARGS, kernelMac],
  ];
  for (const [label, extra, args, want] of cases) {
    const config = conf(s, { deviceID: 'mvtmac', ...extra });
    const r = cni(s, { command: 'ADD', config, args });
    t.equal(r.status, 0, `${label}: ADD (${r.stdout})`);
    t.equal(ipLink(s.pod, 'net1')?.address, want, `${label}: the interface has ${want}`);
    t.equal(r.json?.interfaces?.[0]?.mac, want, `${label}: the result says so`);
    t.equal(cni(s, { command: 'DEL', config, args }).status, 0, `${label}: DEL`);
    t.equal(ipLink(s.host, 'mvtmac')?.address, kernelMac, `${label}: DEL restored the host MAC`);
  }
  t.end();
});

t.test('mtu, promiscMode, owner and group', { skip: rootOnly }, (t) => {
  const s = makeScene(t, { indexes: 1, mtu: 9000 });
  const idx = s.indexes[0];
  addMacvtap(s, 'mvtkeys', idx);
  const hostBefore = linkOf(s.host, 'mvtkeys');

  // Defaults: MTU as it was, promisc off, tap node 107:107.
  let config = conf(s, { deviceID: 'mvtkeys' });
  let r = cni(s, { command: 'ADD', config });
  t.equal(r.status, 0, r.stdout);
  let o = linkOf(s.pod, 'net1');
  t.equal(o.mtu, hostBefore.mtu, 'default: MTU unchanged');
  t.equal(r.json?.interfaces?.[0]?.mtu, hostBefore.mtu, 'result mtu (1.1.0)');
  t.equal(o.promiscuity, 0, 'default: promisc off');
  t.ok(o.flags.includes('UP'), 'up');
  t.equal(o.linkinfo?.info_kind, 'macvtap', 'a macvtap');
  t.equal(nodeOwner(idx), '107:107', 'default owner 107:107 (qemu)');
  t.equal(nodeDev(idx), sysfsDev(s.pod, 'net1', idx), "/dev/tapN is this macvtap's char device");
  t.equal((fs.statSync(`/dev/tap${idx}`).mode & 0o777).toString(8), '600', 'mode 0600');
  t.equal(cni(s, { command: 'DEL', config }).status, 0);

  // Everything set: jumbo MTU up to the lower device's, promisc on, another owner.
  config = conf(s, { deviceID: 'mvtkeys', mtu: 9000, promiscMode: true, owner: 0, group: 36 });
  r = cni(s, { command: 'ADD', config });
  t.equal(r.status, 0, r.stdout);
  o = linkOf(s.pod, 'net1');
  t.equal(o.mtu, 9000, 'mtu 9000 (the lower device allows it)');
  t.equal(o.promiscuity, 1, 'promisc on');
  t.ok(o.flags.includes('PROMISC'), 'PROMISC flag');
  t.equal(nodeOwner(idx), '0:36', 'owner 0, group 36');
  t.equal(cni(s, { command: 'DEL', config }).status, 0);
  const back = linkOf(s.host, 'mvtkeys');
  t.equal(back.mtu, hostBefore.mtu, 'DEL restored the host MTU');
  t.equal(back.promiscuity, 0, 'DEL restored promisc off');
  t.notOk(back.flags.includes('UP'), 'DEL restored down');

  // mtu 68, the minimum.
  config = conf(s, { deviceID: 'mvtkeys', mtu: 68, promiscMode: false });
  t.equal(cni(s, { command: 'ADD', config }).status, 0, 'ADD with mtu 68');
  t.equal(ipLink(s.pod, 'net1')?.mtu, 68, 'mtu 68');
  t.equal(cni(s, { command: 'DEL', config }).status, 0);
  t.end();
});

t.test('deviceID: link name, allocation record, derived name, runtimeConfig.deviceID', { skip: rootOnly }, (t) => {
  const s = makeScene(t, { indexes: 3 });
  const [a, b, c] = s.indexes;
  addMacvtap(s, 'mvtplain', a);
  const derived = hostLinkName('dataplaneMvp5');
  addMacvtap(s, derived, b);
  const recorded = writeAllocation(s, { deviceID: 'dataplaneMvp6', ifindex: c }).linkName;
  addMacvtap(s, recorded, c);

  const cases: [string, Record<string, unknown>, string, number][] = [
    ['existing host link name', { deviceID: 'mvtplain' }, 'mvtplain', a],
    ['device plugin ID, derived name', { deviceID: 'dataplaneMvp5' }, derived, b],
    ['device plugin ID, allocation record', { deviceID: 'dataplaneMvp6' }, recorded, c],
    ['runtimeConfig.deviceID wins over deviceID', { deviceID: 'mvtplain', runtimeConfig: { deviceID: 'dataplaneMvp6' } }, recorded, c],
    ['runtimeConfig.deviceID alone', { runtimeConfig: { deviceID: 'mvtplain' } }, 'mvtplain', a],
  ];
  for (const [label, extra, hostName, index] of cases) {
    const config = conf(s, extra);
    const r = cni(s, { command: 'ADD', config });
    t.equal(r.status, 0, `${label}: ADD (${r.stdout})`);
    t.equal(ipLink(s.pod, 'net1')?.ifindex, index, `${label}: ${hostName} is net1 in the pod`);
    t.notOk(ipLink(s.host, hostName), `${label}: gone from the host`);
    t.equal(cni(s, { command: 'DEL', config }).status, 0, `${label}: DEL`);
    t.equal(ipLink(s.host, hostName)?.ifindex, index, `${label}: back in the host as ${hostName}`);
  }
  t.end();
});

t.test('log file, log level and state dir come from the host (the environment here), never the network', { skip: rootOnly }, (t) => {
  const s = makeScene(t, { indexes: 1 });
  addMacvtap(s, 'mvtlog', s.indexes[0]);
  const logFile = path.join(s.stateDir, 'plugin.log');
  const debug = { MACVTAP_CNI_LOG_FILE: logFile, MACVTAP_CNI_LOG_LEVEL: 'debug' };

  const config = conf(s, { deviceID: 'mvtlog' });
  let r = cni(s, { command: 'ADD', config, containerId: 'logtest1', env: debug });
  t.equal(r.status, 0, r.stdout);
  t.equal(r.stderr, '', 'nothing on stderr when logging to a file');
  const text = fs.readFileSync(logFile, 'utf8');
  const lines = text
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as Record<string, unknown>);
  t.ok(
    lines.some(
      (l) => l.level === 'debug' && l.command === 'ADD' && l.container === 'logtest1' && l.ifname === 'net1' && l.deviceID === 'mvtlog',
    ),
    'debug line with the attachment',
  );
  t.match(text, /"level":"info","msg":"attached".*"link":"mvtlog"/, 'info line');
  t.equal(cni(s, { command: 'DEL', config, containerId: 'logtest1', env: debug }).status, 0);

  fs.rmSync(logFile);
  const quiet = { MACVTAP_CNI_LOG_FILE: logFile, MACVTAP_CNI_LOG_LEVEL: 'error' };
  t.equal(cni(s, { command: 'ADD', config, env: quiet }).status, 0);
  t.equal(cni(s, { command: 'DEL', config, env: quiet }).status, 0);
  t.notOk(fs.existsSync(logFile) && fs.readFileSync(logFile, 'utf8').length, 'level error: a success logs nothing');
  t.equal(cni(s, { command: 'ADD', config: { ...config, mtu: 10 }, env: quiet }).json?.code, 7, 'mtu 10: code 7');
  t.match(
    fs.readFileSync(logFile, 'utf8'),
    /"level":"error","msg":"mtu must be between 68 and 65535.*"code":7/,
    'level error: the failure is logged',
  );

  // Default level (warn) on stderr: a success is silent.
  r = cni(s, { command: 'ADD', config });
  t.equal(r.stderr, '', 'default: a successful ADD writes nothing to stderr');
  t.equal(cni(s, { command: 'DEL', config }).status, 0);

  // stateDir: MACVTAP_CNI_STATE_DIR (the runtime's environment).
  const viaEnv = path.join(s.stateDir, 'from-env');
  r = cni(s, { command: 'ADD', config, env: { MACVTAP_CNI_STATE_DIR: viaEnv } });
  t.equal(r.status, 0, r.stdout);
  t.ok(fs.existsSync(path.join(viaEnv, 'attachments', 'mvtlog+c0ffee01+net1.json')), 'attachment recorded under MACVTAP_CNI_STATE_DIR');
  t.equal(cni(s, { command: 'DEL', config, env: { MACVTAP_CNI_STATE_DIR: viaEnv } }).status, 0);
  t.notOk(fs.existsSync(path.join(viaEnv, 'attachments', 'mvtlog+c0ffee01+net1.json')), 'and removed by DEL');
  // The network configuration's keys are refused (test/security has one test per attack).
  for (const key of ['stateDir', 'logFile', 'logLevel']) {
    r = cni(s, {
      command: 'ADD',
      config: conf(s, { deviceID: 'mvtlog', [key]: key === 'logLevel' ? 'debug' : path.join(s.stateDir, 'k') }),
    });
    t.equal(r.json?.code, 7, `${key} in the network configuration: code 7`);
    t.match(r.json?.details, new RegExp(`host setting: set "${key}" in the host configuration file`), `${key}: says where it lives now`);
  }
  t.notOk(fs.existsSync(path.join(s.stateDir, 'k')), 'nothing was created at the paths the network named');
  t.end();
});
