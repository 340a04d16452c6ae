import t from 'tap';
import { ConfigError, isDiscoverable, parseConfig, parseIfindexRange, resourceNameProblem, socketName } from '../../lib/deviceplugin';
import { deviceId, resourceName } from '../../lib/naming';
import { Netns } from '../../lib/netlink';
import { ip, makeNetns, rootOnly } from '../support/kernel';

t.test('a valid configuration gets kubevirt defaults', async (t) => {
  const c = parseConfig(
    '[{"name":"dataplane","lowerDevice":"eth0"},{"name":"vm.net-2","lowerDevice":"bond0","mode":"vepa","capacity":7}]',
    'DP_MACVTAP_CONF',
  );
  t.same(c, {
    discover: false,
    resources: [
      { name: 'dataplane', lowerDevice: 'eth0', mode: 'bridge', capacity: 100 },
      { name: 'vm.net-2', lowerDevice: 'bond0', mode: 'vepa', capacity: 7 },
    ],
  });
});

t.test('`master`, the old name of lowerDevice, is accepted', async (t) => {
  const c = parseConfig('[{"name":"a","master":"eth1","mode":"passthru","capacity":1}]', 'X');
  t.same(c.resources, [{ name: 'a', lowerDevice: 'eth1', mode: 'passthru', capacity: 1 }]);
});

t.test('[] means discovery', async (t) => {
  t.same(parseConfig(' [] ', 'X'), { discover: true, resources: [] });
});

/** Each bad document, and what the message must say besides the source. */
const BAD: [string, string, RegExp][] = [
  ['not JSON', '[{"name":', /not JSON/],
  ['empty', '', /not JSON \(it is empty\)/],
  ['not an array', '{"name":"a","lowerDevice":"eth0"}', /must be a JSON array .* got an object/],
  ['entry not an object', '["eth0"]', /entry 0: must be an object .* got the string "eth0"/],
  ['missing name', '[{"lowerDevice":"eth0"}]', /entry 0: missing "name"/],
  ['missing lowerDevice', '[{"name":"a"}]', /entry 0 \(name "a"\): missing "lowerDevice"/],
  ['bad lowerDevice', '[{"name":"a","lowerDevice":"a/b"}]', /entry 0 \(name "a"\): "lowerDevice" is not a network interface name/],
  [
    'duplicate names',
    '[{"name":"a","lowerDevice":"eth0"},{"name":"a","lowerDevice":"eth1"}]',
    /entry 1 \(name "a"\): duplicate name "a" \(also entry 0\)/,
  ],
  [
    'unknown mode',
    '[{"name":"a","lowerDevice":"eth0","mode":"fast"}]',
    /entry 0 \(name "a"\): unknown mode "fast"; expected one of bridge, vepa, private, passthru/,
  ],
  ['source mode', '[{"name":"a","lowerDevice":"eth0","mode":"source"}]', /unknown mode "source"/],
  ['capacity zero', '[{"name":"a","lowerDevice":"eth0","capacity":0}]', /"capacity" must be a positive integer, got 0/],
  ['capacity negative', '[{"name":"a","lowerDevice":"eth0","capacity":-3}]', /"capacity" must be a positive integer, got -3/],
  ['capacity fraction', '[{"name":"a","lowerDevice":"eth0","capacity":1.5}]', /"capacity" must be a positive integer, got 1.5/],
  ['capacity string', '[{"name":"a","lowerDevice":"eth0","capacity":"10"}]', /"capacity" must be a positive integer, got "10"/],
  [
    'passthru capacity',
    '[{"name":"a","lowerDevice":"eth0","mode":"passthru"}]',
    /mode "passthru" .* "capacity" must be 1, got the default 100/,
  ],
  ['passthru capacity 2', '[{"name":"a","lowerDevice":"eth0","mode":"passthru","capacity":2}]', /"capacity" must be 1, got 2/],
  ['name with slash', '[{"name":"a/b","lowerDevice":"eth0"}]', /entry 0 \(name "a\/b"\): name "a\/b" is not a valid resource name/],
  ['name ending in dash', '[{"name":"net-","lowerDevice":"eth0"}]', /name "net-" is not a valid resource name/],
  ['name too long', `[{"name":"${'n'.repeat(64)}","lowerDevice":"eth0"}]`, /longer than 63 characters/],
  ['empty name', '[{"name":"","lowerDevice":"eth0"}]', /"name" must not be empty/],
  ['name not a string', '[{"name":5,"lowerDevice":"eth0"}]', /"name" must be a string, got number 5/],
  ['unknown key', '[{"name":"a","lowerDevice":"eth0","capcity":3}]', /unknown key "capcity"/],
  ['master and lowerDevice disagree', '[{"name":"a","lowerDevice":"eth0","master":"eth1"}]', /disagree/],
];

for (const [what, text, expected] of BAD) {
  t.test(`bad configuration: ${what}`, async (t) => {
    let caught: unknown;
    try {
      parseConfig(text, 'DP_MACVTAP_CONF');
    } catch (err) {
      caught = err;
    }
    t.ok(caught instanceof ConfigError, 'throws ConfigError');
    const err = caught as ConfigError;
    t.match(err.message, /^bad configuration in DP_MACVTAP_CONF/);
    t.match(err.message, expected);
    t.notMatch(err.message, /\n/, 'one line');
  });
}

t.test('socket paths that do not fit a unix socket address are rejected, naming the entry', async (t) => {
  const dir = `/${'d'.repeat(60)}`;
  t.throws(
    () => parseConfig(`[{"name":"${'n'.repeat(40)}","lowerDevice":"eth0"}]`, 'F', dir),
    /entry 0 .* more than the 107 a unix socket allows/,
  );
  t.doesNotThrow(() => parseConfig('[{"name":"short","lowerDevice":"eth0"}]', 'F', dir));
});

t.test('resource, socket and device naming follow kubevirt', async (t) => {
  t.equal(resourceName('dataplane'), 'macvtap.network.kubevirt.io/dataplane');
  t.equal(socketName('dataplane'), 'macvtap.network.kubevirt.io_dataplane');
  t.equal(deviceId('dataplane', 7), 'dataplaneMvp7');
  t.equal(resourceNameProblem('eth0'), undefined);
  t.equal(resourceNameProblem('enp0s31f6'), undefined);
});

// Host link names (xxhash64) are tested against kubevirt's own naming in test/state/naming.test.ts.

t.test('--ifindex-range parsing', async (t) => {
  t.same(parseIfindexRange('20000-20015'), { from: 20000, to: 20015 });
  t.same(parseIfindexRange('7-7'), { from: 7, to: 7 });
  t.match(parseIfindexRange('9-3'), /FROM <= TO/);
  t.match(parseIfindexRange('0-3'), /1 <= FROM/);
  t.match(parseIfindexRange('abc'), /expected FROM-TO/);
  t.match(parseIfindexRange('1-2147483648'), /<= 2147483647/);
});

t.test('discovery classification of links as the kernel reports them', { skip: rootOnly }, async (t) => {
  const ns = makeNetns(t);
  ip('-n', ns, 'link', 'add', 'v0', 'type', 'veth', 'peer', 'name', 'v1');
  ip('-n', ns, 'link', 'add', 'br0', 'type', 'bridge');
  const handle = Netns.open(`/var/run/netns/${ns}`);
  t.teardown(() => handle.close());
  const links = new Map(handle.listLinksSync().map((l) => [l.name, l]));
  t.equal(links.get('lo')?.kind, undefined, 'lo reports no kind');
  t.notOk(isDiscoverable(links.get('lo')!), 'loopback is not a NIC');
  t.notOk(isDiscoverable(links.get('v0')!), 'veth is not a NIC');
  t.notOk(isDiscoverable(links.get('br0')!), 'bridge is not a NIC');
  t.ok(isDiscoverable(links.get('v0')!, ['veth']), 'extra kinds are accepted');
  t.notOk(isDiscoverable(links.get('lo')!, ['veth']), 'loopback never is');
  // This kernel has no bond and a fresh namespace has no physical NIC: their records as decodeLink makes them.
  const nic = { ...links.get('v0')!, name: 'eth0', kind: undefined };
  t.ok(isDiscoverable(nic), 'a link without kind that is not loopback is a physical NIC');
  t.ok(isDiscoverable({ ...nic, name: 'bond0', kind: 'bond' }), 'a bond is discovered');
  t.notOk(isDiscoverable({ ...nic, kind: 'macvtap' }), 'a macvtap is not');
});
