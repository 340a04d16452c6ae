// The per-device lock of the CNI plugin, in-process on a real file system: exclusion, timeout (code 11),
// breaking the locks of dead owners exactly once, abandoned break markers, and GC's sweep.
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import t from 'tap';
import { CniError } from '../../lib/cni/errors';
import { DeviceLock, lockPath, removeStaleLocks } from '../../lib/cni/lock';

function tempState(t: { teardown(fn: () => void): void }): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'macvtap-lock-test-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** A pid that existed and is gone. */
function deadPid(): number {
  return Number(spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' }).stdout);
}

t.test('acquire creates the lock file, release removes it; different devices do not contend', async (t) => {
  const dir = tempState(t);
  const a = DeviceLock.acquire(dir, 'dev/0:a b');
  const b = DeviceLock.acquire(dir, 'dev1', 100);
  t.ok(fs.existsSync(lockPath(dir, 'dev/0:a b')), 'lock file exists (device ID encoded into one file name)');
  t.equal(path.dirname(lockPath(dir, 'dev/0:a b')), path.join(dir, 'locks'), 'no sub-directory from the "/"');
  t.match(fs.readFileSync(a.file, 'utf8'), new RegExp(`^${process.pid} \\d+\\n$`), 'holds pid and start time');
  a.release();
  a.release();
  b.release();
  t.same(fs.readdirSync(path.join(dir, 'locks')), [], 'released (idempotently)');
});

t.test('a held lock times out with code 11; a lock that is not ours is not removed on release', async (t) => {
  const dir = tempState(t);
  const held = DeviceLock.acquire(dir, 'busy');
  const start = Date.now();
  try {
    DeviceLock.acquire(dir, 'busy', 150);
    t.fail('should time out');
  } catch (err) {
    t.ok(err instanceof CniError, 'a CniError');
    t.equal((err as CniError).code, 11, 'code 11: try again later');
    t.match((err as CniError).message, /busy/);
  }
  t.ok(Date.now() - start >= 150, 'waited for the timeout');
  // Someone else's content in the file (as after a wrongful break): release leaves it.
  fs.writeFileSync(held.file, '1 1\n');
  held.release();
  t.ok(fs.existsSync(held.file), 'not removed');
});

t.test('a live owner in another process blocks until it releases', async (t) => {
  const dir = tempState(t);
  const file = lockPath(dir, 'shared');
  const script = `
    const { DeviceLock } = require(${JSON.stringify(path.resolve(__dirname, '../../dist/lib/cni/lock.js'))});
    const l = DeviceLock.acquire(${JSON.stringify(dir)}, 'shared');
    process.stdout.write('locked');
    setTimeout(() => { l.release(); process.exit(0); }, 400);`;
  const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((resolve) => child.stdout.once('data', () => resolve()));
  t.ok(fs.existsSync(file), 'child holds it');
  const start = Date.now();
  const mine = DeviceLock.acquire(dir, 'shared', 5000);
  t.ok(Date.now() - start >= 200, `waited for the child (${Date.now() - start} ms)`);
  mine.release();
  await new Promise((resolve) => child.once('exit', resolve));
});

t.test('dead owners: pid gone, pid reused by a later process, empty file; markers', async (t) => {
  const dir = tempState(t);
  const file = lockPath(dir, 'stale');
  fs.mkdirSync(path.dirname(file), { recursive: true });
  for (const [label, content] of [
    ['pid gone', `${deadPid()} 5\n`],
    ['pid reused (start time differs)', `${process.pid} 1\n`],
  ]) {
    fs.writeFileSync(file, content);
    const l = DeviceLock.acquire(dir, 'stale', 1000);
    t.match(fs.readFileSync(file, 'utf8'), new RegExp(`^${process.pid} `), `${label}: taken over`);
    l.release();
    t.same(fs.readdirSync(path.dirname(file)), [], `${label}: no marker left`);
  }
  // An empty lock file is a creator between open and write: young, it is respected; old, it is broken.
  fs.writeFileSync(file, '');
  t.throws(() => DeviceLock.acquire(dir, 'stale', 100), { code: 11 }, 'young empty file: waited');
  const old = new Date(Date.now() - 60_000);
  fs.utimesSync(file, old, old);
  DeviceLock.acquire(dir, 'stale', 1000).release();
  t.notOk(fs.existsSync(file), 'old empty file: broken');

  // A breaker at work (its marker is fresh): waiters wait, and time out like for a live owner.
  const dead = `${deadPid()} 7`;
  fs.writeFileSync(file, `${dead}\n`);
  const marker = `${file}.break-${dead.replace(' ', '-')}`;
  fs.linkSync(file, marker);
  t.throws(() => DeviceLock.acquire(dir, 'stale', 150), { code: 11 }, 'fresh marker: another breaker is at work');
  // That breaker died: GC's sweep (here with a zero age limit) clears its marker and the dead lock.
  removeStaleLocks(dir, 0);
  t.same(fs.readdirSync(path.dirname(file)), [], 'marker and dead lock removed');
  DeviceLock.acquire(dir, 'stale', 1000).release();
  t.same(fs.readdirSync(path.dirname(file)), [], 'lock taken and released, nothing left');
});

t.test('removeStaleLocks sweeps dead owners and old markers, keeps live ones', async (t) => {
  const dir = tempState(t);
  const live = DeviceLock.acquire(dir, 'live');
  const locks = path.join(dir, 'locks');
  fs.writeFileSync(path.join(locks, 'dead.lock'), `${deadPid()} 9\n`);
  fs.writeFileSync(path.join(locks, 'gone.lock.break-1-2'), '');
  t.equal(removeStaleLocks(dir), 1, 'the dead lock removed; a fresh marker is kept');
  t.equal(removeStaleLocks(dir, 0), 1, 'an old marker removed');
  t.same(fs.readdirSync(locks), ['live.lock'], 'the live lock stays');
  live.release();
  t.equal(removeStaleLocks(path.join(dir, 'nowhere')), 0, 'no locks directory: nothing to do');
});
