// Records as untrusted input (root only, a real file system): every field's type and range, the version, the
// file name; attachment records of two containers of one device never overwrite each other; a dead writer's
// complete temp file is adopted by the next holder of the device's lock, a torn one dropped.
import * as fs from 'node:fs';
import * as path from 'node:path';
import t from 'tap';
import { InvalidStateName, NodeState, parseAllocation, parseAttachment, RecordProblem } from '../../lib/state';
import { rootOnly } from '../support/kernel';
import { allocation, attachment, memoryLog, tempDir } from './helpers';

t.test('allocation records: every malformed field is a RecordProblem naming it', (t) => {
  const good = allocation();
  t.same(parseAllocation(good, 'dataplaneMvp0.json'), good, 'a good record parses');
  const bad: [string, Record<string, unknown>, RegExp][] = [
    ['ifindex a string', { ifindex: '40000' }, /ifindex is "40000", not an integer/],
    ['ifindex -1', { ifindex: -1 }, /ifindex is -1, outside 1\.\.2147483647/],
    ['ifindex null', { ifindex: null }, /ifindex is null/],
    ['ifindex 2^31', { ifindex: 2 ** 31 }, /outside/],
    ['ifindex 1.5', { ifindex: 1.5 }, /not an integer/],
    ['mode bogus', { mode: 'bogus' }, /mode is "bogus", not one of bridge, vepa, private, passthru/],
    ['lowerDevice a number', { lowerDevice: 1 }, /lowerDevice is 1, not a string/],
    ['lowerDevice with a slash', { lowerDevice: 'a/b' }, /lowerDevice .*does not allow/],
    ['linkName not mvt<hash>', { linkName: 'eth0' }, /linkName "eth0" is not the device's name mvt[0-9a-f]{12}/],
    ['linkName of another device', { linkName: 'mvt000000000001' }, /not the device's name/],
    ['deviceID with a slash', { deviceID: '../x' }, /deviceID .*may only contain/],
    ['resource of another domain', { resource: 'example.com/x' }, /not a macvtap.network.kubevirt.io resource/],
    ['txqueuelen negative', { txqueuelen: -5 }, /txqueuelen is -5/],
    ['allocatedAt not a time', { allocatedAt: 'yesterday' }, /allocatedAt .*not a time/],
    ['version 2', { version: 2 }, /version 2 is not the supported 1/],
    ['no version', { version: undefined }, /version missing/],
  ];
  for (const [label, change, why] of bad) {
    t.throws(() => parseAllocation({ ...allocation(), ...change }), { constructor: RecordProblem, message: why }, label);
  }
  t.throws(() => parseAllocation(allocation(), 'other.json'), /does not match the file name/, 'a record under another device ID');
  t.throws(() => parseAllocation([]), /not an object/, 'not an object');
  t.end();
});

t.test('attachment records: malformed fields, and host names no record may choose', (t) => {
  const good = attachment();
  t.same(parseAttachment(good, 'dataplaneMvp0+c0ffee01+net1.json'), good, 'a good record parses');
  const bad: [string, Record<string, unknown>, RegExp][] = [
    ['hostName "1"', { hostName: '1' }, /hostName "1" is neither the deviceID nor a device plugin name/],
    ['hostName a number', { hostName: 1 }, /hostName is 1, not a string/],
    ['hostName another link', { hostName: 'eth0' }, /neither the deviceID/],
    ['ifindex a string', { ifindex: '7' }, /ifindex is "7"/],
    ['lowerIndex missing', { lowerIndex: undefined }, /lowerIndex is missing/],
    ['netns relative', { netns: 'pod' }, /not an absolute path/],
    ['original.mac upper case junk', { original: { ...good.original, mac: 'ZZ' } }, /mac is "ZZ"/],
    ['original.mtu 10', { original: { ...good.original, mtu: 10 } }, /mtu is 10/],
    ['original.up a string', { original: { ...good.original, up: 'yes' } }, /up is "yes", not a boolean/],
    ['original missing', { original: undefined }, /original is not an object/],
    ['containerID with a slash', { containerID: 'a/b' }, /containerID/],
    ['version 1 (the previous layout)', { version: 1 }, /version 1 is not the supported 2/],
    ['pod.uid a number', { pod: { namespace: 'a', name: 'b', uid: 3 } }, /uid is 3/],
  ];
  for (const [label, change, why] of bad) {
    t.throws(() => parseAttachment({ ...good, ...change }), { constructor: RecordProblem, message: why }, label);
  }
  t.same(
    parseAttachment({ ...good, hostName: good.deviceID }).hostName,
    good.deviceID,
    "the deviceID itself is a valid host name (an operator's macvtap)",
  );
  t.throws(() => parseAttachment(good, 'dataplaneMvp0+other+net1.json'), /do not match the file name/, 'a record copied under another key');
  t.end();
});

t.test('IDs that cannot name a file are refused before the directory is touched', { skip: rootOnly }, (t) => {
  const dir = path.join(tempDir(t), 'state');
  const state = NodeState.open(dir, { log: memoryLog().log });
  t.teardown(() => state.close());
  for (const id of ['', '.hidden', '../etc', 'a/b', 'mvt0\u0000x', 'a b', '\ud800', 'x'.repeat(91), 'dev:0']) {
    t.throws(() => state.allocations.read(id), InvalidStateName, `allocation of ${JSON.stringify(id)}`);
    t.throws(() => state.lock(id, { holder: { program: 'test', verb: 'TEST' } }), InvalidStateName, `lock of ${JSON.stringify(id)}`);
  }
  for (const [key, field] of [
    [{ deviceID: 'd0', containerID: 'x'.repeat(97), ifname: 'net1' }, 'containerID'],
    [{ deviceID: 'd0', containerID: '-c', ifname: 'net1' }, 'containerID'],
    [{ deviceID: 'd0', containerID: 'c', ifname: 'a/b' }, 'ifname'],
    [{ deviceID: 'd0', containerID: 'c', ifname: 'x'.repeat(16) }, 'ifname'],
  ] as const) {
    t.throws(() => state.attachments.read(key), { name: 'InvalidStateName', field }, `${field} ${JSON.stringify(key)}`);
  }
  t.same(fs.readdirSync(dir), ['locks'], 'nothing but the (empty) locks directory was made');
  t.same(fs.readdirSync(path.join(dir, 'locks')), []);
  t.end();
});

t.test('two containers of one device, and odd interface names, have separate records', { skip: rootOnly }, (t) => {
  const dir = path.join(tempDir(t), 'state');
  const state = NodeState.open(dir, { log: memoryLog().log });
  t.teardown(() => state.close());
  state.attachments.write(attachment({ containerID: 'sandbox1' }));
  state.attachments.write(attachment({ containerID: 'sandbox2', netns: '/var/run/netns/pod2' }));
  state.attachments.write(attachment({ containerID: 'sandbox2', ifname: 'n+e%t', deviceID: 'other' }));
  t.same(
    fs.readdirSync(path.join(dir, 'attachments')).sort(),
    ['dataplaneMvp0+sandbox1+net1.json', 'dataplaneMvp0+sandbox2+net1.json', 'other+sandbox2+n%2be%25t.json'],
    'one file per (device, container, interface)',
  );
  t.same(
    state.attachments
      .ofDevice('dataplaneMvp0')
      .map((r) => r.netns)
      .sort(),
    ['/var/run/netns/pod', '/var/run/netns/pod2'],
    'both records of the device, each as written',
  );
  t.equal(state.attachments.read({ deviceID: 'other', containerID: 'sandbox2', ifname: 'n+e%t' })?.ifname, 'n+e%t');
  t.equal(state.attachments.list().length, 3);
  t.ok(state.attachments.remove({ deviceID: 'dataplaneMvp0', containerID: 'sandbox1', ifname: 'net1' }));
  t.notOk(state.attachments.remove({ deviceID: 'dataplaneMvp0', containerID: 'sandbox1', ifname: 'net1' }), 'removing twice: false');
  t.equal(state.attachments.ofDevice('dataplaneMvp0').length, 1, "the other container's record is kept");
  t.end();
});

t.test("recover(): a dead writer's complete temp file becomes the record, a torn one is dropped", { skip: rootOnly }, (t) => {
  const dir = path.join(tempDir(t), 'state');
  const { log, events } = memoryLog();
  const state = NodeState.open(dir, { log });
  t.teardown(() => state.close());
  state.attachments.write(attachment({ deviceID: 'seed' }));
  const att = path.join(dir, 'attachments');
  const whole = attachment({ containerID: 'crashed' });
  fs.writeFileSync(path.join(att, 'dataplaneMvp0+crashed+net1.json.4194305.tmp'), `${JSON.stringify(whole)}\n`, { mode: 0o600 });
  fs.writeFileSync(path.join(att, 'dataplaneMvp0+torn+net1.json.4194306.tmp'), '{"version":2,"dev', { mode: 0o600 });
  fs.writeFileSync(path.join(att, 'seed+x+net1.json.4194307.tmp'), 'other device: not ours to recover', { mode: 0o600 });
  t.same(state.attachments.devicesWithTemp().sort(), ['dataplaneMvp0', 'seed']);
  const adopted = state.attachments.recover('dataplaneMvp0');
  t.same(adopted, [whole], 'the complete record is adopted');
  t.same(
    fs.readdirSync(att).sort(),
    ['dataplaneMvp0+crashed+net1.json', 'seed+c0ffee01+net1.json', 'seed+x+net1.json.4194307.tmp'],
    "adopted under its name, the torn one gone, another device's temp left for its own lock holder",
  );
  t.ok(
    events.some((e) => e.msg.includes('adopted')),
    'adoption is logged',
  );
  t.end();
});
