// Host link names are kubevirt's: `mvt` + 12 hex digits of xxhash64(deviceID) & 0xffffffffffff, zero-padded.
// Checked against published XXH64 vectors and, where ../shared/upstream exists, against upstream's own
// TemporaryInterfaceName (the `macvtap-tempname` binary) for IDs that cover leading zeros and odd bytes.
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import t from 'tap';
import { hostLinkName } from '../../lib/naming';

const upstream = process.env.MACVTAP_UPSTREAM_DIR ?? path.resolve(__dirname, '..', '..', '..', 'shared', 'upstream');
const tempname = path.join(upstream, 'bin', 'macvtap-tempname');

t.test('published XXH64 vectors', (t) => {
  // XXH64 seed 0: "" -> ef46db3751d8e999, "abc" -> 44bc2cf5ad770999.
  t.equal(hostLinkName(''), 'mvtdb3751d8e999');
  t.equal(hostLinkName('abc'), 'mvt2cf5ad770999');
  t.end();
});

t.test(
  "the same names as kubevirt's TemporaryInterfaceName",
  { skip: fs.existsSync(tempname) ? false : `no ${tempname}: upstream binaries absent` },
  (t) => {
    const ids = [...Array.from({ length: 600 }, (_, i) => `dataplaneMvp${i}`), 'x'.repeat(90), 'dev.0_a-b', 'ü'];
    const theirs = execFileSync(tempname, ids, { encoding: 'utf8' }).trim().split('\n');
    const ours = ids.map(hostLinkName);
    t.same(ours, theirs, `${ids.length} IDs named alike`);
    t.ok(
      ours.some((n) => n.startsWith('mvt0')),
      'including at least one whose hash has a leading zero digit (padding)',
    );
    t.end();
  },
);
