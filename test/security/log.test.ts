// The logger (lib/util/log.ts) with every character a tenant can put in a string: each event is exactly one line
// that parses back to the very same strings, so no input can split an event or forge another one.
import t from 'tap';
import { Logger } from '../../lib/util/log';

t.test('every control character, NUL, lone surrogates, U+2028/U+2029: one line, the same string back', (t) => {
  const lines: string[] = [];
  const log = new Logger({ level: 'debug', sink: (l) => lines.push(l), context: { program: 'test' } });
  const hostile: string[] = [];
  for (let c = 0; c < 0x20; c++) hostile.push(`a${String.fromCharCode(c)}b`);
  hostile.push('\u007f', '\u0085', '\u2028', '\u2029', '\ud800', '\udfff', 'x\ud800\ud800y', 'evil:x:0:0::/root:/bin/sh\n* * * * * root x');
  for (const value of hostile) log.warn(`msg ${value}`, { deviceID: value, nested: { name: value } });
  t.equal(lines.length, hostile.length, 'one sink call per event');
  lines.forEach((line, i) => {
    t.ok(line.endsWith('\n') && line.indexOf('\n') === line.length - 1, `event ${i}: exactly one line`);
    t.notOk(/[\u0000-\u001f\u2028\u2029]/.test(line.slice(0, -1)), `event ${i}: no raw control character or separator`); // eslint-disable-line no-control-regex
    const back = JSON.parse(line) as { msg: string; deviceID: string; nested: { name: string } };
    // Lone surrogates are escaped by JSON.stringify (\ud800) and parse back to themselves.
    const want = hostile[i];
    t.equal(back.deviceID, want, `event ${i}: the field parses back unchanged`);
    t.equal(back.nested.name, want, `event ${i}: nested too`);
    t.equal(back.msg, `msg ${want}`, `event ${i}: and the message`);
  });
  t.end();
});
