/**
 * The CNI plugin compiled with Bun (`npm run build:host:bun`: dist/host-bun/macvtap), the alternative runtime the
 * README's CNI "Speed" section measures. Not shipped: this checks that what was measured is the same plugin,
 * answering VERSION exactly as the shipped Node executable does and doing a real ADD and DEL with the addon
 * embedded in it. Skipped, with the reason, where the pinned Bun package (@oven/bun-linux-x64) is not installed.
 */
import t from 'tap';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { claimIfindexes, ip, ipLink, makeLowerNetns, makeNetns, rootOnly, sysfsTapDev } from '../support/kernel';
import { buildHost, HOST_ARCH, hostDir, ROOT, type Run } from './build';

const BUN = path.join(ROOT, 'node_modules', '@oven', 'bun-linux-x64', 'bin', 'bun');
const BUN_EXE = path.join(ROOT, 'dist', 'host-bun', 'macvtap');
const NODE_EXE = path.join(hostDir(HOST_ARCH), 'macvtap');

const absent =
  HOST_ARCH !== 'x64'
    ? 'the pinned Bun package is for linux-x64 only'
    : !fs.existsSync(BUN)
      ? `${path.relative(ROOT, BUN)} is not installed (npm ci brings it on x64, through deploy/bun)`
      : false;

function spawnRun(cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv; input?: string } = {}): Run {
  const r = spawnSync(cmd, args, { cwd: '/', encoding: 'utf8', timeout: 60_000, env: opts.env, input: opts.input ?? '' });
  return { status: r.status, stdout: r.stdout ?? '', stderr: `${r.stderr ?? ''}${r.error ? String(r.error) : ''}` };
}

// Both builds are reused when up to date (build-host compares hashes; Bun's compile takes about a second).
const bunBuild = absent ? undefined : spawnRun(process.execPath, [path.join(ROOT, 'deploy', 'build-host-bun.mjs')]);
const bunBuilt = bunBuild?.status === 0;

t.test('build:host:bun makes an executable', { skip: absent }, (t) => {
  t.equal(bunBuild?.status, 0, `build-host-bun: ${bunBuild?.stderr}`);
  t.match(bunBuild?.stdout ?? '', /Bun 1\.4\.5/, 'with the pinned Bun');
  if (bunBuilt) t.equal(fs.statSync(BUN_EXE).mode & 0o111, 0o111, 'dist/host-bun/macvtap is executable');
  t.end();
});

t.test(
  'CNI_COMMAND=VERSION: the Bun executable answers exactly as the Node one',
  { skip: absent || (!bunBuilt && 'build failed') },
  (t) => {
    const nodeBuild = buildHost(HOST_ARCH, ['--only=macvtap']);
    t.equal(nodeBuild.status, 0, `build-host: ${nodeBuild.stderr}`);
    if (nodeBuild.status !== 0) return t.end();
    // A bare environment, as a container runtime gives it: nothing but CNI_COMMAND.
    const env = { CNI_COMMAND: 'VERSION' };
    const ours = spawnRun(BUN_EXE, [], { env });
    const shipped = spawnRun(NODE_EXE, [], { env });
    t.equal(ours.status, 0, ours.stderr);
    t.equal(shipped.status, 0, shipped.stderr);
    t.equal(ours.stdout, shipped.stdout, 'byte for byte the same stdout');
    t.same((JSON.parse(ours.stdout) as { supportedVersions: string[] }).supportedVersions.at(-1), '1.1.0');
    t.equal(ours.stderr, '', 'and nothing on stderr');
    t.end();
  },
);

t.test(
  'the Bun executable ADDs and DELs a prepared macvtap (the embedded addon loads)',
  { skip: absent || rootOnly || (!bunBuilt && 'build failed') },
  (t) => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'macvtap-bun-'));
    t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
    const host = makeLowerNetns(t, { prefix: 'mvtbun' });
    const pod = makeNetns(t, 'mvtbunpod');
    const [ifindex] = claimIfindexes(t, 1);
    ip('-n', host.ns, 'link', 'add', 'link', host.lower, 'name', 'mvtbun0', 'index', String(ifindex), 'type', 'macvtap', 'mode', 'bridge');
    // A private TMPDIR: where Bun writes the embedded addon to dlopen it.
    const tmp = path.join(dir, 'tmp');
    fs.mkdirSync(tmp);
    const config = JSON.stringify({ cniVersion: '1.1.0', name: 'bunnet', type: 'macvtap', deviceID: 'mvtbun0', mac: '02:00:5e:00:53:02' });
    const env = {
      PATH: '/usr/sbin:/usr/bin:/sbin:/bin',
      TMPDIR: tmp,
      CNI_CONTAINERID: 'buntest1',
      CNI_NETNS: `/var/run/netns/${pod}`,
      CNI_IFNAME: 'net1',
      CNI_PATH: '/opt/cni/bin',
      MACVTAP_CNI_STATE_DIR: path.join(dir, 'state'),
      // No kubelet here: the ownership check has its own tests (test/security).
      MACVTAP_CNI_OWNERSHIP: 'off',
    };
    // Run as installed: a copy outside the repository, which is hidden under an empty tmpfs (in a private mount
    // namespace), so the addon can only come from inside the executable.
    const exe = path.join(dir, 'macvtap');
    fs.copyFileSync(BUN_EXE, exe);
    fs.chmodSync(exe, 0o755);
    // A host configuration file next to the executable, as on a node: its tap owner must reach /dev/tapN.
    fs.writeFileSync(path.join(dir, 'macvtap.conf.json'), JSON.stringify({ tapOwner: 4242, tapGroup: 4243 }), { mode: 0o644 });
    const script = `mount -t tmpfs -o size=1m tmpfs "$1"; shift; exec "$@"`;
    const inHost = (command: string): Run =>
      spawnRun('unshare', ['--mount', '--propagation', 'private', 'sh', '-ec', script, 'sh', ROOT, 'ip', 'netns', 'exec', host.ns, exe], {
        env: { ...env, CNI_COMMAND: command },
        input: config,
      });

    const add = inHost('ADD');
    t.equal(add.status, 0, add.stderr || add.stdout);
    if (add.status !== 0) return t.end();
    t.same((JSON.parse(add.stdout) as { interfaces: unknown }).interfaces, [
      { name: 'net1', mac: '02:00:5e:00:53:02', sandbox: env.CNI_NETNS, mtu: 1500 },
    ]);
    // The oracle: iproute2's view, not the plugin's.
    const link = ipLink(pod, 'net1');
    t.equal(link?.linkinfo?.info_kind, 'macvtap', 'the macvtap is in the pod namespace as net1');
    t.equal(link?.ifindex, ifindex, 'the same device (ifindex)');
    t.equal(link?.address, '02:00:5e:00:53:02');
    t.ok(link?.flags.includes('UP'), 'and up');
    t.notOk(ipLink(host.ns, 'mvtbun0'), 'gone from the host namespace');
    const node = fs.statSync(`/dev/tap${ifindex}`);
    t.same([node.uid, node.gid], [4242, 4243], '/dev/tapN owned as the macvtap.conf.json next to the executable says');
    t.equal(`${node.rdev >> 8}:${node.rdev & 0xff}`, sysfsTapDev(pod, 'net1', ifindex), "/dev/tapN is this macvtap's char device");

    const del = inHost('DEL');
    t.equal(del.status, 0, del.stderr || del.stdout);
    t.equal(del.stdout, '');
    t.notOk(ipLink(pod, 'net1'), 'DEL took net1 out of the pod');
    t.equal(ipLink(host.ns, 'mvtbun0')?.ifindex, ifindex, 'back in the host namespace under its name');
    // Bun's own .node handling would leave $TMPDIR/.bun-*.node behind; the build's loader removes its copy.
    t.same(fs.readdirSync(tmp), [], 'the extracted addon was removed from TMPDIR');
    t.end();
  },
);
