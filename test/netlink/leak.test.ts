// No leaks (root only): 10,000 operations in a child process (inside a scratch namespace, as the CNI plugin
// runs) do not grow its open fds, and grow its memory no more than noise.
import { execFile } from 'node:child_process';
import * as path from 'node:path';
import { promisify } from 'node:util';
import t from 'tap';
import { rootOnly, sysfsTapDev } from '../support/kernel';
import { scratch } from './fixtures';

const run = promisify(execFile);
const MB = 1024 * 1024;

t.test('10,000 mixed operations: no fd, heap or RSS growth beyond noise', { skip: rootOnly, timeout: 240000 }, async (t) => {
  const s = scratch(t, { count: 4 });
  const child = path.join(__dirname, 'leak-child.ts');
  // The child runs the TypeScript sources through the same loader as this test, with a collectable heap.
  const node = [process.execPath, ...process.execArgv, '--expose-gc', child, s.lower, ...s.idx.map(String)];
  const { stdout } = await run('ip', ['netns', 'exec', s.ns, ...node], { maxBuffer: 16 * MB });
  const r = JSON.parse(stdout.trim().split('\n').pop() as string);
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
  );
  // The child read its tap device through the current-namespace path (plain sysfs): check it against sysfs.
  t.equal(r.probeIndex, s.idx[0]);
  t.equal(`${r.tap.major}:${r.tap.minor}`, sysfsTapDev(s.ns, 'lkprobe', s.idx[0]), 'current-namespace tapDeviceSync = sysfs');
});
