/**
 * How the CNI executable starts (deploy/build-host.mjs, shortLivedStart): one V8 worker; the hash seed of
 * Node's snapshot, with every stdin of more strings than lib/cni/hash-seed.ts allows re-run under a random
 * seed; NODE_OPTIONS of the runtime's environment ignored. Run as production runs them: a copy of the built
 * executable, a bare environment, a real ADD and DEL in test namespaces, checked with iproute2.
 */
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import t from 'tap';
import { MAX_FIXED_SEED_STRINGS } from '../../lib/cni/hash-seed';
import { claimIfindexes, ip, ipLink, makeLowerNetns, makeNetns, rootOnly } from '../support/kernel';

const ROOT = path.resolve(__dirname, '..', '..');
const HOST_DIR = path.join(ROOT, 'dist', 'host');
const BUNDLE = path.join(ROOT, 'dist', 'bin', 'macvtap.js');
const build = spawnSync(process.execPath, [path.join(ROOT, 'deploy', 'build-host.mjs'), '--only=macvtap'], {
  cwd: ROOT,
  encoding: 'utf8',
  timeout: 300_000,
});
const skipBuild = build.status === 0 ? false : `build failed: ${build.stderr}`;
const RERUN = 're-run with a random hash seed';

/** A copy of the CNI executable outside the repository (removed at teardown). */
function installCopy(t: { teardown(fn: () => void): void }): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'macvtap-start-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const exe = path.join(dir, 'macvtap');
  fs.copyFileSync(path.join(HOST_DIR, 'macvtap'), exe);
  fs.chmodSync(exe, 0o755);
  return exe;
}

/** `count` more JSON strings than a configuration has of its own (an unknown key the plugin ignores). */
function padded(config: Record<string, unknown>, count: number): string {
  return JSON.stringify({ ...config, padding: Array.from({ length: count }, (_, i) => `p${i}`) });
}

function runExe(argv: string[], env: Record<string, string>, stdin: string): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(argv[0], argv.slice(1), { env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', ...env }, input: stdin, encoding: 'utf8' });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** The names of a running process's threads (/proc/PID/task/TID/comm). */
function threadNames(pid: number): string[] {
  const dir = `/proc/${pid}/task`;
  return fs.readdirSync(dir).map((tid) => fs.readFileSync(path.join(dir, tid, 'comm'), 'utf8').trim());
}

t.test('the build records the start-up flags', { skip: skipBuild }, (t) => {
  const info = JSON.parse(fs.readFileSync(path.join(HOST_DIR, 'macvtap.build.json'), 'utf8')) as { execArgv: string[] };
  t.same(info.execArgv, ['--v8-pool-size=1', '--no-rehash-snapshot'], 'one V8 worker, the snapshot hash seed');
  t.end();
});

t.test('the CNI executable starts one V8 worker thread, not the default four', { skip: skipBuild }, async (t) => {
  // ADD waits for its configuration on stdin; while it waits, every thread Node starts at boot exists.
  const child = spawn(installCopy(t), [], { env: { CNI_COMMAND: 'ADD' }, stdio: ['pipe', 'pipe', 'pipe'] });
  t.teardown(() => child.kill('SIGKILL'));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  let names: string[] = [];
  for (let i = 0; i < 60 && !names.includes('SignalInspector'); i++) {
    await new Promise((r) => setTimeout(r, 50));
    names = threadNames(child.pid ?? 0);
  }
  t.ok(names.includes('node-MainThread'), `threads: ${names.join(', ')}`);
  t.equal(names.filter((n) => n === 'node-V8Worker').length, 1, 'one V8 platform worker');
  child.stdin.end('{');
  t.equal(await exited, 1, 'and it still answers (a malformed configuration is an error, not a hang)');
});

t.test('VERSION: a small stdin is answered in place, a large one by a re-run, with the same answer', { skip: skipBuild }, (t) => {
  const exe = installCopy(t);
  const env = { CNI_COMMAND: 'VERSION', MACVTAP_SEA_DEBUG: '1' };
  const small = runExe([exe], env, '{"cniVersion":"1.0.0"}');
  t.equal(small.status, 0);
  t.notMatch(small.stderr, RERUN, 'no re-run');
  t.match(small.stderr, 'bundle code cache used', 'the eager code cache was accepted under the start-up flags');

  const large = padded({ cniVersion: '1.0.0' }, MAX_FIXED_SEED_STRINGS);
  const big = runExe([exe], env, large);
  t.equal(big.status, 0);
  t.match(big.stderr, RERUN, 'more strings than the bound: re-run');
  t.notMatch(big.stderr, /warning/i, 'no warning from the re-run (its caches do not match its flags)');
  const viaBundle = runExe([process.execPath, BUNDLE], { CNI_COMMAND: 'VERSION' }, large);
  t.equal(big.stdout, viaBundle.stdout, "the same answer as the bundle's for that stdin");
  t.equal((JSON.parse(big.stdout) as { cniVersion: string }).cniVersion, '1.0.0', 'for the version asked');

  const bundleDebug = runExe([process.execPath, BUNDLE], env, large);
  t.notMatch(bundleDebug.stderr, RERUN, 'run as node dist/bin/macvtap.js (a random seed) nothing is re-run');
  t.end();
});

t.test("NODE_OPTIONS in the runtime's environment does not reach the executable", { skip: skipBuild }, (t) => {
  const exe = installCopy(t);
  const r = runExe([exe], { CNI_COMMAND: 'VERSION', NODE_OPTIONS: '--require /nonexistent/preload.js' }, '{"cniVersion":"1.1.0"}');
  t.equal(r.status, 0, `answered (${r.stderr})`);
  t.equal((JSON.parse(r.stdout) as { cniVersion: string }).cniVersion, '1.1.0');
  const viaBundle = runExe([process.execPath, BUNDLE], { CNI_COMMAND: 'VERSION', NODE_OPTIONS: '--require /nonexistent/preload.js' }, '{}');
  t.not(viaBundle.status, 0, 'the same variable does break a plain node (the check can fail)');
  t.end();
});

t.test(
  'ADD and DEL of a configuration past the bound run under a random seed; a bad one changes nothing',
  { skip: rootOnly || skipBuild },
  (t) => {
    const exe = installCopy(t);
    const host = makeLowerNetns(t, { prefix: 'mvtst' });
    const pod = makeNetns(t, 'mvtstpod');
    const [ifindex] = claimIfindexes(t, 1);
    ip('-n', host.ns, 'link', 'add', 'link', host.lower, 'name', 'mvtst0', 'index', String(ifindex), 'type', 'macvtap', 'mode', 'bridge');
    const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'macvtap-start-state-'));
    t.teardown(() => fs.rmSync(stateDir, { recursive: true, force: true }));
    const env = {
      CNI_CONTAINERID: 'starttest1',
      CNI_NETNS: `/var/run/netns/${pod}`,
      CNI_IFNAME: 'net1',
      MACVTAP_CNI_STATE_DIR: stateDir,
      MACVTAP_SEA_DEBUG: '1',
    };
    const inHost = (command: string, stdin: string): { status: number | null; stdout: string; stderr: string } =>
      runExe(['ip', 'netns', 'exec', host.ns, exe], { ...env, CNI_COMMAND: command }, stdin);
    const base = { cniVersion: '1.1.0', name: 'startnet', type: 'macvtap', deviceID: 'mvtst0', mac: '02:00:5e:00:53:21' };
    const before = ipLink(host.ns, 'mvtst0');

    const bad = padded({ ...base, mtu: 'jumbo' }, MAX_FIXED_SEED_STRINGS);
    const refused = inHost('ADD', bad);
    t.match(refused.stderr, RERUN, 'a bad configuration past the bound is re-run too');
    t.equal(refused.status, 1, 'and refused');
    const error = JSON.parse(refused.stdout) as { code: number; msg: string };
    const viaBundle = runExe(['ip', 'netns', 'exec', host.ns, process.execPath, BUNDLE], { ...env, CNI_COMMAND: 'ADD' }, bad);
    t.equal(error.code, (JSON.parse(viaBundle.stdout) as { code: number }).code, "with the bundle's error code");
    t.not(error.code, 199, 'an input error, not an internal one');
    t.match(error.msg, /mtu/, 'naming the setting');
    t.same(ipLink(host.ns, 'mvtst0'), before, 'the macvtap is untouched in the host namespace');
    t.notOk(ipLink(pod, 'net1'), 'and not in the pod');

    const good = padded(base, MAX_FIXED_SEED_STRINGS);
    const add = inHost('ADD', good);
    t.equal(add.status, 0, add.stderr || add.stdout);
    t.match(add.stderr, RERUN, 'ADD re-run under a random seed');
    t.same((JSON.parse(add.stdout) as { interfaces: unknown }).interfaces, [
      { name: 'net1', mac: '02:00:5e:00:53:21', sandbox: env.CNI_NETNS, mtu: 1500 },
    ]);
    const link = ipLink(pod, 'net1');
    t.equal(link?.ifindex, ifindex, 'the macvtap is in the pod as net1');
    t.equal(link?.address, '02:00:5e:00:53:21');
    t.notOk(ipLink(host.ns, 'mvtst0'), 'and gone from the host namespace');

    const del = inHost('DEL', good);
    t.equal(del.status, 0, del.stderr || del.stdout);
    t.match(del.stderr, RERUN, 'DEL re-run as well');
    t.notOk(ipLink(pod, 'net1'), 'DEL took net1 out of the pod');
    t.equal(ipLink(host.ns, 'mvtst0')?.ifindex, ifindex, 'back in the host namespace under its name');

    const small = inHost('ADD', JSON.stringify(base));
    t.equal(small.status, 0, small.stderr || small.stdout);
    t.notMatch(small.stderr, RERUN, 'an ordinary configuration is not re-run');
    t.equal(inHost('DEL', JSON.stringify(base)).status, 0, 'and its DEL succeeds');
    t.end();
  },
);
