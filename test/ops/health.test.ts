/**
 * /healthz and /readyz (root only), and what the endpoint does with bad input: the real daemon in a test
 * namespace, its endpoint reached over real HTTP from inside that namespace.
 */
import { ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { createInterface } from 'node:readline';
import t from 'tap';
import { spawnDaemon, tempDir } from '../deviceplugin/helpers';
import { KubeletStandIn } from '../support/kubelet';
import { claimIfindexes, ip, ipLinkNames, makeLowerNetns, rootOnly } from '../support/kernel';
import { NsHttp } from '../support/nshttp';
import { conf, RES, startWithEndpoint } from './helpers';

type T = Parameters<typeof tempDir>[0];

/** The kubelet stand-in in a process of its own (kubelet-child.ts), killed at teardown if still alive. */
async function kubeletProcess(t: T, dir: string): Promise<{ child: ChildProcess; lines: string[] }> {
  const child = spawn(process.execPath, [...process.execArgv, path.join(__dirname, 'kubelet-child.ts'), dir], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  const lines: string[] = [];
  await new Promise<void>((resolve, reject) => {
    createInterface({ input: child.stdout }).on('line', (l) => {
      lines.push(l);
      if (l === 'ready') resolve();
    });
    child.on('exit', (code) => reject(new Error(`kubelet-child exited with ${code}`)));
  });
  return { child, lines };
}

/** Polls `path` until `accept` says yes (readiness follows asynchronous events); returns the last answer. */
async function until(
  http: NsHttp,
  port: number,
  p: string,
  accept: (status: number) => boolean,
  timeoutMs = 15000,
): Promise<{ status: number; body: string }> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const r = await http.request(port, p);
    if (accept(r.status) || Date.now() > deadline) return r;
    await new Promise((res) => setTimeout(res, 100));
  }
}

t.test('readyz goes false when the kubelet is killed and true after it re-registers', { skip: rootOnly }, async (t) => {
  const { ns } = makeLowerNetns(t);
  ip('-n', ns, 'link', 'set', 'lo', 'up');
  const idx = claimIfindexes(t, 4);
  const dir = tempDir(t);
  const pluginDir = path.join(dir, 'dp');
  fs.mkdirSync(pluginDir);
  const first = await kubeletProcess(t, pluginDir);
  const daemon = spawnDaemon(
    t,
    ns,
    [
      '--device-plugin-path',
      pluginDir,
      '--state-dir',
      path.join(dir, 'state'),
      '--ifindex-range',
      `${idx[0]}-${idx[3]}`,
      '--metrics-listen',
      '127.0.0.1:0',
    ],
    conf(),
  );
  const port = (await daemon.waitForLog((l) => l.msg === 'serving metrics and health', 60000)).port as number;
  const http = NsHttp.open(t, ns);

  const ready = await until(http, port, '/readyz', (s) => s === 200);
  t.equal(ready.status, 200, 'ready once registered and the kubelet watches the devices');
  t.equal(ready.body, 'ok\n');
  const live = await http.request(port, '/healthz');
  t.equal(live.status, 200, 'alive');
  t.equal(live.body, 'ok\n');
  t.match(live.headers['content-type'], /^text\/plain/);

  first.child.kill('SIGKILL');
  await new Promise((r) => first.child.once('exit', r));
  t.ok(fs.existsSync(path.join(pluginDir, 'kubelet.sock')), 'a killed kubelet leaves its socket behind');
  const notReady = await until(http, port, '/readyz', (s) => s === 503);
  t.equal(notReady.status, 503, 'not ready once the kubelet is gone');
  t.match(notReady.body, `[-]listandwatch:${RES}: the kubelet has no ListAndWatch stream open`, 'the body says why');
  t.equal((await http.request(port, '/healthz')).status, 200, 'still alive: a missing kubelet is no reason to restart the daemon');

  // The kubelet comes back (a fresh kubelet.sock, as a restarted kubelet serves).
  const kubelet = await KubeletStandIn.start(pluginDir);
  t.teardown(() => kubelet.stop());
  await kubelet.waitForRegistration(RES);
  const again = await until(http, port, '/readyz', (s) => s === 200);
  t.equal(again.status, 200, 'ready again after the re-registration');
  t.same(daemon.garbage, [], 'stdout holds only JSON lines');
});

t.test('garbage HTTP gets 400/404/405 and the daemon keeps serving', { skip: rootOnly }, async (t) => {
  const s = await startWithEndpoint(t);
  await s.kubelet.waitForDevices(RES, (l) => l.length === 4, 60000);
  const cases: [string, string | Buffer, RegExp][] = [
    ['not HTTP at all', 'hello there\r\n\r\n', /^HTTP\/1\.1 400 /],
    ['binary bytes', Buffer.from([0x16, 0x03, 0x01, 0x00, 0xff, 0x00, 0x0d, 0x0a, 0x0d, 0x0a]), /^HTTP\/1\.1 400 /],
    ['unknown path', 'GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n', /^HTTP\/1\.1 404 /],
    ['prototype name as path', 'GET /__proto__ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n', /^HTTP\/1\.1 404 /],
    [
      'POST',
      'POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc',
      /^HTTP\/1\.1 405 [^]*Allow: GET, HEAD/i,
    ],
    ['absolute-form target', 'GET http://evil/metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n', /^HTTP\/1\.1 400 /],
    ['asterisk target', 'OPTIONS * HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n', /^HTTP\/1\.1 400 /],
    ['oversized header', `GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20000)}\r\n\r\n`, /^HTTP\/1\.1 431 /],
    ['bad chunked body', 'GET /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n', /^HTTP\/1\.1 (200|400) /],
  ];
  for (const [what, data, expect] of cases) t.match(await s.http.raw(s.port, data), expect, what);
  const head = await s.http.request(s.port, '/metrics', 'HEAD');
  t.equal(head.status, 200, 'HEAD /metrics');
  t.equal(head.body, '', 'HEAD has no body');
  t.equal((await s.http.request(s.port, '/healthz')).status, 200, 'still alive after all of it');
  t.equal(s.daemon.child.exitCode, null, 'the daemon did not exit');
  await s.kubelet.allocate(RES, [['dataplaneMvp0']]);
  t.pass('and still answers Allocate');
});

t.test('port in use: by default one clear line and the kubelet is still served', { skip: rootOnly }, async (t) => {
  const { ns } = makeLowerNetns(t);
  ip('-n', ns, 'link', 'set', 'lo', 'up');
  const idx = claimIfindexes(t, 4);
  const http = NsHttp.open(t, ns);
  const port = await http.hold(0, '127.0.0.1');
  const dir = tempDir(t);
  const pluginDir = path.join(dir, 'dp');
  const kubelet = await KubeletStandIn.start(pluginDir);
  t.teardown(() => kubelet.stop());
  const args = ['--device-plugin-path', pluginDir, '--state-dir', path.join(dir, 'state'), '--ifindex-range', `${idx[0]}-${idx[3]}`];
  const daemon = spawnDaemon(t, ns, [...args, '--metrics-listen', `127.0.0.1:${port}`], conf());
  await kubelet.waitForDevices(RES, (l) => l.length === 4, 60000);
  const lines = daemon.logs.filter((l) => l.msg === 'no metrics or health endpoint; serving the kubelet without them');
  t.equal(lines.length, 1, 'one line');
  t.equal(lines[0].level, 'error');
  t.equal(
    lines[0].err,
    `cannot listen on 127.0.0.1:${port}: the port is already in use (EADDRINUSE)`,
    'it names the address and the cause',
  );
  await kubelet.allocate(RES, [['dataplaneMvp0']]);
  t.pass('Allocate still served');
  t.equal(daemon.stderr, '', 'nothing on stderr');
});

t.test('port in use with --metrics-on-error exit: one line on stderr, exit 1, nothing registered', { skip: rootOnly }, async (t) => {
  const { ns } = makeLowerNetns(t);
  ip('-n', ns, 'link', 'set', 'lo', 'up');
  const http = NsHttp.open(t, ns);
  const port = await http.hold(0, '127.0.0.1');
  const dir = tempDir(t);
  const pluginDir = path.join(dir, 'dp');
  const kubelet = await KubeletStandIn.start(pluginDir);
  t.teardown(() => kubelet.stop());
  const before = ipLinkNames(ns);
  const daemon = spawnDaemon(
    t,
    ns,
    [
      '--device-plugin-path',
      pluginDir,
      '--state-dir',
      path.join(dir, 'state'),
      '--metrics-listen',
      `127.0.0.1:${port}`,
      '--metrics-on-error',
      'exit',
    ],
    conf(),
  );
  const { code } = await daemon.exited;
  t.equal(code, 1, 'exit code 1');
  t.equal(daemon.stderr, `macvtap-deviceplugin: cannot listen on 127.0.0.1:${port}: the port is already in use (EADDRINUSE)\n`, 'one line');
  t.same(kubelet.registrations, [], 'nothing registered');
  t.same(fs.readdirSync(pluginDir).sort(), ['kubelet.sock'], 'no plugin socket left');
  t.same(ipLinkNames(ns), before, 'host links unchanged');
});

t.test('bad endpoint and reclamation flags: exit 2 naming the flag and the value', { skip: rootOnly }, async (t) => {
  const { ns } = makeLowerNetns(t);
  const dir = tempDir(t);
  const before = ipLinkNames(ns);
  const cases: [string[], string][] = [
    [['--metrics-listen', 'localhost'], '--metrics-listen: expected [HOST:]PORT, got "localhost"'],
    [['--metrics-listen', ':70000'], '--metrics-listen: port 70000 is above 65535'],
    [['--metrics-on-error', 'retry'], '--metrics-on-error must be disable or exit, got "retry"'],
    [['--reclaim', 'yes'], '--reclaim must be off, on or dry-run, got "yes"'],
    [['--reclaim-grace', '-5'], '--reclaim-grace must be a whole number of seconds from 1 to 604800, got "-5"'],
    [['--reclaim-interval', '0'], '--reclaim-interval must be a whole number of seconds from 1 to 86400, got "0"'],
  ];
  for (const [args, message] of cases) {
    const d = spawnDaemon(t, ns, ['--device-plugin-path', path.join(dir, 'dp'), '--state-dir', path.join(dir, 'state'), ...args], conf());
    const { code } = await d.exited;
    t.equal(code, 2, `${args.join(' ')}: exit 2`);
    t.equal(d.stderr, `macvtap-deviceplugin: ${message}\n`, `${args.join(' ')}: the message`);
  }
  t.notOk(fs.existsSync(path.join(dir, 'dp')), 'no device-plugin directory made');
  t.same(ipLinkNames(ns), before, 'host links unchanged');
});
