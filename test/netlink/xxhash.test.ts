// The addon's XXH64 (seed 0): the published test vectors, an independent implementation (xxhash-wasm) over
// every tail length, and upstream's own link names (`macvtap-tempname`, kubevirt's TemporaryInterfaceName: `mvt` + the low 48
// bits of the hash, 12 hex digits).
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import t from 'tap';
import xxhashWasm from 'xxhash-wasm';
import { native } from '../../lib/netlink/native';

const upstreamDir = process.env.MACVTAP_UPSTREAM_DIR ?? path.resolve(__dirname, '../../../shared/upstream');
const tempname = path.join(upstreamDir, 'bin', 'macvtap-tempname');
const hex = (v: bigint): string => v.toString(16).padStart(16, '0');

t.test('known XXH64 vectors (seed 0)', (t) => {
  const vectors: [string, string][] = [
    ['', 'ef46db3751d8e999'],
    ['a', 'd24ec4f1a98c6e5b'],
    ['abc', '44bc2cf5ad770999'],
    ['Nobody inspects the spammish repetition', 'fbcea83c8a378bf1'],
    ['The quick brown fox jumps over the lazy dog', '0b242d361fda71bc'],
  ];
  for (const [input, want] of vectors) t.equal(hex(native().xxhash64(Buffer.from(input))), want, JSON.stringify(input));
  t.end();
});

t.test('agrees with an independent implementation for lengths 0-300 and a 1 MiB input', async (t) => {
  const hasher = await xxhashWasm();
  const data = Buffer.alloc(1 << 20);
  for (let i = 0; i < data.length; i++) data[i] = (i * 2654435761) >>> 24;
  let mismatches = 0;
  for (let len = 0; len <= 300; len++) {
    const slice = data.subarray(7, 7 + len); // an unaligned start, as Buffers from the pool have
    if (native().xxhash64(slice) !== hasher.h64Raw(slice)) mismatches += 1;
  }
  t.equal(mismatches, 0, 'every stripe/tail combination');
  t.equal(native().xxhash64(data), hasher.h64Raw(data), '1 MiB');
});

t.test('argument checks: only a Buffer', (t) => {
  const xxhash64 = (data: unknown): bigint => native().xxhash64(data as Buffer);
  for (const bad of ['abc', 1, undefined, null, {}, new Uint16Array(4)]) {
    t.throws(() => xxhash64(bad), TypeError, `rejects ${Object.prototype.toString.call(bad)}`);
  }
  t.equal(typeof native().xxhash64(new Uint8Array([1, 2, 3]) as Buffer), 'bigint', 'any Uint8Array');
  t.end();
});

t.test(
  'upstream link names: mvt + the low 48 bits in hex, for 300 device IDs',
  { skip: fs.existsSync(tempname) ? false : `upstream binaries not found at ${upstreamDir} (set MACVTAP_UPSTREAM_DIR)` },
  (t) => {
    const ids: string[] = [];
    for (let i = 0; i < 300; i++) {
      // Short and long IDs (the 32-byte stripe path), PCI-like and UUID-like shapes, and non-ASCII.
      ids.push(i % 3 === 0 ? `dev${i}` : i % 3 === 1 ? `0000:${(i % 256).toString(16)}:00.${i % 8}-${'x'.repeat(i % 70)}` : `näme-${i}-€`);
    }
    const theirs = execFileSync(tempname, ids, { encoding: 'utf8' }).trim().split('\n');
    t.equal(theirs.length, ids.length, 'one name per ID');
    const ours = ids.map((id) => `mvt${hex(native().xxhash64(Buffer.from(id, 'utf8'))).slice(4)}`);
    t.same(ours, theirs, 'identical names');
    t.end();
  },
);
