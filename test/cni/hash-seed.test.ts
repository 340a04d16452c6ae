// The bound on what the CNI executable parses under its snapshot's known hash seed (lib/cni/hash-seed.ts).
import t from 'tap';
import { fixedHashSeed, MAX_FIXED_SEED_STRINGS, mayHaveMoreStrings } from '../../lib/cni/hash-seed';

t.test('the seed is fixed when the last rehash flag says so', (t) => {
  t.equal(fixedHashSeed([]), false, 'no flag: the random seed of a default start');
  t.equal(fixedHashSeed(['--v8-pool-size=1', '--no-rehash-snapshot']), true, "the executable's own flags");
  t.equal(fixedHashSeed(['--no-rehash-snapshot', '--rehash-snapshot']), false, 'the re-run: --node-options appended a random seed');
  t.equal(fixedHashSeed(['--rehash-snapshot', '--no-rehash-snapshot']), true, 'the last one wins either way');
  t.equal(fixedHashSeed(process.execArgv), false, 'this test process has a random seed');
  t.end();
});

t.test('strings are counted by their quotes, erring towards a re-run', (t) => {
  const strings = (n: number): string => JSON.stringify({ list: Array.from({ length: n - 1 }, (_, i) => `s${i}`) });
  t.equal(mayHaveMoreStrings(strings(MAX_FIXED_SEED_STRINGS), MAX_FIXED_SEED_STRINGS), false, 'exactly the limit (keys count)');
  t.equal(mayHaveMoreStrings(strings(MAX_FIXED_SEED_STRINGS + 1), MAX_FIXED_SEED_STRINGS), true, 'one more');
  t.equal(mayHaveMoreStrings('{"a":"\\"\\"\\""}', 2), true, 'escaped quotes count as well: 2 strings, 8 quotes');
  t.equal(mayHaveMoreStrings('', 0), false, 'empty stdin');
  t.equal(mayHaveMoreStrings('"', 0), true, 'an odd quote past a zero limit');
  const config = JSON.stringify({ cniVersion: '1.1.0', name: 'dataplane', type: 'macvtap', deviceID: 'dataplaneMvp1', mtu: 1400 });
  t.equal(mayHaveMoreStrings(config, MAX_FIXED_SEED_STRINGS), false, 'a real configuration is far below');
  t.end();
});
