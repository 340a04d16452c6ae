/**
 * deploy/install-cni.sh, the DaemonSet's install step, run on this machine as the node (MACVTAP_HOST_ROOT=/)
 * and against made-up node roots that lack what the executable needs: a node that cannot run it gets one
 * line and an untouched CNI bin directory; a good node gets the executable by an atomic rename. Faults: a
 * SIGKILL in the middle of the copy never leaves a partial `macvtap` (and the next run clears the temporary
 * file); a full disk fails cleanly. test/deploy/image.test.ts runs the same script from the image.
 */
import t, { Test } from 'tap';
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { HOST_ARCH, ROOT, buildHost, hostDir } from '../host/build';
import { rootOnly } from '../support/kernel';

const SCRIPT = path.join(ROOT, 'deploy', 'install-cni.sh');
const OTHER_ARCH = HOST_ARCH === 'x64' ? 'arm64' : 'x64';
const OLD = '#!/bin/sh\necho old\n';

const built = [buildHost(HOST_ARCH), buildHost(OTHER_ARCH)];
const notBuilt = built.every((b) => b.status === 0) ? false : `build-host failed: ${built.map((b) => b.stderr).join('\n')}`;
const CNI = path.join(hostDir(HOST_ARCH), 'macvtap');
const FOREIGN = path.join(hostDir(OTHER_ARCH), 'macvtap');

interface Teardown {
  teardown(fn: () => void): void;
}

const sha = (file: string): string => createHash('sha256').update(fs.readFileSync(file)).digest('hex');

/** A scratch CNI bin directory holding an "old" macvtap, plus an fd open on it (a runtime running it). */
function binDir(t: Teardown): { dir: string; target: string; oldIno: number; oldFd: number } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'macvtap-cnibin-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const target = path.join(dir, 'macvtap');
  fs.writeFileSync(target, OLD, { mode: 0o755 });
  const oldFd = fs.openSync(target, 'r');
  t.teardown(() => fs.closeSync(oldFd));
  return { dir, target, oldIno: fs.statSync(target).ino, oldFd };
}

function install(src: string, dir: string, hostRoot = '/'): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync('sh', [SCRIPT, src, dir], {
    encoding: 'utf8',
    env: { ...process.env, MACVTAP_HOST_ROOT: hostRoot },
    timeout: 60_000,
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** The libraries (and loader) the executable resolves to on this machine, as absolute paths. */
function resolvedLibraries(exe: string): string[] {
  const out = spawnSync('ldd', [exe], { encoding: 'utf8' }).stdout;
  return [...out.matchAll(/(?:=>\s+)?(\/\S+)\s+\(0x/g)].map((m) => m[1]);
}

const FAKE_LIBC_SOURCE = 'int macvtap_fake_libc(void) { return 0; }\n';

/**
 * A node root with nothing but what the loader needs (no shell, no tools: a minimal node), and its /proc
 * bound in at run time. `libc: 'old'` puts in a libc.so.6 that defines only the symbol versions glibc 2.27
 * had (built from a version script); `without` leaves libraries out.
 */
function nodeRoot(t: Teardown, opts: { libc: 'real' | 'old'; without?: string[] }): string {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'macvtap-noderoot-'));
  t.teardown(() => fs.rmSync(root, { recursive: true, force: true }));
  fs.mkdirSync(path.join(root, 'proc'));
  for (const lib of resolvedLibraries(CNI)) {
    if (opts.without?.includes(path.basename(lib))) continue;
    const dest = path.join(root, fs.realpathSync(lib));
    fs.mkdirSync(path.dirname(dest), { recursive: true });
    fs.copyFileSync(lib, dest);
    if (fs.realpathSync(lib) !== lib) {
      fs.mkdirSync(path.dirname(path.join(root, lib)), { recursive: true });
      fs.symlinkSync(fs.realpathSync(lib), path.join(root, lib));
    }
  }
  if (opts.libc === 'old') {
    const libc = resolvedLibraries(CNI).find((l) => path.basename(l) === 'libc.so.6');
    if (!libc) throw new Error('no libc.so.6 in ldd output');
    const defined = [...spawnSync('readelf', ['-W', '-V', libc], { encoding: 'utf8' }).stdout.matchAll(/Name: (GLIBC_2\.[\d.]+)/g)].map(
      (m) => m[1],
    );
    const old = [...new Set(defined)].filter((v) => Number(v.split('.')[1]) < 28);
    const work = fs.mkdtempSync(path.join(os.tmpdir(), 'macvtap-fakelibc-'));
    t.teardown(() => fs.rmSync(work, { recursive: true, force: true }));
    fs.writeFileSync(path.join(work, 'fake.c'), FAKE_LIBC_SOURCE);
    fs.writeFileSync(
      path.join(work, 'libc.map'),
      `${old.map((v) => `${v} { };`).join('\n')}\nGLIBC_PRIVATE { global: macvtap_fake_libc; local: *; };\n`,
    );
    const cc = spawnSync(
      'gcc',
      [
        '-shared',
        '-fPIC',
        '-nostdlib',
        '-Wl,-soname,libc.so.6',
        `-Wl,--version-script=${path.join(work, 'libc.map')}`,
        '-o',
        path.join(root, fs.realpathSync(libc)),
        path.join(work, 'fake.c'),
      ],
      { encoding: 'utf8' },
    );
    if (cc.status !== 0) throw new Error(`gcc: ${cc.stderr}`);
  }
  return root;
}

/** Runs install-cni with MACVTAP_HOST_ROOT=root in a private mount namespace where root/proc is this /proc. */
function installOnNode(root: string, src: string, dir: string): { status: number | null; stderr: string } {
  const r = spawnSync(
    'unshare',
    [
      '--mount',
      '--propagation',
      'private',
      'sh',
      '-ec',
      'mount --rbind /proc "$1/proc"; exec sh "$2" "$3" "$4"',
      'sh',
      root,
      SCRIPT,
      src,
      dir,
    ],
    { encoding: 'utf8', env: { ...process.env, MACVTAP_HOST_ROOT: root }, timeout: 60_000 },
  );
  return { status: r.status, stderr: r.stderr };
}

/** Asserts the bin directory is exactly as binDir() made it. */
function unchanged(t: Test, bin: ReturnType<typeof binDir>): void {
  t.same(fs.readdirSync(bin.dir), ['macvtap'], 'no other file in the CNI bin directory');
  t.equal(fs.statSync(bin.target).ino, bin.oldIno, 'the installed executable is the same file');
  t.equal(fs.readFileSync(bin.target, 'utf8'), OLD, 'with its old content');
}

t.test('on a node that runs it: installs by rename, flushed, while a running copy keeps its file', { skip: rootOnly || notBuilt }, (t) => {
  const bin = binDir(t);
  const r = install(CNI, bin.dir);
  t.equal(r.status, 0, r.stderr);
  t.equal(r.stderr, '');
  t.match(r.stdout, /installed macvtap and macvtap.conf.json \(ownership: enforce\)/);
  t.same(fs.readdirSync(bin.dir).sort(), ['macvtap', 'macvtap.conf.json'], 'no temporary file left');
  t.same(
    JSON.parse(fs.readFileSync(path.join(bin.dir, 'macvtap.conf.json'), 'utf8')),
    { ownership: 'enforce', kubeletRoot: '/var/lib/kubelet', stateDir: '/var/lib/macvtap-cni' },
    'the CNI\'s host configuration next to it (README "Security")',
  );
  const st = fs.statSync(bin.target);
  t.equal(sha(bin.target), sha(CNI), 'the new executable, whole');
  t.equal(st.mode & 0o777, 0o755);
  t.not(st.ino, bin.oldIno, 'a new inode took the name (rename), not a rewrite in place');
  const buf = Buffer.alloc(64);
  t.equal(buf.subarray(0, fs.readSync(bin.oldFd, buf, 0, 64, 0)).toString(), OLD, 'a runtime still running the old file sees it whole');
  const version = spawnSync(bin.target, [], { env: { CNI_COMMAND: 'VERSION' }, input: '', encoding: 'utf8' });
  t.match(version.stdout, /supportedVersions/, 'and the installed file runs');
  t.end();
});

t.test('bad input: one line, nothing installed', { skip: rootOnly || notBuilt }, (t) => {
  const cases: { name: string; src: () => string; root: () => string; message: RegExp }[] = [
    { name: 'a missing source', src: () => '/nonexistent/macvtap', root: () => '/', message: /\/nonexistent\/macvtap does not exist/ },
    {
      name: 'not an executable',
      src: () => path.join(ROOT, 'README.md'),
      root: () => '/',
      message: /is not an x86-64 or aarch64 executable/,
    },
    {
      name: 'the wrong architecture',
      src: () => FOREIGN,
      root: () => '/',
      message: new RegExp(
        `is built for ${OTHER_ARCH === 'arm64' ? 'aarch64' : 'x86-64'} with glibc but this node runs ${HOST_ARCH === 'x64' ? 'x86-64' : 'aarch64'}`,
      ),
    },
    {
      name: 'glibc below 2.28',
      src: () => CNI,
      root: () => nodeRoot(t, { libc: 'old' }),
      message: /cannot run on this node: the node's glibc is older than 2\.28: .*version `GLIBC_2\.2[89]' not found/,
    },
    {
      name: 'no libatomic',
      src: () => CNI,
      root: () => nodeRoot(t, { libc: 'real', without: ['libatomic.so.1'] }),
      message: /the node has no libatomic\.so\.1, .*libatomic1 on Debian and Ubuntu.*: .*libatomic\.so\.1: cannot open shared object file/,
    },
  ];
  for (const c of cases) {
    const bin = binDir(t);
    const root = c.root();
    const r = root === '/' ? install(c.src(), bin.dir) : installOnNode(root, c.src(), bin.dir);
    t.equal(r.status, 1, `${c.name}: exit status 1`);
    t.equal(r.stderr.trimEnd().split('\n').length, 1, `${c.name}: one line: ${r.stderr.trimEnd()}`);
    t.match(r.stderr, c.message, `${c.name}: says what is wrong`);
    t.match(r.stderr, /; nothing was installed\n$/);
    unchanged(t, bin);
  }
  t.end();
});

t.test('a node root without its /proc is reported, not mistaken for a bad node', { skip: rootOnly || notBuilt }, (t) => {
  const bin = binDir(t);
  const root = nodeRoot(t, { libc: 'real' });
  const r = install(CNI, bin.dir, root);
  t.equal(r.status, 1);
  t.match(r.stderr, /the node's root is not mounted at .* \(with its \/proc\); nothing was installed/);
  unchanged(t, bin);
  t.end();
});

t.test(
  'SIGKILL in the middle of the copy never leaves a partial macvtap; the next run cleans up',
  { skip: rootOnly || notBuilt },
  async (t) => {
    const bin = binDir(t);
    const size = fs.statSync(CNI).size;
    let caught: { tmp: string; bytes: number } | undefined;
    for (let attempt = 0; attempt < 8 && !caught; attempt++) {
      const child = spawn('sh', [SCRIPT, CNI, bin.dir], {
        env: { ...process.env, MACVTAP_HOST_ROOT: '/' },
        detached: true,
        stdio: 'ignore',
      });
      const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
      // Watch for the temporary file to be partly written, then kill the whole process group (as the kubelet
      // kills a container: the shell and its cp together).
      const deadline = Date.now() + 30_000;
      while (Date.now() < deadline && child.exitCode === null) {
        const tmp = fs.readdirSync(bin.dir).find((f) => f.startsWith('.macvtap.'));
        const bytes = tmp ? (fs.statSync(path.join(bin.dir, tmp), { throwIfNoEntry: false })?.size ?? 0) : 0;
        if (tmp && bytes > 0 && bytes < size) {
          process.kill(-child.pid!, 'SIGKILL');
          caught = { tmp, bytes };
          break;
        }
      }
      await exited;
      if (!caught) {
        // The copy finished between two looks: put the old file back and try again.
        fs.writeFileSync(bin.target, OLD, { mode: 0o755 });
      }
    }
    t.ok(caught, `killed mid-copy (${caught?.bytes} of ${size} bytes)`);
    if (caught) {
      t.equal(fs.readFileSync(bin.target, 'utf8'), OLD, 'macvtap is still the old, whole executable');
      t.ok(fs.existsSync(path.join(bin.dir, caught.tmp)), 'the partial copy is only under its temporary name');
    }
    const again = install(CNI, bin.dir);
    t.equal(again.status, 0, again.stderr);
    t.same(fs.readdirSync(bin.dir).sort(), ['macvtap', 'macvtap.conf.json'], 'the next run removed the temporary file');
    t.equal(sha(bin.target), sha(CNI), 'and installed the whole executable');
    t.end();
  },
);

t.test('a full disk fails the install cleanly', { skip: rootOnly || notBuilt }, (t) => {
  const bin = binDir(t);
  // A 16 MiB tmpfs over the bin directory, in a private mount namespace: the copy hits ENOSPC.
  const r = spawnSync(
    'unshare',
    [
      '--mount',
      '--propagation',
      'private',
      'sh',
      '-c',
      'mount -t tmpfs -o size=16m tmpfs "$1" && printf "%s" "$4" >"$1/macvtap" && chmod 755 "$1/macvtap"; sh "$2" "$3" "$1"; echo "status=$?"; ls -A "$1"; cat "$1/macvtap"',
      'sh',
      bin.dir,
      SCRIPT,
      CNI,
      OLD,
    ],
    { encoding: 'utf8', env: { ...process.env, MACVTAP_HOST_ROOT: '/' }, timeout: 60_000 },
  );
  t.match(r.stderr, /cannot copy .* into .*; nothing was installed/, r.stderr);
  t.equal(r.stdout, `status=1\nmacvtap\n${OLD}`, 'exit status 1, only the old macvtap left, whole');
  t.end();
});
