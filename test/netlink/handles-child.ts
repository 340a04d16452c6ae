/**
 * Child of leak.test.ts ("every handle kind"), run inside a scratch namespace with --expose-gc. Loops
 * ROUNDS times over every kind of handle the library makes and destroys — Netns.current(), Netns.open() of
 * another namespace (with tapDevice's sysfs mount), Netns.create()/remove(), watchers (one that sees an event),
 * sync and async sockets, an async request cancelled in flight, refused opens — after a warm-up round, and
 * prints one JSON line: fds by kind, threads and child processes before and after. It then returns without
 * process.exit(): if a poller or socket were still active, the process would not end (the parent times it).
 * argv: OTHER_NS_PATH MACVTAP_IN_OTHER NETNS_DIR ROUNDS
 */
import * as fs from 'node:fs';
import { NetlinkError, Netns } from '../../lib/netlink';

const [otherPath, macvtap, netnsDir, roundsArg] = process.argv.slice(2);
const rounds = Number(roundsArg);
const gc = (globalThis as { gc?: () => void }).gc;

interface Snapshot {
  fds: number;
  kinds: Record<string, number>;
  threads: number;
  children: number;
}

function snapshot(): Snapshot {
  gc?.();
  const kinds: Record<string, number> = {};
  const fds = fs.readdirSync('/proc/self/fd');
  for (const fd of fds) {
    let target = 'gone';
    try {
      target = fs.readlinkSync(`/proc/self/fd/${fd}`);
    } catch {
      /* the readdir's own fd */
    }
    const kind = /^(\w+):\[/.exec(target)?.[1] ?? (target.startsWith('anon_inode:') ? target : target.startsWith('/') ? 'path' : target);
    kinds[kind] = (kinds[kind] ?? 0) + 1;
  }
  // Children, including zombies nobody reaped: every process whose parent is this one.
  let children = 0;
  for (const pid of fs.readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    try {
      if (/^PPid:\s+(\d+)$/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] === String(process.pid)) children += 1;
    } catch {
      /* exited meanwhile */
    }
  }
  return { fds: fds.length, kinds, threads: fs.readdirSync('/proc/self/task').length, children };
}

const settle = async (): Promise<void> => {
  for (let i = 0; i < 3; i++) await new Promise((resolve) => setImmediate(resolve));
};

async function round(i: number): Promise<void> {
  const here = Netns.current();
  here.getLinkSync('lo');
  await here.getLink(1);
  here.close();

  const other = Netns.open(otherPath);
  other.listLinksSync();
  await other.listLinks();
  other.tapDeviceSync(macvtap); // mounts the other namespace's sysfs, released by close()
  await other.tapDevice(macvtap);
  other.close();

  const name = `mvt-h${process.pid}-${i}`;
  const made = Netns.create(name, netnsDir);
  made.getLinkSync('lo');
  made.close();
  Netns.remove(name, netnsDir);

  const w = Netns.current();
  const watcher = w.watchLinks();
  const seen = new Promise<void>((resolve) => watcher.once('link', () => resolve()));
  // An MTU change is notified (an alias change is not).
  await w.setLink('lo', { mtu: w.getLinkSync('lo')?.mtu === 65000 ? 65001 : 65000 });
  await seen;
  watcher.close();
  w.watchLinks().close();

  const cancelled = w.listLinks();
  for (let k = 0; k < 10; k++) await Promise.resolve();
  w.close();
  await cancelled.catch((err: unknown) => {
    if (!(err instanceof NetlinkError) || err.code !== 'ECANCELED') throw err;
  });

  for (const bad of ['/proc/self/ns/uts', '/dev/null', '/nonexistent']) {
    try {
      Netns.open(bad);
    } catch (err) {
      if (!(err instanceof NetlinkError)) throw err;
    }
  }
}

async function main(): Promise<void> {
  await round(0);
  await settle();
  const before = snapshot();
  for (let i = 1; i <= rounds; i++) await round(i);
  await settle();
  const after = snapshot();
  process.stdout.write(`${JSON.stringify({ rounds, before, after })}\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(`handles-child: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exitCode = 1;
});
