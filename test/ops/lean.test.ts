/**
 * What the operations cost when they are off, and where prom-client may not go: the CNI bundle never
 * contains it, and the daemon loads it (and the pod-resources API) only when metrics (reclamation) are on.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import t from 'tap';

const ROOT = path.resolve(__dirname, '../..');
const CNI_BUNDLE = path.join(ROOT, 'dist/bin/macvtap.js');

t.test('the CNI bundle has no prom-client, HTTP server or operations code', (t) => {
  if (!fs.existsSync(CNI_BUNDLE)) throw new Error(`${CNI_BUNDLE} is missing: run \`npm run build\``);
  const bundle = fs.readFileSync(CNI_BUNDLE, 'utf8');
  for (const needle of ['prom-client', 'macvtap_allocate_requests_total', 'PodResourcesLister', 'node:http"', 'lib/deviceplugin/']) {
    t.notOk(bundle.includes(needle), `no ${JSON.stringify(needle)} in the CNI bundle`);
  }
  const map = JSON.parse(fs.readFileSync(`${CNI_BUNDLE}.map`, 'utf8')) as { sources: string[] };
  t.same(
    map.sources.filter((s) => /prom-client|deviceplugin|podresources/.test(s)),
    [],
    'no such module among the bundle sources',
  );
  t.end();
});

t.test('the daemon loads prom-client, the HTTP server and reclamation only when they are on', (t) => {
  // Every module the daemon's entry requires at load time (--help exits right after the imports ran). gRPC
  // itself loads the bare `http` module; ours is `node:http`, only in http.ts.
  const script = `
    const Module = require('node:module');
    const seen = new Set();
    const load = Module._load;
    Module._load = function (request) { seen.add(request); return load.apply(this, arguments); };
    process.on('exit', () => process.stderr.write(JSON.stringify([...seen])));
    process.argv = [process.argv[0], 'macvtap-deviceplugin', '--help'];
    require(${JSON.stringify(path.join(ROOT, 'dist/bin/macvtap-deviceplugin.js'))});
  `;
  const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8' });
  t.equal(r.status, 0, 'the daemon printed its usage');
  const loaded = JSON.parse(r.stderr) as string[];
  t.ok(loaded.includes('@grpc/grpc-js'), 'the probe sees the imports (gRPC is loaded at start)');
  for (const lazy of ['./metrics', './http', './reclaim', 'node:http']) t.notOk(loaded.includes(lazy), `${lazy} is not loaded`);
  t.same(
    loaded.filter((m) => m.startsWith('prom-client')),
    [],
    'no prom-client module is loaded',
  );
  t.end();
});
