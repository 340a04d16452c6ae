// Netns.open on anything that is not a network namespace (root only for the nsfs cases): never blocks (a FIFO
// with no writer included), never opens a device, and fails with NetlinkError EINVAL naming what it was, or
// with the open's own errno; no fd is left behind.
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import t from 'tap';
import { NetlinkError, Netns } from '../../lib/netlink';
import { native } from '../../lib/netlink/native';
import { openFdCount, rootOnly } from '../support/kernel';

t.test('each kind of non-namespace path is refused promptly, with what it was', { skip: rootOnly }, async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mvt-open-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const fifo = path.join(dir, 'fifo');
  execFileSync('mkfifo', [fifo]);
  const regular = path.join(dir, 'file');
  fs.writeFileSync(regular, 'not a namespace');
  const sockPath = path.join(dir, 'sock');
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(sockPath, resolve));
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  const blockDev = fs.existsSync('/dev/loop0') ? '/dev/loop0' : undefined;
  const cases: [string, string, RegExp][] = [
    ['FIFO without a writer', fifo, /is a FIFO, not a network namespace/],
    ['unix socket', sockPath, /is a socket, not a network namespace/],
    ['character device', '/dev/null', /is a character device, not a network namespace/],
    ['directory', dir, /is a directory, not a network namespace/],
    ['regular file', regular, /is a regular file, not a namespace/],
    ['namespace of another type', '/proc/self/ns/uts', /is a uts namespace, not a network namespace/],
    ['mount namespace', '/proc/self/ns/mnt', /is a mount namespace, not a network namespace/],
  ];
  if (blockDev) cases.push(['block device', blockDev, /is a block device, not a network namespace/]);
  const fds = openFdCount();
  for (const [what, file, message] of cases) {
    const started = process.hrtime.bigint();
    t.throws(
      () => Netns.open(file),
      { name: 'NetlinkError', code: 'EINVAL', errno: 22, operation: 'open network namespace', link: file, message },
      what,
    );
    // Not a timing assertion: a blocking open of the FIFO would never return at all.
    t.comment(`${what}: refused in ${Number(process.hrtime.bigint() - started) / 1e6} ms`);
  }
  t.throws(() => Netns.open(path.join(dir, 'missing')), { name: 'NetlinkError', code: 'ENOENT' }, 'missing file: the open errno');
  t.throws(() => Netns.open(path.join(regular, 'below')), { name: 'NetlinkError', code: 'ENOTDIR' }, 'below a file: ENOTDIR');
  t.equal(openFdCount(), fds, 'no fd left behind');
  // The FIFO never got a reader: a writer opening it non-blockingly still finds none.
  t.throws(
    () => fs.openSync(fifo, fs.constants.O_WRONLY | fs.constants.O_NONBLOCK),
    { code: 'ENXIO' },
    'the FIFO was never opened for reading',
  );
});

t.test('a path with an embedded NUL is refused before it reaches C', (t) => {
  // "/proc/self/ns/net\0junk" would open the current namespace if the NUL reached open(2).
  const err = t.throws(() => Netns.open('/proc/self/ns/net\0junk'), {
    name: 'NetlinkError',
    code: 'EINVAL',
    operation: 'open network namespace',
    message: /NUL/,
  });
  t.ok(err instanceof NetlinkError);
  t.throws(() => native().nsOpen('/proc/self/ns/net\0junk'), { name: 'RangeError', message: /NUL/ }, 'the addon refuses it too');
  t.end();
});

t.test('real namespaces still open: by path, by pid, through a symlink', { skip: rootOnly }, (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mvt-open-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const link = path.join(dir, 'ns');
  fs.symlinkSync('/proc/self/ns/net', link);
  for (const file of ['/proc/self/ns/net', `/proc/${process.pid}/ns/net`, link]) {
    const h = Netns.open(file);
    t.ok(
      h.listLinksSync().some((l) => l.name === 'lo'),
      `${file} lists lo`,
    );
    h.close();
  }
  t.end();
});
