// bin/macvtap.ts answers VERSION without loading the rest of the plugin. Its answer must be the full path's
// (lib/cni/plugin's runPlugin) for every stdin a runtime can send, well-formed or not: spawned as production
// runs it (dist/bin/macvtap.js, the esbuild bundle of bin/macvtap.ts), compared with runPlugin in-process.
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import t from 'tap';
import { runPlugin } from '../../lib/cni/plugin';

const PLUGIN = path.resolve(__dirname, '..', '..', 'dist', 'bin', 'macvtap.js');

const INPUTS = [
  '{"cniVersion":"0.4.0"}',
  '{"cniVersion":"1.1.0","name":"n","type":"macvtap"}',
  '{"cniVersion":"0.2.0"}',
  '{"cniVersion":"9.9.9"}',
  '{"cniVersion":4}',
  '{}',
  '[]',
  'null',
  '"0.4.0"',
  'not json',
  '',
];

for (const input of INPUTS) {
  t.test(`VERSION with stdin ${JSON.stringify(input)}: the same answer as the full path`, async (t) => {
    const full = await runPlugin({ CNI_COMMAND: 'VERSION' }, () => input);
    const r = spawnSync(process.execPath, [PLUGIN], { env: { PATH: process.env.PATH, CNI_COMMAND: 'VERSION' }, input, encoding: 'utf8' });
    t.equal(r.stdout, full.stdout, 'same stdout');
    t.equal(r.status, full.exitCode, `same exit code (${full.exitCode})`);
    t.match(JSON.parse(r.stdout), { cniVersion: String, supportedVersions: Array }, 'a version result');
  });
}
