/**
 * The glibc floor (2.28: RHEL 8, Ubuntu 20.04, Debian 10), proved from the ELF files themselves rather than
 * from the build machine: the addon for each architecture and every host executable import no symbol
 * version above GLIBC_2.28, and no GLIBCXX/CXXABI/GCC/libatomic version newer than the pinned Node for that
 * architecture needs itself (the executables are that Node plus a blob, so the addon is what could raise
 * it). A failure names each offending symbol. The addon links no library the pinned Node does not.
 */
import t from 'tap';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ARCHES, PROGRAMS, ROOT, buildAddon, buildHost, hostDir, pinnedNode, prebuildPath } from './build';
import { compareVersions, elfNeeded, elfVersionedImports, importsAbove, newestByFamily } from './elf';

const FLOOR = 'GLIBC_2.28';

/** What `arch`'s pinned Node itself imports, with GLIBC capped at the floor. */
function allowedFor(nodeBinary: string): Map<string, string> {
  const allowed = newestByFamily(elfVersionedImports(nodeBinary));
  const glibc = allowed.get('GLIBC');
  if (!glibc || compareVersions(glibc, FLOOR) > 0) allowed.set('GLIBC', FLOOR);
  return allowed;
}

for (const arch of ARCHES) {
  t.test(`linux-${arch}: the addon and the host executables need glibc <= 2.28 and nothing newer than Node`, (t) => {
    const addonBuild = buildAddon(arch);
    t.equal(addonBuild.status, 0, `build-addon --arch=${arch}: ${addonBuild.stderr}`);
    const hostBuild = buildHost(arch);
    t.equal(hostBuild.status, 0, `build-host --arch=${arch}: ${hostBuild.stderr}`);
    if (addonBuild.status !== 0 || hostBuild.status !== 0) return t.end();

    const node = pinnedNode(arch);
    const allowed = allowedFor(node);
    t.equal(allowed.get('GLIBC'), FLOOR, `the pinned Node for ${arch} itself needs exactly glibc 2.28`);
    t.comment(`allowed (from ${path.relative(ROOT, node)}): ${[...allowed.values()].join(' ')}`);

    const files = [prebuildPath(arch), ...PROGRAMS.map((p) => path.join(hostDir(arch), p))];
    for (const file of files) {
      const imports = elfVersionedImports(file);
      t.ok(imports.length > 0, `${path.relative(ROOT, file)} has versioned imports to check`);
      const families = [...newestByFamily(imports).keys()].filter((f) => !allowed.has(f));
      t.same(families, [], `${path.relative(ROOT, file)} uses no symbol family the pinned Node does not`);
      t.same(importsAbove(imports, allowed), [], `${path.relative(ROOT, file)}: no symbol above the floor`);
    }
    const addon = fs.readFileSync(prebuildPath(arch));
    for (const program of PROGRAMS) {
      t.ok(fs.readFileSync(path.join(hostDir(arch), program)).includes(addon), `${program} embeds exactly this addon`);
    }
    const nodeNeeds = new Set(elfNeeded(node));
    const extra = elfNeeded(prebuildPath(arch)).filter((lib) => !nodeNeeds.has(lib));
    t.same(extra, [], 'the addon links only libraries the pinned Node links');
    t.end();
  });
}

t.test('the check names the symbols above the floor', (t) => {
  // The checker itself, on the very imports that once broke RHEL 8 nodes (issue 13).
  const imports = [
    { symbol: 'memcpy', version: 'GLIBC_2.14' },
    { symbol: 'strerrorname_np', version: 'GLIBC_2.32' },
    { symbol: 'mknod', version: 'GLIBC_2.33' },
    { symbol: '_ZSt28__throw_bad_array_new_lengthv', version: 'GLIBCXX_3.4.29' },
  ];
  const allowed = new Map([
    ['GLIBC', FLOOR],
    ['GLIBCXX', 'GLIBCXX_3.4.21'],
  ]);
  t.same(importsAbove(imports, allowed), [
    '_ZSt28__throw_bad_array_new_lengthv@GLIBCXX_3.4.29',
    'mknod@GLIBC_2.33',
    'strerrorname_np@GLIBC_2.32',
  ]);
  t.ok(fs.existsSync(path.join(ROOT, 'package.json')));
  t.end();
});
