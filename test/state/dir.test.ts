// The state directory on a real file system (root only): what it creates and with which modes, what it refuses
// (symlinks, other owners, group/world-writable directories) and how, and that a symlink planted anywhere in the
// tree (a record, a temp file, a lock, a subdirectory) is never followed.
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import t from 'tap';
import { NodeState, StateError, UnsafeStateDir } from '../../lib/state';
import { rootOnly } from '../support/kernel';
import { allocation, attachment, memoryLog, modeOf, tempDir } from './helpers';

const holder = { program: 'test', verb: 'TEST' };

t.test('layout: directories 0700, records 0600, no temp file left', { skip: rootOnly }, (t) => {
  const dir = path.join(tempDir(t), 'a', 'state');
  const { log } = memoryLog();
  const state = NodeState.open(dir, { log });
  t.teardown(() => state.close());
  t.equal(modeOf(dir), '700', 'the state directory is created 0700 (and its missing parents)');
  state.allocations.write(allocation());
  state.attachments.write(attachment());
  const lock = state.lock('dataplaneMvp0', { holder });
  for (const sub of ['allocations', 'attachments', 'locks']) t.equal(modeOf(path.join(dir, sub)), '700', `${sub}/ is 0700`);
  t.equal(modeOf(path.join(dir, 'allocations', 'dataplaneMvp0.json')), '600', 'allocation record 0600');
  t.same(fs.readdirSync(path.join(dir, 'attachments')), ['dataplaneMvp0+c0ffee01+net1.json'], 'one attachment file, no temp');
  t.equal(modeOf(path.join(dir, 'locks', 'dataplaneMvp0.lock')), '600', 'lock file 0600 while held');
  t.match(
    fs.readFileSync(path.join(dir, 'locks', 'dataplaneMvp0.lock'), 'utf8'),
    new RegExp(`"pid":${process.pid},"program":"test","verb":"TEST"`),
  );
  lock.release();
  t.same(fs.readdirSync(path.join(dir, 'locks')), [], 'released: the lock file is gone');
  t.same(state.allocations.read('dataplaneMvp0'), allocation({ allocatedAt: state.allocations.read('dataplaneMvp0')?.allocatedAt }));
  t.equal(state.attachments.read({ deviceID: 'dataplaneMvp0', containerID: 'c0ffee01', ifname: 'net1' })?.ifindex, 40000);
  t.end();
});

t.test('an unsafe existing state directory is refused, naming the path and the problem', { skip: rootOnly }, (t) => {
  const base = tempDir(t);
  const { log } = memoryLog();
  const real = path.join(base, 'real');
  fs.mkdirSync(real, { mode: 0o700 });
  const cases: [string, () => string, RegExp][] = [
    ['a symlink', () => (fs.symlinkSync(real, path.join(base, 'link')), path.join(base, 'link')), /is a symlink/],
    [
      'world-writable',
      () => (fs.mkdirSync(path.join(base, 'ww')), fs.chmodSync(path.join(base, 'ww'), 0o777), path.join(base, 'ww')),
      /writable by its group and others \(mode 0777\)/,
    ],
    [
      'group-writable',
      () => (fs.mkdirSync(path.join(base, 'gw')), fs.chmodSync(path.join(base, 'gw'), 0o770), path.join(base, 'gw')),
      /writable by its group/,
    ],
    [
      'owned by another user',
      () => (
        fs.mkdirSync(path.join(base, 'other'), { mode: 0o700 }),
        fs.chownSync(path.join(base, 'other'), 1234, 0),
        path.join(base, 'other')
      ),
      /owned by uid 1234, not root/,
    ],
    ['a regular file', () => (fs.writeFileSync(path.join(base, 'file'), ''), path.join(base, 'file')), /not a directory/],
  ];
  for (const [label, make, why] of cases) {
    const p = make();
    const err = t.throws(() => NodeState.open(p, { log }), UnsafeStateDir, `${label}: refused`) as UnsafeStateDir;
    t.equal(err.path, p, `${label}: names the path`);
    t.match(err.message, why, `${label}: says why (${err.message})`);
  }
  t.same(fs.readdirSync(real), [], 'nothing was created through the symlink');

  // A subdirectory that is unsafe is refused the same way, when it is first used.
  const dir = path.join(base, 'state');
  fs.mkdirSync(dir, { mode: 0o700 });
  fs.symlinkSync(real, path.join(dir, 'locks'));
  fs.mkdirSync(path.join(dir, 'attachments'), { mode: 0o777 });
  fs.chmodSync(path.join(dir, 'attachments'), 0o777);
  const state = NodeState.open(dir, { log });
  t.teardown(() => state.close());
  t.throws(
    () => state.lock('dev0', { holder }),
    { name: 'UnsafeStateDir', path: path.join(dir, 'locks'), message: /is a symlink/ },
    'locks/ symlink',
  );
  t.throws(
    () => state.attachments.write(attachment()),
    { name: 'UnsafeStateDir', message: /attachments.*writable by its group and others/ },
    'attachments/ 0777',
  );
  t.same(fs.readdirSync(real), [], 'still nothing through the symlink');
  t.throws(() => NodeState.open('relative/dir', { log }), StateError, 'a relative path is refused');
  t.end();
});

t.test('symlinks planted at a record, its temp path or a lock are never followed', { skip: rootOnly }, (t) => {
  const base = tempDir(t);
  const victim = path.join(base, 'passwd');
  fs.writeFileSync(victim, 'root:x:0:0::/root:/bin/sh\n');
  const before = fs.readFileSync(victim, 'utf8');
  const dir = path.join(base, 'state');
  const { log, events } = memoryLog();
  const state = NodeState.open(dir, { log });
  t.teardown(() => state.close());
  state.allocations.write(allocation({ deviceID: 'seed' }));
  const allocs = path.join(dir, 'allocations');

  // The temp path this process would use for the next record.
  fs.symlinkSync(victim, path.join(allocs, `dataplaneMvp0.json.${process.pid}.tmp`));
  state.allocations.write(allocation());
  t.equal(fs.readFileSync(victim, 'utf8'), before, 'temp path symlink: the target is untouched');
  t.equal(fs.lstatSync(path.join(allocs, 'dataplaneMvp0.json')).isFile(), true, 'the record is a regular file');

  // The record itself is a symlink: read reports it and treats it as absent; a write replaces the link.
  fs.rmSync(path.join(allocs, 'dataplaneMvp0.json'));
  fs.symlinkSync(victim, path.join(allocs, 'dataplaneMvp0.json'));
  t.equal(state.allocations.read('dataplaneMvp0'), undefined, 'a symlinked record reads as absent');
  t.match(
    events.at(-1),
    { level: 'warn', path: path.join(allocs, 'dataplaneMvp0.json'), problem: /symlink/ },
    'and is reported with its path',
  );
  state.allocations.write(allocation());
  t.equal(fs.readFileSync(victim, 'utf8'), before, 'writing over it replaced the link, not the target');
  t.notOk(fs.lstatSync(path.join(allocs, 'dataplaneMvp0.json')).isSymbolicLink());

  // A lock file that is a symlink: refused, the target untouched.
  fs.mkdirSync(path.join(dir, 'locks'), { recursive: true, mode: 0o700 });
  fs.symlinkSync(victim, path.join(dir, 'locks', 'dev1.lock'));
  t.throws(() => state.lock('dev1', { holder, timeoutMs: 100 }), { name: 'StateError', code: 'EUNSAFE', message: /dev1\.lock.*symlink/ });
  t.equal(fs.readFileSync(victim, 'utf8'), before, 'lock symlink: the target is untouched');
  t.end();
});

t.test('FIFOs, directories and huge files where records are: reported and absent, never a hang', { skip: rootOnly }, (t) => {
  const dir = path.join(tempDir(t), 'state');
  const { log, events } = memoryLog();
  const state = NodeState.open(dir, { log });
  t.teardown(() => state.close());
  state.allocations.write(allocation({ deviceID: 'seed' }));
  const allocs = path.join(dir, 'allocations');
  execFileSync('mkfifo', [path.join(allocs, 'fifo.json')]);
  fs.mkdirSync(path.join(allocs, 'dir.json'));
  fs.writeFileSync(path.join(allocs, 'huge.json'), Buffer.alloc(10 * 1024 * 1024, 0x20));
  fs.writeFileSync(path.join(allocs, 'torn.json'), '{"version":1,"deviceID":"to');
  fs.writeFileSync(path.join(allocs, 'future.json'), JSON.stringify({ ...allocation({ deviceID: 'future' }), version: 9 }));
  fs.writeFileSync(path.join(allocs, 'shared.json'), JSON.stringify(allocation({ deviceID: 'shared' })));
  fs.chmodSync(path.join(allocs, 'shared.json'), 0o666);
  for (const [id, why] of [
    ['fifo', /fifo, not a regular file/],
    ['dir', /dir, not a regular file/],
    ['huge', /10485760 bytes/],
    ['torn', /not JSON/],
    ['future', /version 9 is not the supported 1/],
    ['shared', /writable by its group and others/],
  ] as const) {
    t.equal(state.allocations.read(id), undefined, `${id}: absent`);
    t.match(
      events.at(-1),
      { level: 'warn', path: path.join(allocs, `${id}.json`), problem: why },
      `${id}: reported (${String(events.at(-1)?.problem)})`,
    );
  }
  t.end();
});

t.test('a dead writer with our pid left its temp file: the next write replaces it', { skip: rootOnly }, (t) => {
  const dir = path.join(tempDir(t), 'state');
  const state = NodeState.open(dir, { log: memoryLog().log });
  t.teardown(() => state.close());
  state.allocations.write(allocation({ deviceID: 'seed' }));
  fs.writeFileSync(path.join(dir, 'allocations', `dataplaneMvp0.json.${process.pid}.tmp`), 'half');
  state.allocations.write(allocation());
  t.same(fs.readdirSync(path.join(dir, 'allocations')).sort(), ['dataplaneMvp0.json', 'seed.json']);
  // Temp files of writers that are gone are swept (the daemon does this at start).
  fs.writeFileSync(path.join(dir, 'allocations', 'x.json.4194305.tmp'), 'dead');
  fs.writeFileSync(path.join(dir, 'allocations', `y.json.${process.pid}.tmp`), 'alive');
  t.equal(state.allocations.sweepDeadTemp(), 1, 'one dead writer');
  t.same(fs.readdirSync(path.join(dir, 'allocations')).sort(), ['dataplaneMvp0.json', 'seed.json', `y.json.${process.pid}.tmp`]);
  t.end();
});
