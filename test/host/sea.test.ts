/**
 * The self-contained host executables (`npm run build:host`: dist/host/macvtap, dist/host/macvtap-deviceplugin)
 * run as they do on a Kubernetes node: copied out of the repository, with a bare environment (`env -i`), and
 * with no Node anywhere (each run happens in a private mount namespace where the repository is hidden under an
 * empty tmpfs and every `node` binary on PATH is covered by /dev/null). The CNI plugin does a real ADD and DEL
 * in network namespaces; the device plugin registers with the kubelet stand-in and answers Allocate.
 *
 * The build is reused when up to date (build-host compares a hash of everything that goes into it).
 */
import t from 'tap';
import { ChildProcess, spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { buildSync } from 'esbuild';
import { parseDocument } from 'yaml';
import { claimIfindexes, ip, ipLink, ipLinks, makeLowerNetns, makeNetns, rootOnly, sysfsTapDev } from '../support/kernel';
import { KubeletStandIn } from '../support/kubelet';

const ROOT = path.resolve(__dirname, '..', '..');
const HOST_DIR = path.join(ROOT, 'dist', 'host');
const SEA_FUSE = 'NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2';
const RESOURCE = 'macvtap.network.kubevirt.io/seatest';

const build = spawnSync(process.execPath, [path.join(ROOT, 'deploy', 'build-host.mjs')], { cwd: ROOT, encoding: 'utf8', timeout: 300_000 });
const built = build.status === 0;

/**
 * Every `node` on PATH, as real paths (to be covered inside the private mount namespace). The pinned runtime
 * (node_modules/.bin/node, first on PATH under npm) is inside the repository, which is hidden as a whole.
 */
const nodeBinaries = [
  ...new Set(
    spawnSync('sh', ['-c', 'which -a node nodejs 2>/dev/null'], { encoding: 'utf8' })
      .stdout.split('\n')
      .filter(Boolean)
      .flatMap((p) => [p, fs.realpathSync(p)]),
  ),
].filter((p) => !p.startsWith(`${ROOT}/`));
const PINNED = `v${(JSON.parse(fs.readFileSync(path.join(ROOT, 'deploy', 'runtime', 'package.json'), 'utf8')) as { version: string }).version}`;

/** Copies both executables into a fresh directory outside the repository (removed at teardown). */
function installCopies(t: { teardown(fn: () => void): void }): { dir: string; cni: string; dp: string } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'macvtap-sea-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  for (const name of ['macvtap', 'macvtap-deviceplugin']) fs.copyFileSync(path.join(HOST_DIR, name), path.join(dir, name));
  for (const name of ['macvtap', 'macvtap-deviceplugin']) fs.chmodSync(path.join(dir, name), 0o755);
  return { dir, cni: path.join(dir, 'macvtap'), dp: path.join(dir, 'macvtap-deviceplugin') };
}

/** The parts of deploy/base/daemonset.yaml this file reads. */
interface DaemonSetDoc {
  spec: {
    template: {
      spec: {
        containers: { command: string[]; volumeMounts: { name: string; mountPath: string }[] }[];
        volumes: { name: string; configMap?: object }[];
      };
    };
  };
}

const q = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`;

/**
 * argv of a command run where there is no Node: a private mount namespace with the repository under an
 * empty tmpfs and each node binary covered by /dev/null (checked: `node` must fail there), optionally a
 * noexec tmpfs at `noexecDir`, then `ip netns exec NS` (if given) and `env -i VARS... command`.
 */
function withoutNode(opts: { ns?: string; env: Record<string, string>; argv: string[]; noexecDir?: string }): string[] {
  const setup = [
    `mount -t tmpfs -o size=1m tmpfs ${q(ROOT)}`,
    ...nodeBinaries.map((n) => `mount --bind /dev/null ${q(n)}`),
    'if node -e 0 >/dev/null 2>&1; then echo "node still runs" >&2; exit 99; fi',
    ...(opts.noexecDir ? [`mount -t tmpfs -o noexec,size=4m tmpfs ${q(opts.noexecDir)}`] : []),
  ];
  const run = [
    ...(opts.ns ? ['ip', 'netns', 'exec', opts.ns] : []),
    'env',
    '-i',
    ...Object.entries(opts.env).map(([k, v]) => `${k}=${v}`),
    ...opts.argv,
  ];
  return ['unshare', '--mount', '--propagation', 'private', '/bin/sh', '-ec', `${setup.join('\n')}\nexec ${run.map(q).join(' ')}`];
}

function runWithoutNode(opts: Parameters<typeof withoutNode>[0] & { stdin?: string }): {
  status: number | null;
  stdout: string;
  stderr: string;
} {
  const [cmd, ...args] = withoutNode(opts);
  const r = spawnSync(cmd, args, { input: opts.stdin ?? '', encoding: 'utf8', timeout: 30_000, cwd: '/' });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

t.test('build:host makes two stripped single-executable applications', (t) => {
  t.equal(build.status, 0, `build-host: ${build.stderr}`);
  if (!built) return t.end();
  t.comment(build.stdout.trim());
  for (const name of ['macvtap', 'macvtap-deviceplugin']) {
    const file = path.join(HOST_DIR, name);
    const st = fs.statSync(file);
    t.equal(st.mode & 0o111, 0o111, `${name} is executable`);
    // Node 26's stripped binary is 112 MiB of the 113; the rest is the bundle and the addon.
    t.ok(st.size < 125 * 1024 * 1024, `${name} is ${(st.size / 1048576).toFixed(1)} MiB (< 125 MiB)`);
    t.ok(fs.readFileSync(file).includes(`${SEA_FUSE}:1`), `${name} has the SEA fuse flipped (a blob is injected)`);
    const sections = spawnSync('readelf', ['-S', '-W', file], { encoding: 'utf8' }).stdout;
    t.notMatch(sections, /\.symtab\b/, `${name} is stripped`);
    const info = JSON.parse(fs.readFileSync(path.join(HOST_DIR, `${name}.build.json`), 'utf8')) as {
      size: number;
      node: string;
      platform: string;
    };
    t.equal(info.size, st.size, 'the build record describes this file');
    t.equal(info.node, PINNED, `it embeds the pinned Node ${PINNED}`);
    t.equal(info.platform, `linux-${process.arch}`);
  }
  const again = spawnSync(process.execPath, [path.join(ROOT, 'deploy', 'build-host.mjs')], { cwd: ROOT, encoding: 'utf8' });
  t.equal(again.status, 0);
  t.match(again.stdout, /macvtap: .* up to date\n.*macvtap-deviceplugin: .* up to date/, 'an unchanged tree is not rebuilt');
  t.end();
});

t.test(
  'the CNI plugin answers VERSION with no Node on the machine and a bare environment',
  { skip: rootOnly || (!built && 'build failed') },
  (t) => {
    const { cni } = installCopies(t);
    const r = runWithoutNode({ env: { CNI_COMMAND: 'VERSION' }, argv: [cni], stdin: '{"cniVersion":"1.0.0"}' });
    t.equal(r.status, 0, r.stderr);
    t.same(JSON.parse(r.stdout), { cniVersion: '1.0.0', supportedVersions: ['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'] });
    t.equal(r.stderr, '');

    const bad = runWithoutNode({ env: { CNI_COMMAND: 'ADD' }, argv: [cni], stdin: 'not json' });
    t.equal(bad.status, 1);
    t.match(JSON.parse(bad.stdout), { code: 6 }, 'an error result, code 6');
    t.notMatch(bad.stderr, /\n\s+at /, 'no stack trace');
    t.end();
  },
);

t.test(
  'the CNI plugin ADDs and DELs a prepared macvtap with no Node and a bare environment',
  { skip: rootOnly || (!built && 'build failed') },
  (t) => {
    const { dir, cni } = installCopies(t);
    const host = makeLowerNetns(t, { prefix: 'mvtsea' });
    const pod = makeNetns(t, 'mvtseapod');
    const [ifindex] = claimIfindexes(t, 1);
    ip('-n', host.ns, 'link', 'add', 'link', host.lower, 'name', 'mvtsea0', 'index', String(ifindex), 'type', 'macvtap', 'mode', 'bridge');
    const stateDir = path.join(dir, 'state');
    const tmp = path.join(dir, 'tmp');
    const noexec = path.join(dir, 'noexec');
    fs.mkdirSync(tmp);
    fs.mkdirSync(noexec);
    const config = JSON.stringify({
      cniVersion: '1.1.0',
      name: 'seanet',
      type: 'macvtap',
      deviceID: 'mvtsea0',
      mac: '02:00:5e:00:53:01',
    });
    const env = { CNI_CONTAINERID: 'seatest1', CNI_NETNS: `/var/run/netns/${pod}`, CNI_IFNAME: 'net1', MACVTAP_CNI_STATE_DIR: stateDir };

    // ADD with TMPDIR on a noexec file system: the embedded addon must be loaded from somewhere else.
    const add = runWithoutNode({
      ns: host.ns,
      env: { ...env, CNI_COMMAND: 'ADD', TMPDIR: noexec },
      argv: [cni],
      stdin: config,
      noexecDir: noexec,
    });
    t.equal(add.status, 0, add.stderr || add.stdout);
    t.same((JSON.parse(add.stdout) as { interfaces: unknown }).interfaces, [
      { name: 'net1', mac: '02:00:5e:00:53:01', sandbox: env.CNI_NETNS, mtu: 1500 },
    ]);
    const link = ipLink(pod, 'net1');
    t.equal(link?.linkinfo?.info_kind, 'macvtap', 'the macvtap is in the pod namespace as net1');
    t.equal(link?.ifindex, ifindex);
    t.equal(link?.address, '02:00:5e:00:53:01');
    t.ok(link?.flags.includes('UP'));
    t.notOk(ipLink(host.ns, 'mvtsea0'), 'and gone from the host namespace');
    const node = fs.statSync(`/dev/tap${ifindex}`);
    t.same([node.uid, node.gid], [107, 107], '/dev/tapN belongs to the qemu user');
    t.equal(`${node.rdev >> 8}:${node.rdev & 0xff}`, sysfsTapDev(pod, 'net1', ifindex), "/dev/tapN is this macvtap's char device");

    const del = runWithoutNode({ ns: host.ns, env: { ...env, CNI_COMMAND: 'DEL', TMPDIR: tmp }, argv: [cni], stdin: config });
    t.equal(del.status, 0, del.stderr || del.stdout);
    t.equal(del.stdout, '');
    t.notOk(ipLink(pod, 'net1'), 'DEL took net1 out of the pod');
    t.equal(ipLink(host.ns, 'mvtsea0')?.ifindex, ifindex, 'back in the host namespace under its name');

    t.same(fs.readdirSync(tmp), [], 'the extracted addon was removed from TMPDIR');
    t.same(
      fs.readdirSync('/run').filter((f) => f.startsWith('.macvtap-native-')),
      [],
      'and from /run, where the noexec TMPDIR sent it',
    );
    t.end();
  },
);

t.test(
  'the device plugin exits with one clear line on a bad configuration, with no Node',
  { skip: rootOnly || (!built && 'build failed') },
  (t) => {
    const { dp } = installCopies(t);
    // Entries upstream tolerates are skipped with a warning; what no device plugin can serve is fatal: JSON
    // that does not parse, and a configuration whose every entry is skipped.
    const r = runWithoutNode({ env: { DP_MACVTAP_CONF: '[{"name": "x"' }, argv: [dp] });
    t.equal(r.status, 2);
    t.equal(r.stderr.trim().split('\n').length, 1, 'one line');
    t.match(r.stderr, /DP_MACVTAP_CONF: not JSON/);
    const skipped = runWithoutNode({ env: { DP_MACVTAP_CONF: '[{"name": 5}]' }, argv: [dp] });
    t.equal(skipped.status, 2);
    t.match(skipped.stderr, /nothing to serve.*key "name" = 5/);
    const none = runWithoutNode({ env: {}, argv: [dp] });
    t.equal(none.status, 2);
    t.match(none.stderr, /no configuration/);
    t.end();
  },
);

/**
 * Writes `data` the way the kubelet fills a ConfigMap volume: files in a fresh timestamped directory, the
 * `..data` symlink switched to it by rename, and one `<key> -> ..data/<key>` symlink per key.
 */
function writeConfigMapVolume(dir: string, data: Record<string, string>, generation: number): void {
  fs.mkdirSync(dir, { recursive: true });
  const version = `..2026_11_28_00_00_0${generation}.${process.pid}`;
  fs.mkdirSync(path.join(dir, version));
  for (const [key, value] of Object.entries(data)) fs.writeFileSync(path.join(dir, version, key), value);
  fs.symlinkSync(version, path.join(dir, '..data_tmp'));
  fs.renameSync(path.join(dir, '..data_tmp'), path.join(dir, '..data'));
  for (const key of Object.keys(data))
    if (!fs.existsSync(path.join(dir, key))) fs.symlinkSync(path.join('..data', key), path.join(dir, key));
}

t.test(
  'the device plugin, run as the DaemonSet runs it, registers, allocates and follows its ConfigMap',
  { skip: rootOnly || (!built && 'build failed') },
  async (t) => {
    const { dir, dp } = installCopies(t);
    const host = makeLowerNetns(t, { prefix: 'mvtseadp' });
    const indexes = claimIfindexes(t, 2);
    const pluginDir = path.join(dir, 'device-plugins');
    const kubelet = await KubeletStandIn.start(pluginDir);
    t.teardown(() => kubelet.stop());

    const configDir = path.join(dir, 'etc-macvtap-cni');
    const resource = (name: string) => ({ name, lowerDevice: host.lower, mode: 'vepa', capacity: 2 });
    writeConfigMapVolume(configDir, { DP_MACVTAP_CONF: JSON.stringify([resource('seatest')]) }, 1);
    // The DaemonSet's command line, with this test's paths for the executable and the ConfigMap mount.
    const podSpec = (parseDocument(fs.readFileSync(path.join(ROOT, 'deploy', 'base', 'daemonset.yaml'), 'utf8')).toJS() as DaemonSetDoc)
      .spec.template.spec;
    const container = podSpec.containers[0];
    const configMount = container.volumeMounts.find((m) => podSpec.volumes.find((v) => v.name === m.name && v.configMap))?.mountPath ?? '';
    const command = container.command.map((arg, i) => (i === 0 ? dp : arg.replace(configMount, configDir)));
    t.ok(
      command.includes(path.join(configDir, 'DP_MACVTAP_CONF')),
      `the DaemonSet's command reads the ConfigMap: ${container.command.join(' ')}`,
    );
    const tmp = path.join(dir, 'tmp');
    fs.mkdirSync(tmp);
    const [cmd, ...args] = withoutNode({
      ns: host.ns,
      env: { TMPDIR: tmp },
      argv: [
        ...command,
        '--device-plugin-path',
        pluginDir,
        '--state-dir',
        path.join(dir, 'state'),
        '--ifindex-range',
        `${indexes[0]}-${indexes[1]}`,
      ],
    });
    const child: ChildProcess = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], cwd: '/' });
    let output = '';
    child.stdout!.on('data', (d) => (output += d));
    child.stderr!.on('data', (d) => (output += d));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    t.teardown(async () => {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGKILL');
        await exited;
      }
    });

    const reg = await kubelet.waitForRegistration(RESOURCE, 15_000);
    t.equal(reg.version, 'v1beta1');
    t.equal(reg.endpoint, 'macvtap.network.kubevirt.io_seatest');
    const devices = await kubelet.waitForDevices(RESOURCE, (d) => d.length === 2);
    t.same(
      devices.map((d) => [d.ID, d.health]),
      [
        ['seatestMvp0', 'Healthy'],
        ['seatestMvp1', 'Healthy'],
      ],
    );
    const answer = await kubelet.allocate(RESOURCE, [['seatestMvp0']]);
    const spec = answer.containerResponses[0].devices[0];
    const m = /^\/dev\/tap(\d+)$/.exec(spec.hostPath);
    t.ok(m, `a tap device: ${spec.hostPath}`);
    const ifindex = Number(m?.[1]);
    t.ok(indexes.includes(ifindex), 'with an ifindex from the given range');
    const made = ipLinks(host.ns).find((l) => l.ifindex === ifindex);
    t.equal(made?.linkinfo?.info_kind, 'macvtap');
    t.equal(made?.linkinfo?.info_data?.mode, 'vepa');

    // The ConfigMap changes (the kubelet swaps ..data): the new resource is offered without a restart.
    writeConfigMapVolume(configDir, { DP_MACVTAP_CONF: JSON.stringify([resource('seatest'), resource('seatest2')]) }, 2);
    const reg2 = await kubelet.waitForRegistration(`${RESOURCE}2`, 15_000);
    t.equal(reg2.endpoint, 'macvtap.network.kubevirt.io_seatest2', 'a resource added to the ConfigMap is registered live');

    child.kill('SIGTERM');
    t.equal(await exited, 0, `stops cleanly on SIGTERM: ${output.slice(-500)}`);
    t.same(
      fs.readdirSync(pluginDir).filter((f) => f !== 'kubelet.sock'),
      [],
      'and removes its sockets',
    );
    t.notMatch(output, /\n\s+at /, 'no stack trace');
    t.same(fs.readdirSync(tmp), [], 'the extracted addon and proto files were removed');
  },
);

t.test('build-host refuses an entry that carries its own copy of lib/netlink (the addon hook would miss it)', (t) => {
  const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'macvtap-sea-'));
  t.teardown(() => fs.rmSync(scratch, { recursive: true, force: true }));
  const bundled = path.join(scratch, 'macvtap-bundled.js');
  buildSync({ entryPoints: [path.join(ROOT, 'bin', 'macvtap.ts')], bundle: true, platform: 'node', outfile: bundled, logLevel: 'error' });
  const r = spawnSync(
    process.execPath,
    [path.join(ROOT, 'deploy', 'build-host.mjs'), '--only=macvtap', `--entry:macvtap=${bundled}`, `--out=${path.join(scratch, 'out')}`],
    { encoding: 'utf8' },
  );
  t.equal(r.status, 1);
  t.match(r.stderr, /does not import lib\/netlink\/native\.ts \(is it already a bundle\?\)/);
  t.notOk(fs.existsSync(path.join(scratch, 'out', 'macvtap')), 'and makes no executable');
  t.end();
});
