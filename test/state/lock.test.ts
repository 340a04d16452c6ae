// Per-device flock(2) locks between real processes (root only): exclusion under contention, a SIGKILLed holder's
// lock released by the kernel at once, bounded waits that end in LockTimeout naming the holder, the daemon's
// asynchronous wait leaving its event loop free, and lock files that never stall anyone (a directory, a
// symlink, 10 MB of garbage, a full disk).
import { ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import t from 'tap';
import { hostLinkName } from '../../lib/naming';
import { LockTimeout, NodeState } from '../../lib/state';
import { rootOnly } from '../support/kernel';
import { fill, memoryLog, mountTmpfs, tempDir } from './helpers';

const STATE = path.resolve(__dirname, '..', '..', 'dist', 'lib', 'state', 'index.js');
const holder = { program: 'test', verb: 'TEST' };

/** A process that takes `deviceID`'s lock, prints `locked`, and holds it until killed or for `holdMs`. */
function holderProcess(dir: string, deviceID: string, holdMs = 60_000): Promise<ChildProcess> {
  const script = `
    const { NodeState } = require(${JSON.stringify(STATE)});
    const { Logger } = require(${JSON.stringify(path.resolve(__dirname, '..', '..', 'dist', 'lib', 'util', 'log.js'))});
    const s = NodeState.open(${JSON.stringify(dir)}, { log: new Logger({ level: 'error' }) });
    const l = s.lock(${JSON.stringify(deviceID)}, { holder: { program: 'holder', verb: 'HOLD', detail: 'test' } });
    process.stdout.write('locked\\n');
    setTimeout(() => { l.release(); process.exit(0); }, ${holdMs});`;
  const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.stdout.once('data', () => resolve(child));
  });
}

function exited(child: ChildProcess): Promise<void> {
  return child.exitCode !== null || child.signalCode !== null ? Promise.resolve() : new Promise((r) => child.once('exit', () => r()));
}

t.test('exclusion: 6 processes x 40 increments of a shared counter under the lock lose none', { skip: rootOnly }, async (t) => {
  const dir = path.join(tempDir(t), 'state');
  const counter = path.join(path.dirname(dir), 'counter');
  fs.writeFileSync(counter, '0');
  const script = `
    const fs = require('fs');
    const { NodeState } = require(${JSON.stringify(STATE)});
    const { Logger } = require(${JSON.stringify(path.resolve(__dirname, '..', '..', 'dist', 'lib', 'util', 'log.js'))});
    const s = NodeState.open(${JSON.stringify(dir)}, { log: new Logger({ level: 'error' }) });
    for (let i = 0; i < 40; i++) {
      const l = s.lock('shared', { holder: { program: 'w', verb: 'INC' } });
      const n = Number(fs.readFileSync(${JSON.stringify(counter)}, 'utf8'));
      fs.writeFileSync(${JSON.stringify(counter)}, String(n + 1));
      l.release();
    }`;
  const kids = Array.from({ length: 6 }, () => spawn(process.execPath, ['-e', script], { stdio: 'inherit' }));
  const codes = await Promise.all(kids.map((k) => new Promise<number | null>((r) => k.once('exit', (c) => r(c)))));
  t.same(codes, [0, 0, 0, 0, 0, 0], 'every worker finished');
  t.equal(fs.readFileSync(counter, 'utf8'), '240', 'no increment lost: never two holders at once');
  t.same(fs.readdirSync(path.join(dir, 'locks')), [], 'no lock file left');
});

t.test('a held lock: LockTimeout after the bound, naming the holder; SIGKILL releases it at once', { skip: rootOnly }, async (t) => {
  const dir = path.join(tempDir(t), 'state');
  const state = NodeState.open(dir, { log: memoryLog().log });
  t.teardown(() => state.close());
  const child = await holderProcess(dir, 'busy');
  t.teardown(() => child.kill('SIGKILL'));
  const start = performance.now();
  const err = t.throws(() => state.lock('busy', { holder, timeoutMs: 300 }), LockTimeout) as LockTimeout;
  const waited = performance.now() - start;
  t.ok(waited >= 300, `waited the bound (${waited.toFixed(0)} ms)`);
  t.match(err.holder, new RegExp(`^pid ${child.pid} \\(holder HOLD test\\) since \\d{4}-`), `the holder is described: ${err.holder}`);
  t.equal(err.path, path.join(dir, 'locks', 'busy.lock'));
  t.equal(err.deviceID, 'busy');
  const other = state.lock('idle', { holder, timeoutMs: 100 });
  other.release();
  t.pass('another device is not blocked');

  // The holder dies without releasing: the kernel drops its lock; a waiter gets it promptly.
  const waiting = state.lockAsync('busy', { holder, timeoutMs: 20_000 });
  child.kill('SIGKILL');
  await exited(child);
  const lock = await waiting;
  t.ok(lock.held, "the dead holder's lock is ours");
  t.match(fs.readFileSync(lock.path, 'utf8'), new RegExp(`"pid":${process.pid}`), 'and the file now describes us');
  lock.release();
});

t.test('the asynchronous wait leaves the event loop running; release by the holder wakes it', { skip: rootOnly }, async (t) => {
  const dir = path.join(tempDir(t), 'state');
  const state = NodeState.open(dir, { log: memoryLog().log });
  t.teardown(() => state.close());
  const child = await holderProcess(dir, 'dev0', 600);
  let ticks = 0;
  const timer = setInterval(() => ticks++, 10);
  const lock = await state.lockAsync('dev0', { holder, timeoutMs: 20_000 });
  clearInterval(timer);
  t.ok(ticks >= 10, `timers kept firing while waiting (${ticks} ticks)`);
  await exited(child);
  t.equal(child.exitCode, 0, 'the holder released and exited normally');
  lock.release();
  await t.rejects(
    (async () => {
      const c = await holderProcess(dir, 'dev0');
      t.teardown(() => c.kill('SIGKILL'));
      return state.lockAsync('dev0', { holder, timeoutMs: 100 });
    })(),
    LockTimeout,
    'the asynchronous wait is bounded too',
  );
});

t.test('lock files that cannot stall anyone', { skip: rootOnly }, (t) => {
  const dir = path.join(tempDir(t), 'state');
  const state = NodeState.open(dir, { log: memoryLog().log });
  t.teardown(() => state.close());
  const locks = path.join(dir, 'locks');
  state.lock('seed', { holder }).release();
  // Garbage content: flock does not care, the holder overwrites it.
  fs.writeFileSync(path.join(locks, 'garbage.lock'), Buffer.alloc(10 * 1024 * 1024, 0), { mode: 0o600 });
  const g = state.lock('garbage', { holder, timeoutMs: 1000 });
  t.ok(fs.statSync(g.path).size < 512, 'a 10 MB lock file is reused and truncated');
  g.release();
  // A directory where the lock file should be: an error at once, not a wait.
  fs.mkdirSync(path.join(locks, 'dir.lock'));
  const start = performance.now();
  t.throws(() => state.lock('dir', { holder, timeoutMs: 30_000 }), {
    name: 'StateError',
    code: 'EISDIR',
    path: path.join(locks, 'dir.lock'),
  });
  t.ok(performance.now() - start < 5000, 'failed without waiting for the timeout');
  // A lock file left by a holder that died is swept by GC's sweep, held ones are kept.
  fs.writeFileSync(path.join(locks, 'left.lock'), '{"pid":1}\n', { mode: 0o600 });
  fs.writeFileSync(path.join(locks, 'old.lock.break-12-34'), '', { mode: 0o600 });
  const held = state.lock('held', { holder });
  t.equal(state.sweepLocks(holder), 2, "the dead holder's file and an old-style break marker removed");
  t.same(fs.readdirSync(locks).sort(), ['dir.lock', 'held.lock'], 'the held lock stays');
  held.release();
  t.end();
});

t.test('a full file system: locks still work, a record write fails with ENOSPC and keeps the old record', { skip: rootOnly }, (t) => {
  const mnt = path.join(tempDir(t), 'mnt');
  mountTmpfs(t, mnt, 'size=256k');
  const dir = path.join(mnt, 'state');
  const { log } = memoryLog();
  const state = NodeState.open(dir, { log });
  t.teardown(() => state.close());
  state.allocations.write({
    version: 1,
    deviceID: 'd0',
    resource: 'macvtap.network.kubevirt.io/x',
    linkName: hostLinkName('d0'),
    lowerDevice: 'eth1',
    mode: 'bridge',
    ifindex: 5,
    txqueuelen: 1,
    allocatedAt: new Date().toISOString(),
  });
  fill(mnt);
  const lock = state.lock('d0', { holder, timeoutMs: 1000 });
  t.ok(lock.held, 'the lock is taken on a full disk');
  const old = state.allocations.read('d0');
  const start = performance.now();
  t.throws(() => state.allocations.write({ ...(old as NonNullable<typeof old>), ifindex: 6 }), {
    name: 'StateError',
    code: 'ENOSPC',
    message: /d0\.json/,
  });
  t.ok(performance.now() - start < 5000, `failed at once (${(performance.now() - start).toFixed(1)} ms)`);
  t.equal(state.allocations.read('d0')?.ifindex, 5, 'the previous record is intact');
  t.same(fs.readdirSync(path.join(dir, 'allocations')), ['d0.json'], 'no temp file left');
  lock.release();
  t.same(fs.readdirSync(path.join(dir, 'locks')), [], 'and no lock file');
  const again = state.lock('d0', { holder, timeoutMs: 1000 });
  t.ok(again.held, 'the next lock is not stalled');
  again.release();
  t.end();
});
