import t from 'tap';
import {
  ConfigError,
  ConfigProblem,
  describeProblem,
  deviceListBytes,
  isDiscoverable,
  mergeReload,
  parseConfig,
  parseIfindexRange,
  PluginConfig,
  resourceNameProblem,
  socketName,
} from '../../lib/deviceplugin';
import { deviceId, resourceName } from '../../lib/naming';
import { Netns } from '../../lib/netlink';
import { ip, makeNetns, rootOnly } from '../support/kernel';

const SOURCE = 'DP_MACVTAP_CONF';

function parse(text: string, pluginDir?: string): { config: PluginConfig; problems: ConfigProblem[] } {
  const problems: ConfigProblem[] = [];
  const config = parseConfig(text, SOURCE, pluginDir, (p) => problems.push(p));
  return { config, problems };
}

t.test('a valid configuration gets kubevirt defaults and no warning', (t) => {
  const { config, problems } = parse(
    '[{"name":"dataplane","lowerDevice":"eth0"},{"name":"vm.net-2","lowerDevice":"bond0","mode":"vepa","capacity":7}]',
  );
  t.same(config, {
    discover: false,
    resources: [
      { name: 'dataplane', lowerDevice: 'eth0', mode: 'bridge', capacity: 100 },
      { name: 'vm.net-2', lowerDevice: 'bond0', mode: 'vepa', capacity: 7 },
    ],
  });
  t.same(problems, []);
  t.end();
});

t.test('[] means discovery', (t) => {
  t.same(parse(' [] '), { config: { discover: true, resources: [] }, problems: [] });
  t.end();
});

/** Documents kubevirt's plugin accepts: what they mean, and the warning that says so (entry, key, text). */
const ACCEPTED: { what: string; text: string; resources: unknown[]; warn: [number | undefined, string | undefined, RegExp][] }[] = [
  {
    what: 'capacity 0 is the default 100',
    text: '[{"name":"a","lowerDevice":"eth0","capacity":0}]',
    resources: [{ name: 'a', lowerDevice: 'eth0', mode: 'bridge', capacity: 100 }],
    warn: [[0, 'capacity', /0 means the default 100/]],
  },
  {
    what: 'a negative capacity is the default 100',
    text: '[{"name":"a","lowerDevice":"eth0","capacity":-1}]',
    resources: [{ name: 'a', lowerDevice: 'eth0', mode: 'bridge', capacity: 100 }],
    warn: [[0, 'capacity', /-1 means the default 100/]],
  },
  {
    what: 'capacity null is the default 100',
    text: '[{"name":"a","lowerDevice":"eth0","capacity":null}]',
    resources: [{ name: 'a', lowerDevice: 'eth0', mode: 'bridge', capacity: 100 }],
    warn: [[0, 'capacity', /null means the default 100/]],
  },
  {
    what: 'an unknown key is ignored',
    text: '[{"name":"a","lowerDevice":"eth0","capcity":3}]',
    resources: [{ name: 'a', lowerDevice: 'eth0', mode: 'bridge', capacity: 100 }],
    warn: [[0, 'capcity', /unknown key, ignored/]],
  },
  {
    what: 'a duplicate name: the last entry wins',
    text: '[{"name":"a","lowerDevice":"eth0","capacity":2},{"name":"b","lowerDevice":"eth2"},{"name":"a","lowerDevice":"eth1","capacity":3}]',
    resources: [
      { name: 'b', lowerDevice: 'eth2', mode: 'bridge', capacity: 100 },
      { name: 'a', lowerDevice: 'eth1', mode: 'bridge', capacity: 3 },
    ],
    warn: [[0, 'name', /replaced by entry 2 of the same name \(the last one wins/]],
  },
  {
    what: 'keys match case-insensitively, the last of equal keys wins',
    text: '[{"NAME":"x","Name":"a","LowerDEVICE":"eth0","Capacity":3}]',
    resources: [{ name: 'a', lowerDevice: 'eth0', mode: 'bridge', capacity: 3 }],
    warn: [
      [0, 'NAME', /read as "name"/],
      [0, 'Name', /key "NAME" given again: the last one wins/],
      [0, 'Name', /read as "name"/],
      [0, 'LowerDEVICE', /read as "lowerDevice"/],
      [0, 'Capacity', /read as "capacity"/],
    ],
  },
  {
    what: 'mode in another case',
    text: '[{"name":"a","lowerDevice":"eth0","mode":"Bridge","capacity":2}]',
    resources: [{ name: 'a', lowerDevice: 'eth0', mode: 'bridge', capacity: 2 }],
    warn: [[0, 'mode', /read as "bridge"/]],
  },
  {
    what: 'no lowerDevice: offered with no devices',
    text: '[{"name":"a","capacity":2},{"name":"b","lowerDevice":null}]',
    resources: [
      { name: 'a', lowerDevice: undefined, mode: 'bridge', capacity: 2 },
      { name: 'b', lowerDevice: undefined, mode: 'bridge', capacity: 100 },
    ],
    warn: [
      [0, 'lowerDevice', /no lower device: the resource is offered with no devices/],
      [1, 'lowerDevice', /no lower device/],
    ],
  },
  {
    what: '`master`, an older name of lowerDevice',
    text: '[{"name":"a","master":"eth1","mode":"passthru","capacity":1}]',
    resources: [{ name: 'a', lowerDevice: 'eth1', mode: 'passthru', capacity: 1 }],
    warn: [[0, 'master', /read as "lowerDevice"/]],
  },
  {
    what: 'passthru offers one device',
    text: '[{"name":"a","lowerDevice":"eth0","mode":"passthru"}]',
    resources: [{ name: 'a', lowerDevice: 'eth0', mode: 'passthru', capacity: 1 }],
    warn: [[0, 'capacity', /mode "passthru" gives the whole lower device to one macvtap: 1 device is offered/]],
  },
  {
    what: 'a byte order mark',
    text: '\ufeff[{"name":"a","lowerDevice":"eth0"}]',
    resources: [{ name: 'a', lowerDevice: 'eth0', mode: 'bridge', capacity: 100 }],
    warn: [[undefined, undefined, /byte order mark, which is ignored/]],
  },
];

for (const c of ACCEPTED) {
  t.test(`accepted as kubevirt does: ${c.what}`, (t) => {
    const { config, problems } = parse(c.text);
    t.same(config, { discover: false, resources: c.resources });
    t.equal(problems.length, c.warn.length, 'one warning each');
    for (const [i, [entry, key, re]] of c.warn.entries()) {
      const p = problems[i];
      t.equal(p.level, 'warn');
      t.equal(p.entry, entry, 'names the entry');
      t.equal(p.key, key, 'names the key');
      t.match(p.problem, re);
      t.notMatch(describeProblem(p), /\n/, 'one line');
    }
    t.end();
  });
}

t.test('null means [] (discovery), with a warning', (t) => {
  const { config, problems } = parse('null');
  t.same(config, { discover: true, resources: [] });
  t.match(problems, [{ level: 'warn', problem: /null means \[\]/ }]);
  t.end();
});

/** Entries that are skipped, each beside a good one that must still be served; [text, key, message]. */
const SKIPPED: [string, string | undefined, RegExp][] = [
  ['"eth0"', undefined, /must be an object .* got a string; skipped/],
  ['null', undefined, /got null; skipped/],
  ['[1]', undefined, /got an array; skipped/],
  ['{"lowerDevice":"eth0"}', 'name', /a resource needs a name; entry skipped/],
  ['{"name":"","lowerDevice":"eth0"}', 'name', /a resource needs a name/],
  ['{"name":5,"lowerDevice":"eth0"}', 'name', /must be a string, got a number/],
  ['{"name":"a/b","lowerDevice":"eth0"}', 'name', /not a valid resource name/],
  ['{"name":"net-","lowerDevice":"eth0"}', 'name', /not a valid resource name/],
  [`{"name":"${'n'.repeat(64)}","lowerDevice":"eth0"}`, 'name', /at most 63 characters, this one has 64/],
  ['{"name":"x","lowerDevice":5}', 'lowerDevice', /must be a string, got a number/],
  ['{"name":"x","lowerDevice":"a/b"}', 'lowerDevice', /not a network interface name: it contains '\/'/],
  ['{"name":"x","lowerDevice":"a-very-long-interface"}', 'lowerDevice', /longer than the 15 bytes/],
  ['{"name":"x","lowerDevice":"eth0","mode":"fast"}', 'mode', /unknown mode; expected one of bridge, vepa, private, passthru/],
  ['{"name":"x","lowerDevice":"eth0","mode":"source"}', 'mode', /unknown mode/],
  ['{"name":"x","lowerDevice":"eth0","mode":1}', 'mode', /must be a string/],
  ['{"name":"x","lowerDevice":"eth0","capacity":2.5}', 'capacity', /written without fraction or exponent/],
  ['{"name":"x","lowerDevice":"eth0","capacity":2.0}', 'capacity', /written without fraction or exponent/],
  ['{"name":"x","lowerDevice":"eth0","capacity":1e9}', 'capacity', /written without fraction or exponent/],
  ['{"name":"x","lowerDevice":"eth0","capacity":"10"}', 'capacity', /must be an integer, got a string/],
  ['{"name":"x","lowerDevice":"eth0","capacity":1000000000}', 'capacity', /too large: a list of 1000000000 devices is more than the 4 MiB/],
  ['{"name":"x","lowerDevice":"eth0","capacity":200000}', 'capacity', /too large: a list of 200000 devices \(4\.\d MiB\)/],
  ['{"name":"x","lowerDevice":"eth0","master":"eth1"}', 'master', /disagrees with "lowerDevice" "eth0"/],
];

for (const [text, key, re] of SKIPPED) {
  t.test(`skipped, the other entry serves: ${text.slice(0, 60)}`, (t) => {
    const { config, problems } = parse(`[{"name":"good","lowerDevice":"eth9"}, ${text}]`);
    t.same(config, { discover: false, resources: [{ name: 'good', lowerDevice: 'eth9', mode: 'bridge', capacity: 100 }] });
    const errors = problems.filter((p) => p.level === 'error');
    t.equal(errors.length, 1, 'one error');
    t.equal(errors[0].entry, 1, 'names the entry by index');
    t.equal(errors[0].key, key, 'names the key');
    t.match(errors[0].problem, re);
    const line = describeProblem(errors[0]);
    t.match(line, /^DP_MACVTAP_CONF, entry 1/);
    if (key) t.match(line, new RegExp(`key "${key}"`), 'the line names the key');
    t.notMatch(line, /\n/, 'one line');
    t.ok(line.length < 400, 'short');
    t.end();
  });
}

t.test('capacity limit follows the 4 MiB list the kubelet accepts', (t) => {
  t.ok(deviceListBytes('x', 150000) < 4 * 1024 * 1024);
  t.same(parse('[{"name":"x","lowerDevice":"eth0","capacity":150000}]').config.resources[0], {
    name: 'x',
    lowerDevice: 'eth0',
    mode: 'bridge',
    capacity: 150000,
  });
  // Exact for small lists: 10 devices "xMvp0".."xMvp9", each 1+1+(1+1+5 + 1+1+9) bytes.
  t.equal(deviceListBytes('x', 10), 10 * 20);
  t.equal(deviceListBytes('x', 11), 10 * 20 + 21, 'a two-digit ID is one byte longer');
  t.end();
});

t.test('a 1 MB configuration: a huge value is reported in a short line, the good entry serves', (t) => {
  const big = 'n'.repeat(1024 * 1024);
  const { config, problems } = parse(`[{"name":"${big}","lowerDevice":"eth0"},{"name":"ok","lowerDevice":"eth0"}]`);
  t.same(
    config.resources.map((r) => r.name),
    ['ok'],
  );
  t.equal(problems.length, 1);
  t.equal(problems[0].key, 'name');
  t.match(problems[0].value, /\.\.\. \(1048578 characters\)$/);
  t.ok(describeProblem(problems[0]).length < 300, `short: ${describeProblem(problems[0]).length} characters`);
  t.end();
});

/** Whole documents nothing can be read from. */
const UNUSABLE: [string, string, RegExp][] = [
  ['not JSON', '[{"name":', /not JSON: unexpected end of input|not JSON: expected a value, found end of input at line 1, column 10/],
  ['empty', '', /not JSON: the document is empty at line 1, column 1/],
  ['only spaces', ' \n ', /the document is empty/],
  ['not an array', '{"name":"a","lowerDevice":"eth0"}', /must be a JSON array .* got an object/],
  ['a number', '5', /got a number/],
  ['trailing garbage', '[] xyz', /unexpected "x" after the end of the document at line 1, column 4/],
  [
    'multi-line',
    '[\n  {"name": "a",\n   "lowerDevice": "eth0"\n   "mode": "vepa"}\n]',
    /expected "," or "}" in an object, found "\\"" at line 4, column 4/,
  ],
  ['nested too deep', `${'['.repeat(100)}${']'.repeat(100)}`, /nested deeper than 64 levels/],
  ['a control character in a string', '["a\u0001"]', /character U\+0001 inside a string/],
];

for (const [what, text, re] of UNUSABLE) {
  t.test(`unusable document: ${what}`, (t) => {
    let caught: unknown;
    try {
      parse(text);
    } catch (err) {
      caught = err;
    }
    t.ok(caught instanceof ConfigError, 'throws ConfigError');
    const message = (caught as Error).message;
    t.match(message, /^bad configuration in DP_MACVTAP_CONF: /);
    t.match(message, re);
    t.notMatch(message, /\n/, 'one line');
    t.end();
  });
}

t.test('socket paths that do not fit a unix socket address skip the entry', (t) => {
  const dir = `/${'d'.repeat(60)}`;
  const { config, problems } = parse(`[{"name":"${'n'.repeat(40)}","lowerDevice":"eth0"},{"name":"short","lowerDevice":"eth0"}]`, dir);
  t.same(
    config.resources.map((r) => r.name),
    ['short'],
  );
  t.match(problems, [{ level: 'error', entry: 0, key: 'name', problem: /more than the 107 a unix socket allows/ }]);
  t.end();
});

t.test('a reload keeps running resources whose entries are now skipped, and only those', (t) => {
  const running = [
    { name: 'a', lowerDevice: 'eth0', mode: 'bridge' as const, capacity: 2 },
    { name: 'b', lowerDevice: 'eth1', mode: 'bridge' as const, capacity: 2 },
    { name: 'c', lowerDevice: 'eth2', mode: 'bridge' as const, capacity: 2 },
  ];
  const reload = (text: string): { config: PluginConfig; kept: string[] } => {
    const { config, problems } = parse(text);
    return mergeReload(running, config, problems);
  };
  const named = reload('[{"name":"a","lowerDevice":"eth0","capacity":5},{"name":"b","lowerDevice":"eth1","mode":"fast"}]');
  t.same(named.kept, ['b'], 'b is kept with its running configuration; c, no longer named, goes');
  t.same(
    named.config.resources.map((r) => [r.name, r.capacity]),
    [
      ['a', 5],
      ['b', 2],
    ],
  );
  const anonymous = reload('[{"name":"a","lowerDevice":"eth0"}, "garbage"]');
  t.same(anonymous.kept, ['b', 'c'], 'an entry without a usable name may have been any resource: nothing is dropped');
  t.same(reload('[]').kept, [], 'switching to discovery is explicit');
  t.end();
});

t.test('resource, socket and device naming follow kubevirt', (t) => {
  t.equal(resourceName('dataplane'), 'macvtap.network.kubevirt.io/dataplane');
  t.equal(socketName('dataplane'), 'macvtap.network.kubevirt.io_dataplane');
  t.equal(deviceId('dataplane', 7), 'dataplaneMvp7');
  t.equal(resourceNameProblem('eth0'), undefined);
  t.equal(resourceNameProblem('enp0s31f6'), undefined);
  t.end();
});

// Host link names (xxhash64) are tested against kubevirt's own naming in test/state/naming.test.ts.

t.test('--ifindex-range parsing', (t) => {
  t.same(parseIfindexRange('20000-20015'), { from: 20000, to: 20015 });
  t.same(parseIfindexRange('7-7'), { from: 7, to: 7 });
  t.match(parseIfindexRange('9-3'), /FROM <= TO/);
  t.match(parseIfindexRange('0-3'), /1 <= FROM/);
  t.match(parseIfindexRange('abc'), /expected FROM-TO/);
  t.match(parseIfindexRange('1-2147483648'), /<= 2147483647/);
  t.end();
});

t.test('discovery classification of links as the kernel reports them', { skip: rootOnly }, (t) => {
  const ns = makeNetns(t);
  ip('-n', ns, 'link', 'add', 'v0', 'type', 'veth', 'peer', 'name', 'v1');
  ip('-n', ns, 'link', 'add', 'br0', 'type', 'bridge');
  const handle = Netns.open(`/var/run/netns/${ns}`);
  t.teardown(() => handle.close());
  const links = new Map(handle.listLinksSync().map((l) => [l.name, l]));
  const link = (name: string) => {
    const l = links.get(name);
    if (!l) throw new Error(`no ${name}`);
    return l;
  };
  t.equal(link('lo').kind, undefined, 'lo reports no kind');
  t.notOk(isDiscoverable(link('lo')), 'loopback is not a NIC');
  t.notOk(isDiscoverable(link('v0')), 'veth is not a NIC');
  t.notOk(isDiscoverable(link('br0')), 'bridge is not a NIC');
  t.ok(isDiscoverable(link('v0'), ['veth']), 'extra kinds are accepted');
  t.notOk(isDiscoverable(link('lo'), ['veth']), 'loopback never is');
  // This kernel has no bond and a fresh namespace has no physical NIC: their records as decodeLink makes them.
  const nic = { ...link('v0'), name: 'eth0', kind: undefined };
  t.ok(isDiscoverable(nic), 'a link without kind that is not loopback is a physical NIC');
  t.ok(isDiscoverable({ ...nic, name: 'bond0', kind: 'bond' }), 'a bond is discovered');
  t.notOk(isDiscoverable({ ...nic, kind: 'macvtap' }), 'a macvtap is not');
  t.end();
});
