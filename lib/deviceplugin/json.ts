/**
 * A strict JSON (RFC 8259) reader for the device plugin's configuration that keeps what JSON.parse throws away
 * and kubevirt's plugin (Go's encoding/json) depends on:
 * - every member of an object, in order, duplicates included (Go lets the last of equal-folded keys win);
 * - how each number was written (Go refuses `2.0` or `1e3` for an integer field);
 * - where a syntax error is, as line and column, in a one-line message that is the same on every Node version
 *   (V8's own messages differ between versions and can quote a multi-line snippet of the input).
 * Nesting is bounded, so a hostile document cannot exhaust the stack.
 */

/** A number as written in the document. */
export class JsonNumber {
  readonly raw: string;
  constructor(raw: string) {
    this.raw = raw;
  }
  get value(): number {
    return Number(this.raw);
  }
  /** Written without fraction or exponent (what Go accepts for an int). */
  get isIntegerLiteral(): boolean {
    return /^-?\d+$/.test(this.raw);
  }
}

/** An object's members in document order, duplicates kept. */
export class JsonObject {
  readonly members: [string, JsonValue][] = [];
}

export type JsonValue = null | boolean | string | JsonNumber | JsonValue[] | JsonObject;

export class JsonSyntaxError extends Error {
  readonly line: number;
  readonly column: number;
  constructor(problem: string, line: number, column: number) {
    super(`${problem} at line ${line}, column ${column}`);
    this.name = 'JsonSyntaxError';
    this.line = line;
    this.column = column;
  }
}

export const MAX_DEPTH = 64;

const WHITESPACE = new Set([' ', '\t', '\n', '\r']);
const ESCAPES: Record<string, string> = { '"': '"', '\\': '\\', '/': '/', b: '\b', f: '\f', n: '\n', r: '\r', t: '\t' };
const NUMBER_RE = /-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][-+]?\d+)?/y;

/** Parses one JSON document; throws JsonSyntaxError. */
export function parseJson(text: string): JsonValue {
  return new Reader(text).document();
}

class Reader {
  private pos = 0;
  private readonly text: string;

  constructor(text: string) {
    this.text = text;
  }

  document(): JsonValue {
    this.skipSpace();
    if (this.pos >= this.text.length) this.fail('the document is empty');
    const value = this.value(0);
    this.skipSpace();
    if (this.pos < this.text.length) this.fail(`unexpected ${this.describeHere()} after the end of the document`);
    return value;
  }

  private fail(problem: string, at = this.pos): never {
    let line = 1;
    let lineStart = 0;
    for (let i = 0; i < at && i < this.text.length; i++) {
      if (this.text[i] === '\n') {
        line += 1;
        lineStart = i + 1;
      }
    }
    throw new JsonSyntaxError(problem, line, at - lineStart + 1);
  }

  private describeHere(): string {
    if (this.pos >= this.text.length) return 'end of input';
    const code = this.text.codePointAt(this.pos) as number;
    const ch = String.fromCodePoint(code);
    return code < 0x20 || code === 0x7f || code === 0xfeff
      ? `character U+${code.toString(16).toUpperCase().padStart(4, '0')}`
      : JSON.stringify(ch);
  }

  private skipSpace(): void {
    while (this.pos < this.text.length && WHITESPACE.has(this.text[this.pos])) this.pos += 1;
  }

  private expect(ch: string, what: string): void {
    this.skipSpace();
    if (this.text[this.pos] !== ch) this.fail(`expected ${what}, found ${this.describeHere()}`);
    this.pos += 1;
  }

  private value(depth: number): JsonValue {
    this.skipSpace();
    const ch = this.text[this.pos];
    if (ch === '{' || ch === '[') {
      if (depth >= MAX_DEPTH) this.fail(`nested deeper than ${MAX_DEPTH} levels`);
      return ch === '{' ? this.object(depth + 1) : this.array(depth + 1);
    }
    if (ch === '"') return this.string();
    for (const [word, value] of [
      ['true', true],
      ['false', false],
      ['null', null],
    ] as const) {
      if (this.text.startsWith(word, this.pos)) {
        this.pos += word.length;
        return value;
      }
    }
    NUMBER_RE.lastIndex = this.pos;
    const m = NUMBER_RE.exec(this.text);
    if (m && m[0] !== '-') {
      this.pos += m[0].length;
      return new JsonNumber(m[0]);
    }
    return this.fail(`expected a value, found ${this.describeHere()}`);
  }

  private object(depth: number): JsonObject {
    this.pos += 1;
    const obj = new JsonObject();
    this.skipSpace();
    if (this.text[this.pos] === '}') {
      this.pos += 1;
      return obj;
    }
    for (;;) {
      this.skipSpace();
      if (this.text[this.pos] !== '"') this.fail(`expected a key in quotes, found ${this.describeHere()}`);
      const key = this.string();
      this.expect(':', '":" after a key');
      obj.members.push([key, this.value(depth)]);
      this.skipSpace();
      const next = this.text[this.pos];
      this.pos += 1;
      if (next === '}') return obj;
      if (next !== ',') {
        this.pos -= 1;
        this.fail(`expected "," or "}" in an object, found ${this.describeHere()}`);
      }
    }
  }

  private array(depth: number): JsonValue[] {
    this.pos += 1;
    const out: JsonValue[] = [];
    this.skipSpace();
    if (this.text[this.pos] === ']') {
      this.pos += 1;
      return out;
    }
    for (;;) {
      out.push(this.value(depth));
      this.skipSpace();
      const next = this.text[this.pos];
      this.pos += 1;
      if (next === ']') return out;
      if (next !== ',') {
        this.pos -= 1;
        this.fail(`expected "," or "]" in an array, found ${this.describeHere()}`);
      }
    }
  }

  private string(): string {
    const start = this.pos;
    this.pos += 1;
    let out = '';
    let chunk = this.pos;
    for (;;) {
      if (this.pos >= this.text.length) this.fail('unterminated string', start);
      const c = this.text.charCodeAt(this.pos);
      if (c === 0x22) {
        out += this.text.slice(chunk, this.pos);
        this.pos += 1;
        return out;
      }
      if (c < 0x20) this.fail(`${this.describeHere()} inside a string (control characters must be escaped)`);
      if (c !== 0x5c) {
        this.pos += 1;
        continue;
      }
      out += this.text.slice(chunk, this.pos);
      const esc = this.text[this.pos + 1];
      if (esc === 'u') {
        const hex = this.text.slice(this.pos + 2, this.pos + 6);
        if (!/^[0-9a-fA-F]{4}$/.test(hex)) this.fail('bad \\u escape in a string');
        out += String.fromCharCode(parseInt(hex, 16));
        this.pos += 6;
      } else if (esc !== undefined && Object.hasOwn(ESCAPES, esc)) {
        out += ESCAPES[esc];
        this.pos += 2;
      } else {
        this.fail(`bad escape \\${esc ?? ''} in a string`);
      }
      chunk = this.pos;
    }
  }
}
