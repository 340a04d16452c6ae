/**
 * The end-to-end scenario of `npm start`, run as production runs it: the demo process spawns the real device
 * plugin and the real CNI executable, and moves real frames through /dev/tapN. Also: it leaves nothing behind
 * when interrupted, and refuses politely without root.
 */
import t, { Test } from 'tap';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as os from 'node:os';
import { buildSync } from 'esbuild';
import { ip, rootOnly } from '../support/kernel';

const ROOT = path.resolve(__dirname, '..', '..');
const DEMO = path.join(ROOT, 'dist', 'bin', 'demo.js');

/**
 * What the unprivileged run needs, in a world-readable temp dir: the checkout may sit where other users cannot
 * reach (a home directory, a `mktemp -d` dir), and then uid 65534 could run neither its node nor its demo. The
 * node binary is linked (same file system) or copied; the demo is bundled, so it needs nothing of the checkout.
 */
function unprivilegedCopy(t: Test): { node: string; demo: string } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mvt-demo-unpriv-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  fs.chmodSync(dir, 0o755);
  const node = path.join(dir, 'node');
  try {
    fs.linkSync(process.execPath, node);
  } catch {
    fs.copyFileSync(process.execPath, node);
    fs.chmodSync(node, 0o755);
  }
  const demo = path.join(dir, 'demo.js');
  buildSync({ entryPoints: [path.join(ROOT, 'bin', 'demo.ts')], bundle: true, platform: 'node', outfile: demo, logLevel: 'error' });
  fs.chmodSync(demo, 0o644);
  return { node, demo };
}

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
  pid: number;
}

function runDemo(opts: { interruptWhen?: RegExp; uid?: number; copy?: { node: string; demo: string } } = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    // An unprivileged child cannot write tap's coverage/processinfo files: `env -i` drops what tap injects.
    const { node, demo } = opts.copy ?? { node: process.execPath, demo: DEMO };
    const [cmd, args] = opts.uid === undefined ? [node, [demo]] : ['env', ['-i', `PATH=${process.env.PATH}`, node, demo]];
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], uid: opts.uid, gid: opts.uid });
    let stdout = '';
    let stderr = '';
    let interrupted = false;
    child.stdout.on('data', (d) => {
      stdout += d;
      if (opts.interruptWhen && !interrupted && opts.interruptWhen.test(stdout)) {
        interrupted = true;
        child.kill('SIGINT');
      }
    });
    child.stderr.on('data', (d) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr, pid: child.pid as number }));
  });
}

/** What a demo run with this pid could have left: its namespaces and any /dev/tap node it may have made. */
function leftovers(pid: number): string[] {
  const namespaces = ip('netns', 'list')
    .split('\n')
    .map((l) => l.split(' ')[0])
    .filter((n) => n.endsWith(`-${pid}`) && n.startsWith('mvtdemo-'));
  const scratch = fs
    .readdirSync('/tmp')
    // Only this run's (its pid is in the name): another demo may run at the same time.
    .filter((f) => f.startsWith(`macvtap-demo-${pid}-`))
    .map((f) => `/tmp/${f}`)
    .filter((d) => fs.existsSync(path.join(d, 'device-plugins')));
  return [...namespaces, ...scratch];
}

t.test('npm start runs the whole path and leaves nothing behind', { skip: rootOnly }, async (t) => {
  const run = await runDemo();
  t.equal(run.code, 0, `demo exits 0\n${run.stdout}\n${run.stderr}`);
  t.match(
    run.stdout,
    /kubelet stand-in receives Register\s+[\d.]+ ms\n\s+resource macvtap\.network\.kubevirt\.io\/dataplane, endpoint macvtap\.network\.kubevirt\.io_dataplane, version v1beta1/,
  );
  t.match(run.stdout, /dataplaneMvp0: Healthy, dataplaneMvp1: Healthy, dataplaneMvp2: Healthy, dataplaneMvp3: Healthy/);
  const spec = /DeviceSpec (\/dev\/tap(\d+)) -> \/dev\/tap\2 \(rw\)/.exec(run.stdout);
  t.ok(spec, 'Allocate answered a DeviceSpec for /dev/tapN');
  t.match(run.stdout, /interface net1 mac 02:6d:76:74:00:01 in \/var\/run\/netns\/mvtdemo-pod-\d+/);
  t.match(run.stdout, /net1 \(host name was mvtcc7b47d9091b\): ifindex \d+, 02:6d:76:74:00:01, mtu 1500, mode bridge, UP/);
  t.match(run.stdout, /pod -> LAN.*\n\s+60 bytes, 02:6d:76:74:00:01 -> 02:6c:61:6e:00:01, ethertype 0x88b5/);
  t.match(run.stdout, /LAN -> pod.*\n\s+60 bytes, 02:6c:61:6e:00:01 -> 02:6d:76:74:00:01, ethertype 0x88b5/);
  t.match(run.stdout, /All steps passed/);
  t.same(leftovers(run.pid), [], 'no namespace or scratch directory left');
  if (spec) t.notOk(fs.existsSync(spec[1]), `${spec[1]} is gone with its macvtap`);
});

t.test('Ctrl-C in the middle tears everything down', { skip: rootOnly }, async (t) => {
  const run = await runDemo({ interruptWhen: /Allocate dataplaneMvp0 for the pod/ });
  t.equal(run.code, 130, `interrupted demo exits 130\n${run.stdout}\n${run.stderr}`);
  t.match(run.stderr, /SIGINT: tearing everything down/);
  t.notMatch(run.stdout, /All steps passed/);
  t.same(leftovers(run.pid), [], 'no namespace or scratch directory left');
});

t.test('without root it says so in one line and exits non-zero', { skip: rootOnly }, async (t) => {
  const run = await runDemo({ uid: 65534, copy: unprivilegedCopy(t) });
  t.equal(run.code, 1);
  t.equal(run.stdout, '');
  t.equal(run.stderr.trim().split('\n').length, 1, 'one line');
  t.match(run.stderr, /needs root/);
  t.notMatch(run.stderr, /\n\s+at /, 'no stack trace');
});
