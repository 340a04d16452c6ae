/**
 * Bad configurations and arguments at start-up: the process exits non-zero with one clear line that names the
 * setting (DP_MACVTAP_CONF or the file), the entry and the problem; no stack trace, nothing served.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import t from 'tap';
import { makeLowerNetns, rootOnly } from '../support/kernel';
import { spawnDaemon, tempDir } from './helpers';

interface Case {
  what: string;
  env?: string;
  file?: string;
  args?: string[];
  expect: RegExp;
}

const ENV_CASES: Case[] = [
  { what: 'not JSON', env: '[{"name": "a",', expect: /^bad configuration in DP_MACVTAP_CONF: not JSON/ },
  { what: 'empty', env: '', expect: /^bad configuration in DP_MACVTAP_CONF: not JSON \(it is empty\)/ },
  {
    what: 'not an array',
    env: '{"name":"a","lowerDevice":"lower0"}',
    expect: /^bad configuration in DP_MACVTAP_CONF: must be a JSON array/,
  },
  { what: 'missing name', env: '[{"lowerDevice":"lower0"}]', expect: /DP_MACVTAP_CONF, entry 0: missing "name"$/ },
  {
    what: 'missing lowerDevice',
    env: '[{"name":"ok"},{"name":"b"}]',
    expect: /DP_MACVTAP_CONF, entry 0 \(name "ok"\): missing "lowerDevice"$/,
  },
  {
    what: 'duplicate names',
    env: '[{"name":"a","lowerDevice":"lower0"},{"name":"a","lowerDevice":"peer0"}]',
    expect: /DP_MACVTAP_CONF, entry 1 \(name "a"\): duplicate name "a" \(also entry 0\)$/,
  },
  {
    what: 'unknown mode',
    env: '[{"name":"a","lowerDevice":"lower0","mode":"bridged"}]',
    expect: /entry 0 \(name "a"\): unknown mode "bridged"; expected one of bridge, vepa, private, passthru$/,
  },
  {
    what: 'capacity 0',
    env: '[{"name":"a","lowerDevice":"lower0","capacity":0}]',
    expect: /entry 0 \(name "a"\): "capacity" must be a positive integer, got 0$/,
  },
  {
    what: 'capacity not an integer',
    env: '[{"name":"a","lowerDevice":"lower0","capacity":2.5}]',
    expect: /"capacity" must be a positive integer, got 2.5$/,
  },
  {
    what: 'passthru with capacity',
    env: '[{"name":"a","lowerDevice":"lower0","mode":"passthru","capacity":4}]',
    expect: /entry 0 \(name "a"\): mode "passthru" .* "capacity" must be 1, got 4$/,
  },
  {
    what: 'invalid resource name',
    env: '[{"name":"my net","lowerDevice":"lower0"}]',
    expect: /entry 0 \(name "my net"\): name "my net" is not a valid resource name/,
  },
  { what: 'unset', expect: /^no configuration: set DP_MACVTAP_CONF .* or pass --config FILE$/ },
];

const ARG_CASES: Case[] = [
  { what: 'unknown flag', env: '[]', args: ['--frobnicate'], expect: /^unknown argument "--frobnicate" \(see --help\)$/ },
  { what: 'flag without value', env: '[]', args: ['--state-dir'], expect: /^--state-dir needs a value$/ },
  {
    what: 'bad log level',
    env: '[]',
    args: ['--log-level', 'loud'],
    expect: /^--log-level must be one of debug, info, warn, error, got "loud"$/,
  },
  { what: 'bad ifindex range', env: '[]', args: ['--ifindex-range=9-3'], expect: /^--ifindex-range: expected 1 <= FROM <= TO/ },
];

t.test('bad start-up configuration: one clear line, non-zero exit, nothing served', { skip: rootOnly }, async (t) => {
  const { ns } = makeLowerNetns(t);
  const dir = tempDir(t);
  const pluginDir = path.join(dir, 'dp');
  fs.mkdirSync(pluginDir);
  const badFile = path.join(dir, 'bad.json');
  fs.writeFileSync(badFile, '[{"name":"a","lowerDevice":"lower0","capacity":-1}]');
  const cases: Case[] = [
    ...ENV_CASES,
    ...ARG_CASES,
    {
      what: 'file: bad entry',
      file: badFile,
      expect: new RegExp(`^bad configuration in ${badFile}, entry 0 \\(name "a"\\): "capacity" must be a positive integer, got -1$`),
    },
    {
      what: 'file: missing',
      file: path.join(dir, 'nope.json'),
      expect: new RegExp(`^bad configuration in ${dir}/nope.json: cannot read the file: ENOENT$`),
    },
  ];
  await Promise.all(
    cases.map(async (c) => {
      const args = [
        '--device-plugin-path',
        pluginDir,
        '--state-dir',
        path.join(dir, 'state'),
        ...(c.file ? ['--config', c.file] : []),
        ...(c.args ?? []),
      ];
      const daemon = spawnDaemon(t, ns, args, c.env);
      const exit = await daemon.exited;
      t.equal(exit.code, 2, `${c.what}: exit code 2`);
      const lines = daemon.stderr.split('\n').filter(Boolean);
      t.equal(lines.length, 1, `${c.what}: one line`);
      t.match(lines[0], /^macvtap-deviceplugin: /, `${c.what}: names the program`);
      t.match(lines[0].replace(/^macvtap-deviceplugin: /, ''), c.expect, `${c.what}: says what is wrong`);
      t.notMatch(daemon.stderr, /\n\s+at /, `${c.what}: no stack trace`);
      t.equal(daemon.logs.length + daemon.garbage.length, 0, `${c.what}: nothing on stdout`);
    }),
  );
  t.same(fs.readdirSync(pluginDir), [], 'no socket was ever made');
  t.notOk(fs.existsSync(path.join(dir, 'state')), 'no state written');
});

t.test('--help prints usage and exits 0', { skip: rootOnly }, async (t) => {
  const { ns } = makeLowerNetns(t);
  const daemon = spawnDaemon(t, ns, ['--help']);
  let out = '';
  daemon.child.stdout?.on('data', (d: string) => (out += d));
  const exit = await daemon.exited;
  t.equal(exit.code, 0);
  t.match(out + daemon.garbage.join('\n'), /--device-plugin-path DIR/);
});
