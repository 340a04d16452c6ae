/**
 * One Node everywhere: the pinned release (deploy/runtime/package.json, the npm registry's node-linux-<arch>
 * locked with its integrity) runs this test suite and the processes it spawns, is what the addon is built
 * against, and is what package.json, @types/node and the README state.
 */
import t from 'tap';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ARCHES, HOST_ARCH, ROOT, pinnedVersion } from './build';

const PINNED = pinnedVersion();
const readJson = <T>(file: string): T => JSON.parse(fs.readFileSync(path.join(ROOT, file), 'utf8')) as T;
const hostPackage = path.join(ROOT, 'node_modules', `node-linux-${HOST_ARCH}`);

t.test('the suite runs on the pinned Node, and so does a `node` it spawns by name', (t) => {
  t.equal(process.version, `v${PINNED}`);
  t.equal(fs.realpathSync(process.execPath), fs.realpathSync(path.join(hostPackage, 'bin', 'node')), 'from node_modules/node-linux-<arch>');
  const child = spawnSync('node', ['-p', 'process.version + " " + process.execPath'], { encoding: 'utf8' });
  const [version, execPath] = child.stdout.trim().split(' ');
  t.equal(version, `v${PINNED}`, 'PATH leads to it first');
  t.equal(fs.realpathSync(execPath), fs.realpathSync(process.execPath));
  t.end();
});

t.test('both architectures are pinned to one exact version and locked with their integrity', (t) => {
  const runtime = readJson<{ version: string; optionalDependencies: Record<string, string> }>('deploy/runtime/package.json');
  const lock = readJson<{ packages: Record<string, { version?: string; integrity?: string; cpu?: string[] | string; dev?: boolean }> }>(
    'package-lock.json',
  );
  t.equal(runtime.version, PINNED, 'the runtime package is named after the version it pins');
  for (const arch of ARCHES) {
    t.equal(runtime.optionalDependencies[`node-linux-${arch}`], PINNED, `node-linux-${arch} pinned exactly`);
    const entry = lock.packages[`node_modules/node-linux-${arch}`];
    t.equal(entry?.version, PINNED, `the lockfile locks node-linux-${arch}@${PINNED}`);
    t.match(entry?.integrity, /^sha512-[A-Za-z0-9+/]{86}==$/, 'with its sha512');
    t.equal(entry?.dev, true, 'as a development dependency (never installed by consumers of the library)');
  }
  t.equal(lock.packages['node_modules/macvtap-cni-runtime']?.version ?? PINNED, PINNED);
  t.end();
});

t.test('package.json, @types/node, the Dockerfile and the README agree with it', (t) => {
  const major = PINNED.split('.')[0];
  const pkg = readJson<{ engines: { node: string }; devDependencies: Record<string, string> }>('package.json');
  t.equal(pkg.engines.node, `>=${major}`);
  t.match(pkg.devDependencies['@types/node'], new RegExp(`^\\^${major}\\.`), `@types/node ^${major}`);
  t.equal(readJson<{ version: string }>('node_modules/@types/node/package.json').version.split('.')[0], major, 'installed');
  t.equal(pkg.devDependencies['macvtap-cni-runtime'], 'file:deploy/runtime');
  const dockerfile = fs.readFileSync(path.join(ROOT, 'deploy', 'Dockerfile'), 'utf8');
  t.notMatch(dockerfile, /FROM\s+node:/, 'the image build takes Node from the lockfile, not from a node base image');
  t.match(dockerfile, /npm ci/);
  const readme = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8');
  const section = readme.slice(readme.indexOf('## Host executables'), readme.indexOf('\n## ', readme.indexOf('## Host executables') + 3));
  t.match(section, `**The runtime is pinned**: Node.js ${PINNED}`, "the README's Host executables section names the pinned version");
  t.notMatch(readme, /node:\d+-/, 'and no node base image');
  t.end();
});

t.test("the addon is built against the pinned Node's headers", (t) => {
  const config = fs.readFileSync(path.join(ROOT, 'build', 'config.gypi'), 'utf8');
  t.equal(/"nodedir": "([^"]+)"/.exec(config)?.[1], hostPackage, 'node-gyp was configured with the runtime package as nodedir');
  const version = fs.readFileSync(path.join(hostPackage, 'include', 'node', 'node_version.h'), 'utf8');
  t.equal(
    ['MAJOR', 'MINOR', 'PATCH'].map((p) => new RegExp(`#define NODE_${p}_VERSION (\\d+)`).exec(version)?.[1]).join('.'),
    PINNED,
    'and those headers are the pinned release',
  );
  const deps = path.join(ROOT, 'build', 'Release', '.deps', 'Release', 'obj.target', 'macvtap_native', 'native', 'addon.o.d');
  const headers = [...fs.readFileSync(deps, 'utf8').matchAll(/(\S+\/node_api\.h)/g)].map((m) => m[1]);
  t.ok(headers.length > 0, 'the compiler read node_api.h');
  t.same([...new Set(headers)], [path.join(hostPackage, 'include', 'node', 'node_api.h')], 'from the runtime package only');
  t.end();
});
