/**
 * Configurations nothing can be served from, and bad arguments, at start-up: the process exits 2 with one
 * clear line that names the setting (DP_MACVTAP_CONF or the file), the entry, the key and the problem; no stack
 * trace, nothing served. (One bad entry among good ones is skipped instead: config-semantics.test.ts.)
 */
import { execFileSync } from 'node:child_process';
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
  /** Entries logged as skipped on stdout before the exit. */
  skipped?: number;
}

const ENV_CASES: Case[] = [
  {
    what: 'not JSON',
    env: '[{"name": "a",',
    expect: /^bad configuration in DP_MACVTAP_CONF: not JSON: expected a key in quotes, found end of input at line 1, column 15/,
  },
  {
    what: 'multi-line invalid JSON',
    env: '[\n  {"name": "a",\n   "lowerDevice": "lower0"\n   "mode": "vepa"}\n]',
    expect:
      /^bad configuration in DP_MACVTAP_CONF: not JSON: expected "," or "}" in an object, found "\\"" at line 4, column 4; expected an array/,
  },
  { what: 'empty', env: '', expect: /^bad configuration in DP_MACVTAP_CONF: not JSON: the document is empty/ },
  {
    what: 'not an array',
    env: '{"name":"a","lowerDevice":"lower0"}',
    expect: /^bad configuration in DP_MACVTAP_CONF: must be a JSON array/,
  },
  {
    what: 'the only entry has no name',
    env: '[{"lowerDevice":"lower0"}]',
    expect: /^nothing to serve: every entry was skipped; DP_MACVTAP_CONF, entry 0, key "name": a resource needs a name; entry skipped$/,
    skipped: 1,
  },
  {
    what: 'every entry skipped',
    env: '[{"name":"a","lowerDevice":"lower0","mode":"bridged"},{"name":"b","lowerDevice":"lower0","capacity":2.5},{"name":"my net","lowerDevice":"lower0"}]',
    expect:
      /^nothing to serve: every entry was skipped; DP_MACVTAP_CONF, entry 0 \(name "a"\), key "mode" = "bridged": unknown mode; expected one of bridge, vepa, private, passthru; entry skipped \(and 2 more, logged on stdout\)$/,
    skipped: 3,
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
  fs.writeFileSync(badFile, '[{"name":"a","lowerDevice":"lower0","capacity":-1.5}]');
  const fifo = path.join(dir, 'fifo.json');
  execFileSync('mkfifo', [fifo]);
  const cases: Case[] = [
    ...ENV_CASES,
    ...ARG_CASES,
    {
      what: 'file: its only entry skipped',
      file: badFile,
      expect: new RegExp(
        `^nothing to serve: every entry was skipped; ${badFile}, entry 0 \\(name "a"\\), key "capacity" = -1.5: must be an integer written without fraction or exponent`,
      ),
      skipped: 1,
    },
    {
      what: 'file: missing',
      file: path.join(dir, 'nope.json'),
      expect: new RegExp(`^bad configuration in ${dir}/nope.json: cannot read the file: ENOENT$`),
    },
    {
      what: 'file: a FIFO (no writer: must not hang)',
      file: fifo,
      expect: new RegExp(`^bad configuration in ${fifo}: cannot read the file: it is a FIFO, not a regular file$`),
    },
    {
      what: 'file: a directory',
      file: dir,
      expect: new RegExp(`^bad configuration in ${dir}: cannot read the file: it is a directory, not a regular file$`),
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
      t.equal(daemon.garbage.length, 0, `${c.what}: stdout holds only JSON log lines`);
      t.same(
        daemon.logs.map((l) => [l.level, l.msg]),
        Array.from({ length: c.skipped ?? 0 }, () => ['error', 'configuration entry skipped']),
        `${c.what}: ${c.skipped ? 'each skipped entry is logged' : 'nothing on stdout'}`,
      );
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
