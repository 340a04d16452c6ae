/**
 * The configuration's JSON reader agrees with JSON.parse on every valid document and keeps what JSON.parse
 * drops (members in order with duplicates, how numbers were written, where a syntax error is).
 */
import t from 'tap';
import { JsonNumber, JsonObject, JsonSyntaxError, JsonValue, parseJson } from '../../lib/deviceplugin/json';

/** The reader's value as JSON.parse would give it (last duplicate wins). */
function plain(v: JsonValue): unknown {
  if (v instanceof JsonNumber) return v.value;
  if (v instanceof JsonObject) return Object.fromEntries(v.members.map(([k, x]) => [k, plain(x)]));
  if (Array.isArray(v)) return v.map(plain);
  return v;
}

const VALID = [
  '[]',
  ' {"a" : [1, -2, 3.5, -0.25e+3, 1E2, 0], "b": {"c": null, "d": true, "e": false}} ',
  '"\\u00e9\\n\\t\\"\\\\\\/\\b\\f\\r"',
  '"\ud83d\ude00 é"',
  '[{"name":"a","lowerDevice":"eth0","capacity":100}]',
  '-0',
];

for (const text of VALID) {
  t.test(`agrees with JSON.parse: ${text.slice(0, 40)}`, (t) => {
    t.same(plain(parseJson(text)), JSON.parse(text));
    t.end();
  });
}

t.test('members in order with duplicates; numbers as written', (t) => {
  const v = parseJson('{"name":"a","Name":"b","name":"c","n":2.0,"m":20}');
  if (!(v instanceof JsonObject)) throw new Error('not an object');
  t.same(
    v.members.map(([k]) => k),
    ['name', 'Name', 'name', 'n', 'm'],
  );
  const n = v.members[3][1] as JsonNumber;
  t.equal(n.raw, '2.0');
  t.equal(n.isIntegerLiteral, false);
  t.equal((v.members[4][1] as JsonNumber).isIntegerLiteral, true);
  t.end();
});

const INVALID: [string, RegExp][] = [
  ['', /the document is empty at line 1, column 1/],
  ['[1,]', /expected a value, found "]" at line 1, column 4/],
  ['{"a" 1}', /expected ":" after a key, found "1" at line 1, column 6/],
  ['{a:1}', /expected a key in quotes, found "a"/],
  ['[01]', /expected "," or "]" in an array, found "1"/],
  ['["\\x"]', /bad escape \\x in a string/],
  ['["\\u12"]', /bad \\u escape/],
  ['"abc', /unterminated string at line 1, column 1/],
  ['[1]\n\n  x', /unexpected "x" after the end of the document at line 3, column 3/],
  ['[-]', /expected a value, found "-"/],
  ['[NaN]', /expected a value, found "N"/],
  ['\ufeff[]', /expected a value, found character U\+FEFF/],
  [`${'['.repeat(65)}${']'.repeat(65)}`, /nested deeper than 64 levels/],
];

for (const [text, re] of INVALID) {
  t.test(`syntax error, one line with its place: ${JSON.stringify(text).slice(0, 30)}`, (t) => {
    t.throws(() => parseJson(text), JsonSyntaxError);
    try {
      parseJson(text);
    } catch (err) {
      t.match((err as Error).message, re);
      t.notMatch((err as Error).message, /\n/);
    }
    t.end();
  });
}

t.test('64 levels are fine', (t) => {
  t.doesNotThrow(() => parseJson(`${'['.repeat(64)}${']'.repeat(64)}`));
  t.end();
});
