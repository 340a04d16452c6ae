// Every native entry point checks its arguments: a wrong type is a TypeError, an out-of-range number a
// RangeError, a string with an embedded NUL a RangeError — never a crash, never a truncated C string.
import t from 'tap';
import { native } from '../../lib/netlink/native';

type AnyFn = (...args: unknown[]) => unknown;

t.test('free functions', (t) => {
  const a = native() as unknown as Record<string, AnyFn>;
  const cases: [string, unknown[], 'TypeError' | 'RangeError'][] = [
    ['init', [42], 'TypeError'],
    ['nsOpen', [7], 'TypeError'],
    ['nsOpen', ['/proc/self/ns/net\0'], 'RangeError'],
    ['nsCreate', ['/var/run/netns', 5], 'TypeError'],
    ['nsCreate', ['/var/run/netns', 'x\0y'], 'RangeError'],
    ['nsRemove', [undefined, 'x'], 'TypeError'],
    ['sysfsMount', ['3'], 'TypeError'],
    ['sysfsMount', [-1], 'RangeError'],
    ['sysfsMount', [1.5], 'TypeError'],
    ['sysfsRead', [3, 4], 'TypeError'],
    ['sysfsRead', [2 ** 31, '/sys'], 'RangeError'],
    ['readAt', [3, 'a\0b'], 'RangeError'],
    ['closeFd', ['x'], 'TypeError'],
    ['closeFd', [NaN], 'TypeError'],
    ['mknod', ['/tmp/x\0', 0o600, 1, 1], 'RangeError'],
    ['mknod', ['/tmp/x', 0o600, 0x1000, 1], 'RangeError'],
    ['mknod', ['/tmp/x', '600', 1, 1], 'TypeError'],
    ['xxhash64', ['text'], 'TypeError'],
  ];
  for (const [fn, args, kind] of cases) {
    t.throws(() => a[fn](...args), { name: kind }, `${fn}(${args.map((x) => JSON.stringify(x) ?? String(x)).join(', ')})`);
  }
  t.end();
});

t.test('NetlinkSocket methods', (t) => {
  const Socket = native().NetlinkSocket as unknown as new (...args: unknown[]) => Record<string, AnyFn>;
  t.throws(() => new Socket('x', 0), { name: 'TypeError' }, 'nsFd must be a number');
  t.throws(() => new Socket(-1, -1), { name: 'RangeError' }, 'groups must be >= 0');
  t.throws(() => new Socket(-2, 0), { name: 'RangeError' }, 'nsFd below -1');
  const sock = new Socket(-1, 0);
  t.teardown(() => sock.close());
  const header = Buffer.alloc(16);
  header.writeUInt32LE(16, 0);
  t.throws(() => sock.requestSync('req', 'op', 'l', 1000), { name: 'TypeError' }, 'request must be a Buffer');
  t.throws(() => sock.requestSync(header, 1, 'l', 1000), { name: 'TypeError' }, 'operation must be a string');
  t.throws(() => sock.requestSync(header, 'op', 'l\0x', 1000), { name: 'RangeError' }, 'link without NUL');
  t.throws(() => sock.requestSync(header, 'op', 'l', 0), { name: 'RangeError' }, 'timeout >= 1 ms');
  t.throws(() => sock.requestSync(header, 'op', 'l'), { name: 'TypeError' }, 'timeout required');
  t.throws(() => sock.requestSync(Buffer.alloc(8), 'op', 'l', 1000), { name: 'RangeError' }, 'shorter than a header');
  const lying = Buffer.alloc(32);
  lying.writeUInt32LE(64, 0);
  t.throws(() => sock.requestSync(lying, 'op', 'l', 1000), { name: 'RangeError' }, 'nlmsg_len must be the length');
  t.throws(() => sock.request(header, 'op', 'l', 'not a function'), { name: 'TypeError' }, 'callback must be a function');
  t.throws(() => sock.watch(undefined), { name: 'TypeError' }, 'watch callback must be a function');
  t.end();
});
