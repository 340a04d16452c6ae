/**
 * deploy/Dockerfile built and run with podman, as a cluster would run it: `podman build` from a clean copy of
 * the tree on a Debian base made from the archive (deploy/make-base.sh; no registry here), then
 *  - the image holds the two executables, the install step and the tools the DaemonSet calls, and no
 *    node, npm or sources;
 *  - the DaemonSet's install step, run from the image against a scratch host directory, installs the CNI
 *    executable, and the installed file then does an ADD and DEL on this host, outside any container;
 *  - the device plugin started from the image as the DaemonSet starts it (privileged, in a test network
 *    namespace, the kubelet stand-in's socket directory mounted) registers, serves ListAndWatch and
 *    answers an Allocate whose macvtap appears in that namespace.
 * Kept as caches (documented in the README): the base image, and the build stage tagged
 * localhost/macvtap-cni:ci-build-cache (its layers: apt, npm ci). Everything else this file makes is removed.
 * Skipped, loudly, only where podman cannot run a container at all.
 */
import t from 'tap';
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseDocument } from 'yaml';
import { ROOT } from '../host/build';
import { claimIfindexes, ip, ipLink, ipLinks, makeLowerNetns, makeNetns, rootOnly } from '../support/kernel';
import { KubeletStandIn } from '../support/kubelet';

const BASE = 'localhost/macvtap-cni/debian:bookworm-minbase';
const CACHE_TAG = 'localhost/macvtap-cni:ci-build-cache';
const TAG = `localhost/macvtap-cni:ci-test-${process.pid}`;
const LABEL = 'io.github.macvtap-cni.ci-cache=1';
const RESOURCE = 'macvtap.network.kubevirt.io/imgtest';
const CA_BUNDLE = '/etc/ssl/certs/ca-certificates.crt';

interface Run {
  status: number | null;
  stdout: string;
  stderr: string;
}
function sh(cmd: string, args: string[], opts: { input?: string; timeout?: number; env?: NodeJS.ProcessEnv } = {}): Run {
  const r = spawnSync(cmd, args, {
    encoding: 'utf8',
    input: opts.input ?? '',
    timeout: opts.timeout ?? 120_000,
    env: opts.env ?? process.env,
    maxBuffer: 64 << 20,
  });
  return { status: r.status, stdout: r.stdout ?? '', stderr: `${r.stderr ?? ''}${r.error ? String(r.error) : ''}` };
}
const podman = (args: string[], timeout?: number): Run => sh('podman', args, { timeout });

/** Why podman cannot run a container here, or false if it can. */
function podmanUnusable(): string | false {
  if (rootOnly) return rootOnly;
  const info = podman(['info', '--format', '{{.Host.OCIRuntime.Name}}']);
  if (info.status !== 0)
    return `podman cannot run here (${info.stderr.trim().split('\n').at(-1) ?? 'not installed'}); on these machines run .ci/podman-setup`;
  return false;
}
const unusable = podmanUnusable();
/** Containers that need no network get none: podman's default one would add a bridge to the machine. */
const NO_NETWORK = ['--network', 'none'];
if (unusable) console.error(`\n*** image tests SKIPPED: ${unusable} ***\n`);

// The DaemonSet as written: the image test runs its containers with their commands and mounts.
interface Mount {
  name: string;
  mountPath: string;
  readOnly?: boolean;
}
interface Container {
  name: string;
  command: string[];
  volumeMounts: Mount[];
}
interface PodSpec {
  hostPID?: boolean;
  initContainers: Container[];
  containers: Container[];
  volumes: { name: string; hostPath?: { path: string }; configMap?: object }[];
}
const pod = (
  parseDocument(fs.readFileSync(path.join(ROOT, 'deploy', 'base', 'daemonset.yaml'), 'utf8')).toJS() as {
    spec: { template: { spec: PodSpec } };
  }
).spec.template.spec;

/** podman -v flags for a container's mounts: volumes named in `hostPaths` go there, any other to a scratch dir. */
function volumeFlags(c: Container, hostPaths: Record<string, string>, scratch: string): string[] {
  return c.volumeMounts.flatMap((m) => {
    let source = hostPaths[m.name];
    if (!source) {
      source = fs.mkdtempSync(path.join(scratch, `${m.name}-`));
    }
    return ['-v', `${source}:${m.mountPath}${m.readOnly ? ':ro' : ''}`];
  });
}

let built: Run | undefined;
let buildSeconds = 0;

t.before(() => {
  if (unusable) return;
  const base = sh('sh', [path.join(ROOT, 'deploy', 'make-base.sh'), 'bookworm', BASE], { timeout: 900_000 });
  if (base.status !== 0) {
    built = { status: base.status, stdout: '', stderr: `make-base.sh: ${base.stderr}` };
    return;
  }
  // A clean checkout: the tracked and not-ignored files of the tree, nothing built or installed.
  const context = fs.mkdtempSync(path.join(os.tmpdir(), 'macvtap-image-ctx-'));
  try {
    const files = sh('git', ['-C', ROOT, 'ls-files', '-z', '--cached', '--others', '--exclude-standard'])
      .stdout.split('\0')
      .filter(Boolean);
    for (const f of files) {
      if (!fs.existsSync(path.join(ROOT, f))) continue; // deleted in the working tree
      fs.mkdirSync(path.dirname(path.join(context, f)), { recursive: true });
      fs.copyFileSync(path.join(ROOT, f), path.join(context, f));
    }
    // Host network for the build's apt and npm steps: podman's default network would add a bridge
    // (cni-podman0) to this machine that outlives the test.
    const common = [
      'build',
      '--network',
      'host',
      '--layers',
      '--label',
      LABEL,
      '--build-arg',
      `BUILD_BASE=${BASE}`,
      '--build-arg',
      `RUNTIME_BASE=${BASE}`,
      ...(fs.existsSync(CA_BUNDLE)
        ? ['-v', `${CA_BUNDLE}:/run/extra-ca.crt:ro`, '--build-arg', 'NODE_EXTRA_CA_CERTS=/run/extra-ca.crt']
        : []),
      '-f',
      path.join(context, 'deploy', 'Dockerfile'),
    ];
    const started = process.hrtime.bigint();
    // The build stage under a tag of its own keeps its layers (apt, npm ci) as the cache for the next run.
    const stage = podman([...common, '--target', 'build', '-t', CACHE_TAG, context], 1_200_000);
    built = stage.status === 0 ? podman([...common, '-t', TAG, context], 1_200_000) : stage;
    buildSeconds = Number(process.hrtime.bigint() - started) / 1e9;
  } finally {
    fs.rmSync(context, { recursive: true, force: true });
  }
});

t.teardown(() => {
  if (unusable) return;
  podman(['rmi', '-f', TAG]);
  // Older generations of this file's build layers (superseded cache), never anyone else's images.
  podman(['image', 'prune', '-f', '--filter', `label=${LABEL}`]);
});

const skip = (): string | false => unusable || (built?.status === 0 ? false : `the image did not build`);

t.test('podman build of deploy/Dockerfile succeeds from a clean checkout', { skip: unusable }, (t) => {
  t.equal(built?.status, 0, `podman build: ${built?.stderr.slice(-4000)}`);
  const size = Number(podman(['image', 'inspect', '--format', '{{.Size}}', TAG]).stdout.trim());
  t.ok(size > 0, 'the image exists');
  t.comment(`built in ${buildSeconds.toFixed(0)} s; image ${(size / 1e6).toFixed(0)} MB on ${BASE}`);
  t.end();
});

t.test('the image holds the executables and the tools the DaemonSet uses, and no node, npm or sources', { skip: skip() }, (t) => {
  const installScript = fs.readFileSync(path.join(ROOT, 'deploy', 'install-cni.sh'), 'utf8');
  const declared = /Only POSIX sh and coreutils \(([^)]+)\) are used/.exec(installScript)?.[1].split(/,\s*/) ?? [];
  t.ok(declared.length > 5, `install-cni declares its tools: ${declared.join(' ')}`);
  const probeTools = pod.containers.flatMap((c) => {
    // Only exec probes run tools inside the image; httpGet probes are served by the daemon itself.
    type Probe = { exec?: { command: string[] } };
    const probes = c as Container & { readinessProbe?: Probe; livenessProbe?: Probe; startupProbe?: Probe };
    return [probes.readinessProbe, probes.livenessProbe, probes.startupProbe].flatMap((p) =>
      p?.exec ? [p.exec.command[0], p.exec.command.at(-1)!.split(/\s+/)[0]] : [],
    );
  });
  const tools = [...new Set(['sh', 'env', ...declared, ...probeTools.map((p) => path.basename(p))])];
  const script = [
    'set -u',
    `for tool in ${tools.join(' ')}; do command -v "$tool" >/dev/null || echo "missing $tool"; done`,
    'for f in /usr/local/bin/macvtap /usr/local/bin/macvtap-deviceplugin /usr/local/bin/install-cni; do [ -x "$f" ] || echo "not executable $f"; done',
    'ldd /usr/local/bin/macvtap /usr/local/bin/macvtap-deviceplugin | grep "not found" || true',
    'for tool in node nodejs npm npx; do command -v "$tool" && echo "has $tool"; done',
    'find / -xdev \\( -name node_modules -o -name "*.ts" -o -name package.json -o -name binding.gyp -o -name "*.cc" \\) -print 2>/dev/null | sed "s/^/source /"',
    'echo done',
  ].join('\n');
  const r = podman(['run', '--rm', ...NO_NETWORK, TAG, 'sh', '-c', script]);
  t.equal(r.status, 0, r.stderr);
  t.equal(r.stdout, 'done\n', `every tool and library present, nothing of the build left: ${r.stdout}`);
  const cni = podman(['run', '--rm', ...NO_NETWORK, '-e', 'CNI_COMMAND=VERSION', TAG, '/usr/local/bin/macvtap']);
  t.match(cni.stdout, /"supportedVersions"/, 'the CNI executable runs in the image');
  t.end();
});

t.test('the install step from the image installs the CNI executable, which then runs an ADD on the host', { skip: skip() }, (t) => {
  const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'macvtap-image-install-'));
  t.teardown(() => fs.rmSync(scratch, { recursive: true, force: true }));
  const binDir = path.join(scratch, 'opt-cni-bin');
  fs.mkdirSync(binDir);
  fs.writeFileSync(path.join(binDir, 'macvtap'), '#!/bin/sh\necho old\n', { mode: 0o755 });
  const oldIno = fs.statSync(path.join(binDir, 'macvtap')).ino;
  const init = pod.initContainers[0];
  const cniBin = pod.volumes.find((v) => v.hostPath?.path === '/opt/cni/bin')!.name;
  const hostRoot = pod.volumes.find((v) => v.hostPath?.path === '/')!.name;
  const name = `macvtap-ci-install-${process.pid}`;
  t.teardown(() => void podman(['rm', '-f', name]));
  const r = podman([
    'run',
    '--rm',
    '--name',
    name,
    '--privileged',
    ...NO_NETWORK,
    ...(pod.hostPID ? ['--pid', 'host'] : []),
    ...volumeFlags(init, { [cniBin]: binDir, [hostRoot]: '/' }, scratch),
    TAG,
    ...init.command,
  ]);
  t.equal(r.status, 0, `install-cni: ${r.stderr}`);
  t.match(r.stdout, /installed macvtap/);
  t.same(fs.readdirSync(binDir).sort(), ['macvtap', 'macvtap.conf.json'], 'no temporary file left');
  const installed = path.join(binDir, 'macvtap');
  t.not(fs.statSync(installed).ino, oldIno, 'replaced by rename');
  t.equal(fs.statSync(installed).mode & 0o777, 0o755);
  const inImage = podman(['run', '--rm', ...NO_NETWORK, TAG, 'sha256sum', '/usr/local/bin/macvtap']).stdout.split(' ')[0];
  t.equal(sh('sha256sum', [installed]).stdout.split(' ')[0], inImage, "the image's executable, whole");

  // The installed file, on this host (no container), as the runtime runs it for a pod.
  const host = makeLowerNetns(t, { prefix: 'mvtimg' });
  const podNs = makeNetns(t, 'mvtimgpod');
  const [ifindex] = claimIfindexes(t, 1);
  ip('-n', host.ns, 'link', 'add', 'link', host.lower, 'name', 'mvtimg0', 'index', String(ifindex), 'type', 'macvtap', 'mode', 'bridge');
  const config = JSON.stringify({
    cniVersion: '1.1.0',
    name: 'imgnet',
    type: 'macvtap',
    deviceID: 'mvtimg0',
    mac: '02:00:5e:00:53:21',
  });
  const env = {
    CNI_CONTAINERID: 'imagetest',
    CNI_NETNS: `/var/run/netns/${podNs}`,
    CNI_IFNAME: 'net1',
    MACVTAP_CNI_STATE_DIR: path.join(scratch, 'state'),
  };
  const cni = (command: string): Run =>
    sh(
      'ip',
      ['netns', 'exec', host.ns, 'env', '-i', ...Object.entries({ ...env, CNI_COMMAND: command }).map(([k, v]) => `${k}=${v}`), installed],
      {
        input: config,
      },
    );
  const add = cni('ADD');
  t.equal(add.status, 0, add.stderr || add.stdout);
  const link = ipLink(podNs, 'net1');
  t.equal(link?.linkinfo?.info_kind, 'macvtap', 'the macvtap is in the pod namespace as net1');
  t.equal(link?.ifindex, ifindex);
  t.equal(link?.address, '02:00:5e:00:53:21');
  const del = cni('DEL');
  t.equal(del.status, 0, del.stderr || del.stdout);
  t.equal(ipLink(host.ns, 'mvtimg0')?.ifindex, ifindex, 'DEL returned it to the host namespace');
  t.end();
});

t.test('the device plugin from the image registers, serves ListAndWatch and allocates in its namespace', { skip: skip() }, async (t) => {
  const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'macvtap-image-dp-'));
  t.teardown(() => fs.rmSync(scratch, { recursive: true, force: true }));
  const host = makeLowerNetns(t, { prefix: 'mvtimgdp' });
  const indexes = claimIfindexes(t, 2);
  const pluginDir = path.join(scratch, 'device-plugins');
  const kubelet = await KubeletStandIn.start(pluginDir);
  t.teardown(() => kubelet.stop());
  const main = pod.containers[0];
  const volumeOf = (mountPath: string): string => main.volumeMounts.find((m) => m.mountPath === mountPath)!.name;
  const configMount = main.volumeMounts.find((m) => pod.volumes.find((v) => v.name === m.name && v.configMap))!;
  const configDir = path.join(scratch, 'config');
  fs.mkdirSync(configDir);
  fs.writeFileSync(
    path.join(configDir, 'DP_MACVTAP_CONF'),
    JSON.stringify([{ name: 'imgtest', lowerDevice: host.lower, mode: 'vepa', capacity: 2 }]),
  );
  const stateDir = path.join(scratch, 'state');
  fs.mkdirSync(stateDir);
  const name = `macvtap-ci-dp-${process.pid}`;
  const args = [
    'run',
    '--rm',
    '--name',
    name,
    '--privileged',
    '--network',
    `ns:/var/run/netns/${host.ns}`,
    ...(pod.hostPID ? ['--pid', 'host'] : []),
    ...volumeFlags(
      main,
      {
        [volumeOf('/var/lib/kubelet/device-plugins')]: pluginDir,
        [volumeOf('/var/lib/macvtap-cni')]: stateDir,
        [volumeOf('/dev')]: '/dev',
        [configMount.name]: configDir,
      },
      scratch,
    ),
    TAG,
    ...main.command,
    '--ifindex-range',
    `${indexes[0]}-${indexes[1]}`,
  ];
  const child = spawn('podman', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr.on('data', (d: Buffer) => (output += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  t.teardown(async () => {
    podman(['rm', '-f', '-t', '0', name]);
    await exited;
  });

  const reg = await kubelet.waitForRegistration(RESOURCE, 60_000).catch((err: unknown) => {
    throw new Error(`${String(err)}\ncontainer output:\n${output}`);
  });
  t.equal(reg.endpoint, 'macvtap.network.kubevirt.io_imgtest', 'registered with the kubelet');
  const devices = await kubelet.waitForDevices(RESOURCE, (d) => d.length === 2, 30_000);
  t.same(
    devices.map((d) => [d.ID, d.health]),
    [
      ['imgtestMvp0', 'Healthy'],
      ['imgtestMvp1', 'Healthy'],
    ],
    'ListAndWatch: both devices, healthy',
  );
  const answer = await kubelet.allocate(RESOURCE, [['imgtestMvp0']]);
  const spec = answer.containerResponses[0].devices[0];
  const m = /^\/dev\/tap(\d+)$/.exec(spec.hostPath);
  t.ok(m, `Allocate answers a tap device: ${spec.hostPath}`);
  const made = ipLinks(host.ns).find((l) => l.ifindex === Number(m?.[1]));
  t.equal(made?.linkinfo?.info_kind, 'macvtap', "the allocated macvtap is in the test namespace, the container's network");
  t.equal(made?.linkinfo?.info_data?.mode, 'vepa');
  t.ok(indexes.includes(Number(m?.[1])), 'with an ifindex from the given range');

  podman(['stop', '-t', '10', name]);
  t.equal(await exited, 0, `stops cleanly on SIGTERM: ${output.slice(-1000)}`);
  t.same(
    fs.readdirSync(pluginDir).filter((f) => f !== 'kubelet.sock'),
    [],
    'and removes its socket',
  );
});
