// Tap character devices (root only): major:minor against sysfs (the oracle), and ensureTapNode() making
// /dev/tap<ifindex> exactly that device with the requested owner, group and mode.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import t from 'tap';
import { charDeviceOf, ensureTapNode, TapDevice } from '../../lib/netlink';
import { native } from '../../lib/netlink/native';
import { rootOnly, sysfsTapDev } from '../support/kernel';
import { scratch } from './fixtures';

const devOf = (file: string): string | undefined => {
  const d = charDeviceOf(file);
  return d && `${d.major}:${d.minor}`;
};

t.test('tapDevice: major:minor as sysfs shows it, sync and async', { skip: rootOnly }, async (t) => {
  const s = scratch(t);
  for (let i = 0; i < 3; i++) s.h.createMacvtapSync({ name: `tap${i}`, lower: s.lower, index: s.idx[i] });
  for (let i = 0; i < 3; i++) {
    const want = sysfsTapDev(s.ns, `tap${i}`, s.idx[i]);
    const sync = s.h.tapDeviceSync(`tap${i}`);
    const async_ = await s.h.tapDevice(s.idx[i]);
    t.equal(`${sync.major}:${sync.minor}`, want, `tap${i}: sync`);
    t.same(async_, sync, `tap${i}: async twin agrees`);
    t.equal(sync.ifindex, s.idx[i]);
    t.equal(sync.path, `/dev/tap${s.idx[i]}`);
  }
  t.throws(() => s.h.tapDeviceSync(s.lower), {
    name: 'NetlinkError',
    code: 'EINVAL',
    operation: 'find tap device',
    message: /not a macvtap/,
  });
  await t.rejects(s.h.tapDevice('nosuch'), { code: 'ENODEV', operation: 'find tap device' });
});

t.test('tapDevice of a Link record: no lookup, same answer; a stale record fails', { skip: rootOnly }, async (t) => {
  const s = scratch(t);
  const link = s.h.createMacvtapSync({ name: 'rec0', lower: s.lower, index: s.idx[0] });
  const want = sysfsTapDev(s.ns, 'rec0', s.idx[0]);
  const fromRecord = s.h.tapDeviceSync(link);
  t.equal(`${fromRecord.major}:${fromRecord.minor}`, want, 'sysfs agrees');
  t.same(fromRecord, s.h.tapDeviceSync('rec0'), 'same as by name');
  t.same(await s.h.tapDevice(link), fromRecord, 'async twin agrees');
  s.h.setLinkSync(link.index, { name: 'rec1' });
  t.throws(() => s.h.tapDeviceSync(link), { code: 'ENOENT' }, 'a record of a renamed link is stale');
  t.same(s.h.tapDeviceSync(s.h.getLinkSync('rec1')!), fromRecord, 'a fresh record works');
  t.throws(() => s.h.tapDeviceSync({ ...link, index: 0 }), RangeError, 'an invalid record fails before any syscall');
});

t.test('ensureTapNode: kept, created, replaced; owner, group and mode applied', { skip: rootOnly }, (t) => {
  const s = scratch(t);
  s.h.createMacvtapSync({ name: 'node0', lower: s.lower, index: s.idx[0] });
  s.h.createMacvtapSync({ name: 'node1', lower: s.lower, index: s.idx[1] });
  const dev = s.h.tapDeviceSync('node0');
  const other = s.h.tapDeviceSync('node1');
  const file = dev.path;

  // The kernel (devtmpfs) made the node when the macvtap appeared.
  t.equal(devOf(file), `${dev.major}:${dev.minor}`, 'devtmpfs node present');
  t.same(ensureTapNode(dev), { path: file, action: 'kept' }, 'right device: kept');
  t.equal(fs.statSync(file).mode & 0o7777, 0o600, 'default mode 0600');

  fs.rmSync(file);
  t.same(ensureTapNode(dev, { uid: 107, gid: 36, mode: 0o660 }), { path: file, action: 'created' }, 'missing: created');
  let st = fs.statSync(file);
  t.ok(st.isCharacterDevice(), 'a char device');
  t.equal(devOf(file), `${dev.major}:${dev.minor}`, 'the right one');
  t.equal(st.uid, 107, 'owner');
  t.equal(st.gid, 36, 'group');
  t.equal(st.mode & 0o7777, 0o660, 'mode');

  // Another macvtap's device under this name (what an ifindex clash across namespaces looks like).
  fs.rmSync(file);
  native().mknod(file, 0o644, other.major, other.minor);
  t.same(ensureTapNode(dev, { uid: 0, gid: 0 }), { path: file, action: 'replaced' }, 'wrong device: replaced');
  st = fs.statSync(file);
  t.equal(devOf(file), `${dev.major}:${dev.minor}`, 'now the right device');
  t.equal(st.uid, 0);
  t.equal(st.mode & 0o7777, 0o600);

  fs.rmSync(file);
  fs.writeFileSync(file, 'not a device');
  t.equal(ensureTapNode(dev).action, 'replaced', 'regular file: replaced');
  t.equal(devOf(file), `${dev.major}:${dev.minor}`);
  fs.rmSync(file);
  fs.symlinkSync('/nonexistent', file);
  t.equal(ensureTapNode(dev).action, 'replaced', 'dangling symlink: replaced');
  t.equal(devOf(file), `${dev.major}:${dev.minor}`);

  t.same(ensureTapNode(dev, { gid: 36 }), { path: file, action: 'kept' }, 'kept again');
  t.equal(fs.statSync(file).gid, 36, 'group alone can change');
  t.same(
    fs.readdirSync('/dev').filter((f) => f.startsWith(`.tap${dev.ifindex}.`)),
    [],
    'no temporary node left',
  );
  t.end();
});

t.test('ensureTapNode: another directory, failures, invalid arguments', { skip: rootOnly }, (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mvt-tap-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  // Any char device numbers will do in a private directory: /dev/null's.
  const nul = charDeviceOf('/dev/null')!;
  const dev: TapDevice = { ifindex: 7, major: nul.major, minor: nul.minor, path: '/dev/tap7' };
  t.same(ensureTapNode(dev, { devDir: dir, mode: 0o640 }), { path: path.join(dir, 'tap7'), action: 'created' });
  t.equal(devOf(path.join(dir, 'tap7')), '1:3');
  t.equal(charDeviceOf(path.join(dir, 'nothing')), undefined, 'missing file: undefined');
  fs.writeFileSync(path.join(dir, 'plain'), '');
  t.equal(charDeviceOf(path.join(dir, 'plain')), undefined, 'regular file: undefined');

  t.throws(() => ensureTapNode(dev, { devDir: path.join(dir, 'missing') }), {
    name: 'NetlinkError',
    code: 'ENOENT',
    operation: 'create tap node',
    link: path.join(dir, 'missing', 'tap7'),
    message: /No such file/,
  });
  t.throws(() => ensureTapNode({ ...dev, ifindex: 0 }), RangeError);
  t.throws(() => ensureTapNode({ ...dev, major: 1.5 }), TypeError);
  t.throws(() => ensureTapNode({ ...dev, minor: -1 }), RangeError);
  t.throws(() => ensureTapNode(dev, { mode: 0o10000 }), RangeError);
  t.throws(() => ensureTapNode(dev, { uid: -2 }), RangeError);
  t.throws(() => ensureTapNode(dev, { gid: 'wheel' as unknown as number }), TypeError);
  t.same(fs.readdirSync(dir).sort(), ['plain', 'tap7'], 'failures left nothing behind');
  t.end();
});
