// Two processes racing ADD/DEL of the same device for 500 rounds (root only). Each process runs the plugin's own
// entry point (runPlugin, in-process, one invocation after the other, as a runtime would spawn them) in the host
// namespace against its own pod. The device's lock serializes them: every ADD either gets the device or is
// refused with code 11 while the other pod holds it, every DEL succeeds, and at the end nothing is left over: no
// deadlock, no leak, the device back on the host as it was, no record or lock file.
import { spawn } from 'node:child_process';
import * as path from 'node:path';
import t from 'tap';
import { makeNetns, rootOnly } from '../support/kernel';
import { addMacvtap, ipLink, makeScene, stateEntries, writeAllocation } from './harness';

// Many real processes and kernel moves: longer than .taprc's per-file default on a loaded machine.
t.setTimeout(900_000);

const ROUNDS = 500;
const PLUGIN_LIB = path.resolve(__dirname, '..', '..', 'dist', 'lib', 'cni', 'plugin.js');

interface Tally {
  attached: number;
  refused: number;
  other: string[];
}

/** One racer: ROUNDS of ADD then DEL of `deviceID` into `netns`, reporting a tally on stdout. */
function racer(host: string, stateDir: string, netns: string, deviceID: string, name: string): Promise<Tally> {
  const script = `
    const { runPlugin } = require(${JSON.stringify(PLUGIN_LIB)});
    const tally = { attached: 0, refused: 0, other: [] };
    const config = JSON.stringify({ cniVersion: '1.1.0', name: 'race', type: 'macvtap', deviceID: ${JSON.stringify(deviceID)}, mtu: 1400 });
    (async () => {
      for (let i = 0; i < ${ROUNDS}; i++) {
        const env = { CNI_CONTAINERID: ${JSON.stringify(name)} + '-' + i, CNI_IFNAME: 'net1', CNI_NETNS: ${JSON.stringify(netns)},
          CNI_PATH: '/opt/cni/bin', MACVTAP_CNI_STATE_DIR: ${JSON.stringify(stateDir)} };
        const add = await runPlugin({ ...env, CNI_COMMAND: 'ADD' }, () => config);
        const code = add.exitCode === 0 ? 0 : JSON.parse(add.stdout).code;
        if (code === 0) tally.attached++;
        else if (code === 11) tally.refused++;
        else tally.other.push('ADD ' + i + ': ' + add.stdout);
        const del = await runPlugin({ ...env, CNI_COMMAND: 'DEL' }, () => config);
        if (del.exitCode !== 0) tally.other.push('DEL ' + i + ': ' + del.stdout);
      }
      process.stdout.write(JSON.stringify(tally));
    })();`;
  const child = spawn('ip', ['netns', 'exec', host, process.execPath, '-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
  return new Promise((resolve, reject) =>
    child.on('close', (code) => {
      if (code !== 0) reject(new Error(`racer ${name} exited ${code}: ${err.slice(-2000)}`));
      else resolve(JSON.parse(out) as Tally);
    }),
  );
}

t.test(
  `two processes race ADD/DEL of one device for ${ROUNDS} rounds: no deadlock, no leak`,
  { skip: rootOnly, timeout: 900_000 },
  async (t) => {
    const s = makeScene(t, { indexes: 1 });
    const idx = s.indexes[0];
    const dev = writeAllocation(s, { deviceID: 'raceMvp9', ifindex: idx });
    addMacvtap(s, dev.linkName, idx, 'bridge', ['address', '02:00:00:00:0e:01']);
    const before = ipLink(s.host, dev.linkName);
    const pods = [makeNetns(t, 'mvcx'), makeNetns(t, 'mvcx')];
    const tallies = await Promise.all(pods.map((p, i) => racer(s.host, s.stateDir, `/var/run/netns/${p}`, dev.deviceID, `racer${i}`)));
    for (const [i, tally] of tallies.entries()) {
      t.same(tally.other, [], `racer ${i}: every ADD attached or was refused with 11, every DEL succeeded`);
      t.equal(tally.attached + tally.refused, ROUNDS, `racer ${i}: ${tally.attached} attached, ${tally.refused} refused`);
    }
    t.ok(tallies[0].attached + tallies[1].attached > 0, 'the device changed hands');
    const after = ipLink(s.host, dev.linkName);
    t.equal(after?.ifindex, idx, 'the device is back on the host');
    t.equal(after?.address, before?.address, 'with its own MAC');
    t.equal(after?.mtu, before?.mtu, 'and MTU');
    for (const p of pods) t.notOk(ipLink(p, 'net1'), `${p} is empty`);
    t.same(stateEntries(s, 'attachments'), [], 'no attachment record or temp file left');
    t.same(stateEntries(s, 'locks'), [], 'no lock file left');
  },
);
