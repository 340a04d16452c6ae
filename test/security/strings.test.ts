// Issue 11, "every string is data": hostile strings and types in the network configuration, the CNI_* environment
// and CNI_ARGS get the spec's code (4, 6 or 7) and a readable message, never 199 or a hang, and change nothing;
// prevResult is validated before the first kernel change; the log stays one event per line.
import * as fs from 'node:fs';
import * as path from 'node:path';
import t from 'tap';
import { rootOnly } from '../support/kernel';
import { addMacvtap, ipLink } from '../cni/harness';
import { device, makeStage, nad, refused, run, snapshot } from './helpers';

t.test('a lone surrogate as deviceID: 7 on ADD, and DEL cleans up (never 199 "URI malformed")', { skip: rootOnly }, (t) => {
  const s = makeStage(t);
  const before = snapshot(s);
  for (const deviceID of ['\ud800', 'mvt\udfff0', 'x\ud800\ud800']) {
    const stdin = JSON.stringify(nad({ deviceID }));
    t.ok(stdin.includes('\\ud'), 'the JSON carries the lone surrogate as an escape, as a tenant writes it');
    const add = run(s, { command: 'ADD', config: undefined, stdin });
    refused(t, add, 7, /deviceID ".*\\ud[89a-f][0-9a-f]{2}.*" is not a valid device ID/, `ADD ${JSON.stringify(deviceID)}`);
    const del = run(s, { command: 'DEL', config: undefined, stdin });
    t.equal(del.status, 0, `DEL ${JSON.stringify(deviceID)}: succeeds (nothing was attached) (${del.stdout})`);
    t.match(del.stderr, /ignoring for DEL: deviceID/, 'and logs why it ignored the deviceID');
  }
  t.equal(snapshot(s), before, 'nothing changed');
  t.end();
});

t.test('"mvt0\\u0000x" does not resolve to the link mvt0 (or any lock or record)', { skip: rootOnly }, (t) => {
  const s = makeStage(t);
  addMacvtap(s, 'mvt0', s.indexes[0]);
  const before = snapshot(s);
  for (const command of ['ADD', 'CHECK']) {
    const r = run(s, { command, config: nad({ deviceID: 'mvt0\u0000x', prevResult: { interfaces: [{ name: 'net1' }] } }) });
    refused(t, r, 7, /deviceID "mvt0\\u0000x" is not a valid device ID/, command);
  }
  t.equal(ipLink(s.host, 'mvt0')?.ifindex, s.indexes[0], 'mvt0 is still in the host namespace');
  t.equal(snapshot(s), before, 'no lock, record or link change');
  t.end();
});

t.test('"/", "..", control characters, 10 kB and non-strings: refused with a short readable message', { skip: rootOnly }, (t) => {
  const s = makeStage(t);
  const d = device(s, 'stringsMvp0', s.indexes[0], '02:00:00:00:55:01');
  const long = 'a'.repeat(10_000);
  const before = snapshot(s);
  const cases: [string, number, Parameters<typeof run>[1], RegExp][] = [
    [
      'deviceID with /',
      7,
      { command: 'ADD', config: nad({ deviceID: '../../etc/passwd' }) },
      /deviceID "\.\.\/\.\.\/etc\/passwd" is not a valid/,
    ],
    ['deviceID ..', 7, { command: 'ADD', config: nad({ deviceID: '..' }) }, /deviceID "\.\." is not a valid device ID/],
    ['deviceID with a newline', 7, { command: 'ADD', config: nad({ deviceID: 'a\nb' }) }, /deviceID "a\\nb"/],
    ['deviceID 10 kB', 7, { command: 'ADD', config: nad({ deviceID: long }) }, /deviceID is 10000 characters long; at most 90/],
    ['deviceID a number', 7, { command: 'ADD', config: nad({ deviceID: 5 }) }, /deviceID must be a non-empty string, got 5/],
    ['deviceID a list', 7, { command: 'ADD', config: nad({ deviceID: ['x'] }) }, /deviceID must be a non-empty string, got \["x"\]/],
    ['deviceID an object', 7, { command: 'ADD', config: nad({ deviceID: { a: 1 } }) }, /deviceID must be a non-empty string/],
    ['name with a newline', 7, { command: 'ADD', config: nad({ deviceID: d.deviceID, name: 'net\n{"level":"error"}' }) }, /name "net\\n/],
    ['name 10 kB', 7, { command: 'ADD', config: nad({ deviceID: d.deviceID, name: long }) }, /name "a{64}"\.\.\. \(10000 characters\)/],
    ['name a number', 7, { command: 'ADD', config: nad({ deviceID: d.deviceID, name: 5 }) }, /name must be a non-empty string, got 5/],
    [
      'type with /',
      7,
      { command: 'ADD', config: nad({ deviceID: d.deviceID, type: '../macvtap' }) },
      /type "\.\.\/macvtap" is not a plugin name/,
    ],
    [
      'mac 10 kB',
      7,
      { command: 'ADD', config: nad({ deviceID: d.deviceID, mac: long }) },
      /config mac "a{64}"\.\.\. \(10000 characters\) is not a MAC/,
    ],
    ['CNI_ARGS MAC 10 kB', 4, { command: 'ADD', config: nad({ deviceID: d.deviceID }), args: `MAC=${long}` }, /CNI_ARGS MAC "a{64}"\.\.\./],
    ['mac a list', 7, { command: 'ADD', config: nad({ deviceID: d.deviceID, mac: [1] }) }, /mac/],
    ['cniVersion a number', 6, { command: 'ADD', config: nad({ deviceID: d.deviceID, cniVersion: 1 }) }, /cniVersion must be a string/],
    [
      'runtimeConfig a list',
      7,
      { command: 'ADD', config: nad({ deviceID: d.deviceID, runtimeConfig: [] }) },
      /runtimeConfig must be an object, got an array/,
    ],
    [
      'CNI_CONTAINERID 10 kB',
      4,
      { command: 'ADD', config: nad({ deviceID: d.deviceID }), containerId: long },
      /CNI_CONTAINERID is 10000 characters long/,
    ],
    [
      'CNI_CONTAINERID with ..',
      4,
      { command: 'ADD', config: nad({ deviceID: d.deviceID }), containerId: '../x' },
      /CNI_CONTAINERID "\.\.\/x"/,
    ],
    [
      'CNI_IFNAME 10 kB',
      4,
      { command: 'ADD', config: nad({ deviceID: d.deviceID }), ifname: long },
      /CNI_IFNAME "a{64}"\.\.\. \(10000 characters\)/,
    ],
    ['CNI_IFNAME with a newline', 4, { command: 'ADD', config: nad({ deviceID: d.deviceID }), ifname: 'net\n1' }, /CNI_IFNAME "net\\n1"/],
    ['CNI_IFNAME ..', 4, { command: 'ADD', config: nad({ deviceID: d.deviceID }), ifname: '..' }, /CNI_IFNAME "\.\."/],
    [
      'CNI_NETNS relative',
      4,
      { command: 'ADD', config: nad({ deviceID: d.deviceID }), netns: '../netns/x' },
      /CNI_NETNS "\.\.\/netns\/x" is not an absolute path/,
    ],
    [
      'CNI_NETNS with a newline',
      4,
      { command: 'ADD', config: nad({ deviceID: d.deviceID }), netns: '/run/x\ny' },
      /CNI_NETNS "\/run\/x\\ny"/,
    ],
    [
      'K8S_POD_UID with /',
      4,
      { command: 'ADD', config: nad({ deviceID: d.deviceID }), args: 'IgnoreUnknown=1;K8S_POD_UID=../../x' },
      /CNI_ARGS "K8S_POD_UID"="\.\.\/\.\.\/x" is not a pod UID/,
    ],
    [
      'K8S_POD_UID 10 kB',
      4,
      { command: 'ADD', config: nad({ deviceID: d.deviceID }), args: `K8S_POD_UID=${long}` },
      /CNI_ARGS "K8S_POD_UID"="a{64}"\.\.\. \(10000 characters\) is not a pod UID/,
    ],
    [
      'K8S_POD_NAMESPACE with a tab',
      4,
      { command: 'ADD', config: nad({ deviceID: d.deviceID }), args: 'K8S_POD_NAMESPACE=a\tb' },
      /"a\\tb" is not a namespace name/,
    ],
    ['K8S_POD_NAME with ..', 4, { command: 'ADD', config: nad({ deviceID: d.deviceID }), args: 'K8S_POD_NAME=..' }, /is not a pod name/],
    [
      'stdin above 1 MiB',
      6,
      { command: 'ADD', config: undefined, stdin: JSON.stringify(nad({ pad: 'x'.repeat(1_100_000) })) },
      /larger than 1048576 bytes/,
    ],
  ];
  for (const [label, code, call, msg] of cases) {
    const r = run(s, call);
    refused(t, r, code, msg, label);
    t.ok((r.json?.msg?.length ?? 0) < 300, `${label}: the message is short (${r.json?.msg?.length})`);
  }
  t.equal(snapshot(s), before, 'nothing changed by any of them');
  t.ok(ipLink(s.host, d.hostName), 'the device is still in the host namespace');
  t.end();
});

/** `{"a": {"a": ... }}` `depth` levels deep, as text (JSON.stringify itself would overflow). */
function nested(depth: number): string {
  return `${'{"a":'.repeat(depth)}1${'}'.repeat(depth)}`;
}

t.test('prevResult nested 5000 deep: 7 before the link moves or a record is written', { skip: rootOnly }, (t) => {
  const s = makeStage(t);
  const d = device(s, 'stringsMvp1', s.indexes[0], '02:00:00:00:55:02');
  const before = snapshot(s);
  for (const [label, prev] of [
    ['5000 deep', nested(5000)],
    ['5000 deep inside interfaces', `{"interfaces":[{"name":"eth0","x":${nested(5000)}}]}`],
    ['interfaces with a number name', '{"interfaces":[{"name":5}]}'],
    ['ips not a list', '{"ips":{}}'],
    ['dns a string', '{"dns":"8.8.8.8"}'],
  ]) {
    const stdin = `{"cniVersion":"1.1.0","name":"dataplane","type":"macvtap","deviceID":"${d.deviceID}","prevResult":${prev}}`;
    for (const command of ['ADD', 'CHECK'])
      refused(t, run(s, { command, config: undefined, stdin }), 7, /^prevResult /, `${command} ${label}`);
  }
  t.equal(snapshot(s), before, 'the link never moved, no record was written');
  t.end();
});

t.test('newlines and control characters never split the log: one event, one JSON line', { skip: rootOnly }, (t) => {
  const s = makeStage(t);
  const d = device(s, 'stringsMvp2', s.indexes[0], '02:00:00:00:55:03');
  const logFile = path.join(s.scratch, 'plugin.log');
  const env = { MACVTAP_CNI_LOG_FILE: logFile, MACVTAP_CNI_LOG_LEVEL: 'debug' };
  const injected = 'evil:x:0:0::/root:/bin/sh';
  const cron = '* * * * * root /tmp/x';
  const calls: Parameters<typeof run>[1][] = [
    { command: 'ADD', config: nad({ deviceID: `x\n${injected}\n` }), env },
    { command: 'ADD', config: nad({ deviceID: d.deviceID, name: `n\r\n${cron}` }), env },
    { command: 'DEL', config: nad({ deviceID: `y\u2028${injected}\u0000\u001b[2J` }), env },
    { command: 'ADD', config: nad({ deviceID: d.deviceID, mac: `02:00\n${injected}` }), env, ownership: 'off' },
  ];
  for (const call of calls) t.notOk(run(s, call).timedOut);
  const lines = fs.readFileSync(logFile, 'utf8').split('\n');
  t.equal(lines.pop(), '', 'the file ends with a newline');
  t.ok(lines.length >= calls.length, `${lines.length} events`);
  for (const line of lines) {
    t.doesNotThrow(() => JSON.parse(line) as unknown, `a whole JSON event: ${line.slice(0, 60)}`);
    t.notOk(line.startsWith(injected) || line.startsWith(cron), 'no forged line');
    // eslint-disable-next-line no-control-regex
    t.notMatch(line, /[\u0000-\u001f\u2028\u2029]/, 'no raw control character or line separator');
  }
  t.end();
});
