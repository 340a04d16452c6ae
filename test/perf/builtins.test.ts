// Which of Node's built-in modules a CNI call loads. Each one loaded is compiled (or read from the runtime's code
// cache) and evaluated in every call: node:crypto brought some twenty modules (crypto and streams) for six random
// bytes, perf_hooks a dozen for a debug log's timings. Spawned as production runs it (the bundle, in a scratch
// host namespace, against the real kernel), with a probe that records process.moduleLoadList at exit. `env`
// sets the plugin's NODE_OPTIONS last: tap adds its own (process tracking, which loads streams and crypto) to
// every child it spawns, and they would be counted as the plugin's.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import t from 'tap';
import { rootOnly } from '../support/kernel';
import { addMacvtap, conf, makeScene, PLUGIN, type Scene } from '../cni/harness';

/** Modules none of the plugin's commands needs; the first five were loaded by every ADD before. */
const HEAVY = ['crypto', 'internal/crypto/random', 'stream', 'perf_hooks', 'timers/promises', 'http', 'net', 'worker_threads'];

const PROBE = `process.on('exit', () => require('node:fs').writeFileSync(process.env.PROBE_OUT, JSON.stringify(process.moduleLoadList)));\n`;

/** The plugin run in the scene's host namespace with only the probe as NODE_OPTIONS; what it loaded. */
function probed(
  s: Scene,
  probe: string,
  out: string,
  command: string,
  config: unknown,
): { status: number | null; stdout: string; loaded: string[] } {
  const r = spawnSync('ip', ['netns', 'exec', s.host, 'env', `NODE_OPTIONS=--require ${probe}`, process.execPath, PLUGIN], {
    env: {
      PATH: process.env.PATH,
      CNI_COMMAND: command,
      CNI_CONTAINERID: 'c0ffee01',
      CNI_IFNAME: 'net1',
      CNI_NETNS: s.netns,
      MACVTAP_CNI_STATE_DIR: s.stateDir,
      MACVTAP_CNI_OWNERSHIP: 'off',
      PROBE_OUT: out,
    },
    input: JSON.stringify(config),
    encoding: 'utf8',
  });
  return { status: r.status, stdout: r.stdout, loaded: JSON.parse(fs.readFileSync(out, 'utf8')) as string[] };
}

t.test('ADD, CHECK, DEL and VERSION load none of the heavy built-in modules', { skip: rootOnly }, (t) => {
  const s = makeScene(t, { indexes: 1 });
  addMacvtap(s, 'mvtlean', s.indexes[0]);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'macvtap-builtins-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const probe = path.join(dir, 'probe.cjs');
  fs.writeFileSync(probe, PROBE);
  const config = conf(s, { deviceID: 'mvtlean' });

  let prevResult: unknown;
  for (const command of ['ADD', 'CHECK', 'DEL', 'VERSION']) {
    const r = probed(s, probe, path.join(dir, `${command}.json`), command, command === 'CHECK' ? { ...config, prevResult } : config);
    t.equal(r.status, 0, `${command} succeeded (${r.stdout.slice(0, 200)})`);
    if (command === 'ADD') prevResult = JSON.parse(r.stdout);
    t.ok(r.loaded.includes('NativeModule fs'), `${command}: the probe sees the built-ins (fs is among them)`);
    t.same(
      HEAVY.filter((m) => r.loaded.includes(`NativeModule ${m}`)),
      [],
      `${command}: none of ${HEAVY.join(', ')}`,
    );
  }
  t.end();
});
