// The host configuration (lib/cni/host-config.ts): the file next to the executable is what the plugin obeys, only
// if root alone could have written it; anything doubtful is code 111 (never a silent fallback to defaults); the
// environment overrides it; a log file that is a FIFO cannot hang the plugin.
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import t from 'tap';
import { rootOnly } from '../support/kernel';
import { PLUGIN } from '../cni/harness';
import { device, linkOf, makeStage, nad, refused, run, Run, snapshot, Stage, TENANT_UID, RESOURCE } from './helpers';

/** The plugin "installed" in `dir` (a symlink to the bundle: the executable's path is dir/macvtap.js). */
function installIn(dir: string): string {
  const exe = path.join(dir, 'macvtap.js');
  fs.symlinkSync(PLUGIN, exe);
  return exe;
}

function withFile(s: Stage, contents: string, mode = 0o644): string {
  const dir = path.join(s.scratch, `bin${Math.random().toString(16).slice(2, 8)}`);
  fs.mkdirSync(dir, { mode: 0o755 });
  fs.writeFileSync(path.join(dir, 'macvtap.conf.json'), contents, { mode });
  fs.chmodSync(path.join(dir, 'macvtap.conf.json'), mode);
  return dir;
}

/** Runs ADD with the plugin installed in `dir`, with no MACVTAP_CNI_* settings but `extra`. */
function runInstalled(s: Stage, dir: string, extra: Record<string, string> = {}): Run {
  const exe = fs.existsSync(path.join(dir, 'macvtap.js')) ? path.join(dir, 'macvtap.js') : installIn(dir);
  const r = spawnSync('ip', ['netns', 'exec', s.host, process.execPath, exe], {
    env: {
      PATH: process.env.PATH,
      CNI_COMMAND: 'ADD',
      CNI_CONTAINERID: 'c0ffee01',
      CNI_IFNAME: 'net1',
      CNI_NETNS: s.netns,
      CNI_ARGS: `IgnoreUnknown=true;K8S_POD_NAMESPACE=tenant;K8S_POD_NAME=vm;K8S_POD_UID=${TENANT_UID}`,
      ...extra,
    },
    input: JSON.stringify(nad({ deviceID: 'hostcfgMvp0' })),
    encoding: 'utf8',
    timeout: 20_000,
  });
  let json: Run['json'];
  try {
    json = JSON.parse(r.stdout) as Run['json'];
  } catch {
    json = undefined;
  }
  return { status: r.status, stdout: r.stdout, stderr: r.stderr, json, timedOut: r.error !== undefined };
}

t.test('the file next to the executable sets the state dir and enforces ownership', { skip: rootOnly }, (t) => {
  const s = makeStage(t);
  const d = device(s, 'hostcfgMvp0', s.indexes[0], '02:00:00:00:33:01');
  const dir = withFile(s, JSON.stringify({ stateDir: s.stateDir, kubeletRoot: s.kubeletRoot, ownership: 'enforce' }));
  const before = snapshot(s);
  // No checkpoint yet: enforce refuses (and proves the file was read: the default kubelet root is elsewhere).
  const r = runInstalled(s, dir);
  refused(t, r, 110, /cannot verify that this pod holds device "hostcfgMvp0".*does not exist/, 'no checkpoint');
  t.match(r.json?.msg, s.kubeletRoot, 'the kubelet root from the file');
  t.equal(snapshot(s), before, 'nothing changed');
  s.checkpoint.assign(TENANT_UID, 'compute', RESOURCE, [d.deviceID]);
  s.checkpoint.write();
  const ok = runInstalled(s, dir);
  t.equal(ok.status, 0, `ADD of the pod's own device (${ok.stdout})`);
  t.ok(fs.existsSync(path.join(s.stateDir, 'attachments', `${d.deviceID}+c0ffee01+net1.json`)), 'recorded in the stateDir of the file');
  t.equal(linkOf(s.pod, 'net1').ifindex, d.index);
  // The runtime's environment overrides the file (the node admin's too).
  const off = runInstalled(s, dir, { MACVTAP_CNI_OWNERSHIP: 'bogus' });
  refused(t, off, 4, /MACVTAP_CNI_OWNERSHIP must be one of enforce, warn, off/, 'a bad environment value');
  t.end();
});

t.test('a host configuration someone else could have written is refused (111), never trusted', { skip: rootOnly }, (t) => {
  const s = makeStage(t);
  device(s, 'hostcfgMvp0', s.indexes[0], '02:00:00:00:33:02');
  const good = JSON.stringify({ stateDir: s.stateDir, kubeletRoot: s.kubeletRoot, ownership: 'off' });
  const before = snapshot(s);
  const cases: [string, () => string, RegExp][] = [
    ['group-writable file', () => withFile(s, good, 0o664), /is writable by its group \(mode 664\)/],
    ['world-writable file', () => withFile(s, good, 0o646), /is writable by everyone/],
    [
      'world-writable directory',
      () => {
        const dir = withFile(s, good);
        fs.chmodSync(dir, 0o777);
        return dir;
      },
      /directory .* is writable by everyone/,
    ],
    [
      'a symlink',
      () => {
        const dir = withFile(s, good);
        fs.renameSync(path.join(dir, 'macvtap.conf.json'), path.join(dir, 'real.json'));
        fs.symlinkSync(path.join(dir, 'real.json'), path.join(dir, 'macvtap.conf.json'));
        return dir;
      },
      /is a symlink/,
    ],
    [
      'owned by another user',
      () => {
        const dir = withFile(s, good);
        fs.chownSync(path.join(dir, 'macvtap.conf.json'), 65534, 65534);
        return dir;
      },
      /is owned by uid 65534, not root/,
    ],
    ['not JSON', () => withFile(s, '{"ownership": '), /is not valid JSON/],
    ['not an object', () => withFile(s, '["enforce"]'), /is not a JSON object/],
    ['a misspelt key', () => withFile(s, '{"ownershp": "off"}'), /unknown key "ownershp"/],
    ['a bad value', () => withFile(s, '{"ownership": "sometimes"}'), /ownership must be one of enforce, warn, off/],
    ['a relative stateDir', () => withFile(s, '{"stateDir": "state"}'), /stateDir must be an absolute path/],
    ['a stateDir with ..', () => withFile(s, '{"stateDir": "/var/lib/../../tmp"}'), /stateDir must be an absolute path/],
  ];
  for (const [label, make, msg] of cases) refused(t, runInstalled(s, make()), 111, msg, label);
  const fifoDir = withFile(s, good);
  fs.rmSync(path.join(fifoDir, 'macvtap.conf.json'));
  execFileSync('mkfifo', ['-m', '0644', path.join(fifoDir, 'macvtap.conf.json')]);
  refused(t, runInstalled(s, fifoDir), 111, /is a FIFO, not a regular file/, 'a FIFO (refused without blocking)');
  t.equal(snapshot(s), before, 'nothing changed by any of them');
  t.end();
});

t.test("a FIFO as the host's log file does not hang the plugin: it logs to stderr", { skip: rootOnly }, (t) => {
  const s = makeStage(t);
  const d = device(s, 'hostcfgMvp1', s.indexes[0], '02:00:00:00:33:03');
  const fifo = path.join(s.scratch, 'log.fifo');
  execFileSync('mkfifo', [fifo]);
  const r = run(s, { command: 'ADD', config: nad({ deviceID: d.deviceID }), ownership: 'off', env: { MACVTAP_CNI_LOG_FILE: fifo } });
  t.notOk(r.timedOut, 'no hang');
  t.equal(r.status, 0, r.stdout);
  t.match(r.stderr, /cannot use the log file; logging to stderr/, 'says why on stderr');
  t.equal(run(s, { command: 'DEL', config: nad({ deviceID: d.deviceID }), ownership: 'off' }).status, 0);
  t.end();
});

const SEA = path.resolve(__dirname, '..', '..', 'dist', 'host', 'macvtap');

t.test(
  'the single executable reads macvtap.conf.json next to itself',
  { skip: rootOnly || (!fs.existsSync(SEA) && 'no dist/host/macvtap') },
  (t) => {
    // A hard link in a directory of its own (its path, not the original's, is the executable's: /proc/self/exe).
    const dir = fs.mkdtempSync(path.join(path.dirname(SEA), '.sec-'));
    t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
    const exe = path.join(dir, 'macvtap');
    fs.linkSync(SEA, exe);
    const state = path.join(dir, 'state');
    fs.writeFileSync(path.join(dir, 'macvtap.conf.json'), JSON.stringify({ stateDir: state }), { mode: 0o644 });
    const status = (): ReturnType<typeof spawnSync> =>
      spawnSync(exe, [], { env: { CNI_COMMAND: 'STATUS' }, input: JSON.stringify(nad()), encoding: 'utf8', timeout: 20_000 });
    const ok = status();
    t.equal(ok.status, 0, `STATUS (${String(ok.stdout)})`);
    t.ok(fs.statSync(path.join(state, 'locks')).isDirectory(), "STATUS probed the file's stateDir");
    fs.writeFileSync(path.join(dir, 'macvtap.conf.json'), '{"ownershp": "off"}');
    const bad = status();
    t.equal(bad.status, 1);
    t.match(JSON.parse(String(bad.stdout)), { code: 111, msg: /unknown key "ownershp"/ }, 'a misspelt key: 111');
    t.end();
  },
);
