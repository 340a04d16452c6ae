// No leaks (root only): 10,000 operations in a child process (inside a scratch namespace, as the CNI plugin
// runs) do not grow its open fds, and grow its memory no more than noise; and create/destroy loops over every
// handle kind leave no fd, thread, child process or active poller behind.
import { execFile, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import t from 'tap';
import { rootOnly, sysfsTapDev } from '../support/kernel';
import { scratch } from './fixtures';
import type { LeakReport } from './leak-child';

const run = promisify(execFile);
// Two child processes that each run for a minute or more on a loaded machine.
t.setTimeout(480000);
const MB = 1024 * 1024;
/** Whether this process (and so the child, which inherits LD_PRELOAD) runs with the ASan runtime loaded. */
const UNDER_ASAN = fs.readFileSync('/proc/self/maps', 'utf8').includes('/libasan.so');

t.test('10,000 mixed operations: no fd, heap or RSS growth beyond noise', { skip: rootOnly, timeout: 240000 }, async (t) => {
  const s = scratch(t, { count: 4 });
  const child = path.join(__dirname, 'leak-child.ts');
  // The child runs the TypeScript sources through the same loader as this test, with a collectable heap.
  const node = [process.execPath, ...process.execArgv, '--expose-gc', child, s.lower, ...s.idx.map(String)];
  const { stdout } = await run('ip', ['netns', 'exec', s.ns, ...node], { maxBuffer: 16 * MB });
  const r = JSON.parse(stdout.trim().split('\n').pop() ?? '') as LeakReport;
  t.equal(r.ops, 10000, '10,000 operations ran');
  t.equal(r.gc, true, 'measured after full garbage collections');
  t.equal(r.after.fds, r.before.fds, `open fds unchanged (${r.before.fds})`);
  t.ok(r.after.heap - r.before.heap < 2 * MB, `JS heap growth < 2 MB (${((r.after.heap - r.before.heap) / MB).toFixed(2)} MB)`);
  t.ok(
    r.after.external - r.before.external < 1 * MB,
    `external/ArrayBuffer growth < 1 MB (${((r.after.external - r.before.external) / MB).toFixed(2)} MB)`,
  );
  t.ok(
    r.after.rss - r.before.rss < 8 * MB,
    `RSS growth < 8 MB, i.e. < 800 bytes per operation (${((r.after.rss - r.before.rss) / MB).toFixed(2)} MB)`,
    // Under AddressSanitizer (npm run test:sanitize) RSS measures its allocator, which keeps freed blocks in
    // quarantine to catch use after free: the fd, heap and external bounds above still apply there.
    { skip: UNDER_ASAN && 'RSS is the sanitizer allocator’s under AddressSanitizer' },
  );
  // The child read its tap device through the current-namespace path (plain sysfs): check it against sysfs.
  t.equal(r.probeIndex, s.idx[0]);
  t.equal(`${r.tap.major}:${r.tap.minor}`, sysfsTapDev(s.ns, 'lkprobe', s.idx[0]), 'current-namespace tapDeviceSync = sysfs');
});

t.test(
  'every handle kind, 100 create/destroy rounds: no fd, thread, child or active poller left',
  { skip: rootOnly, timeout: 240000 },
  async (t) => {
    const s = scratch(t, { count: 2 });
    const other = scratch(t, { count: 1 });
    other.h.createMacvtapSync({ name: 'hk0', lower: other.lower, index: other.idx[0] });
    const netnsDir = fs.mkdtempSync(path.join(os.tmpdir(), 'mvt-netns-'));
    t.teardown(() => {
      // Namespaces a failed child left are unmounted before the directory goes.
      for (const name of fs.readdirSync(netnsDir)) spawnSync('umount', ['-l', path.join(netnsDir, name)]);
      spawnSync('umount', ['-l', netnsDir]);
      fs.rmSync(netnsDir, { recursive: true, force: true });
    });
    const child = path.join(__dirname, 'handles-child.ts');
    const node = [process.execPath, ...process.execArgv, '--expose-gc', child, `/var/run/netns/${other.ns}`, 'hk0', netnsDir, '100'];
    // The child ends by itself when its work is done: a socket or poller left active would keep it alive.
    const { stdout } = await run('ip', ['netns', 'exec', s.ns, ...node], { maxBuffer: 16 * MB, timeout: 200000 });
    const r = JSON.parse(stdout.trim().split('\n').pop() as string) as {
      rounds: number;
      before: { fds: number; kinds: Record<string, number>; threads: number; children: number };
      after: { fds: number; kinds: Record<string, number>; threads: number; children: number };
    };
    t.equal(r.rounds, 100);
    t.same(r.after.kinds, r.before.kinds, `fds by kind unchanged (${JSON.stringify(r.before.kinds)})`);
    t.equal(r.after.fds, r.before.fds, 'fd count unchanged');
    t.equal(r.after.threads, r.before.threads, `threads unchanged (${r.before.threads}): no thread per namespace operation`);
    t.equal(r.after.children, 0, 'no child process or unreaped zombie left');
    t.same(fs.readdirSync(netnsDir), [], 'every namespace it created was removed');
  },
);
