/**
 * The project's one MAC parser and one interface-name validator. They throw TypeError/RangeError before any
 * syscall is made, with a message that names the option and the value.
 */
import type { Link } from './link';

const MAC_RE = /^[0-9a-fA-F]{2}([:-])[0-9a-fA-F]{2}(\1[0-9a-fA-F]{2}){4}$/;

/** Parses `aa:bb:cc:dd:ee:ff` (or with dashes) into 6 bytes. */
export function parseMac(value: unknown, what = 'mac'): Buffer {
  if (typeof value !== 'string') throw new TypeError(`${what} must be a string like 02:00:00:00:00:01, got ${describe(value)}`);
  if (!MAC_RE.test(value))
    throw new TypeError(`${what} ${JSON.stringify(value)} is not a MAC address (expected 6 hex octets like 02:00:00:00:00:01)`);
  return Buffer.from(value.replace(/[:-]/g, ''), 'hex');
}

/** Like parseMac, and also rejects multicast/broadcast and all-zero addresses, which no interface can own. */
export function parseUnicastMac(value: unknown, what = 'mac'): Buffer {
  const bytes = parseMac(value, what);
  if (bytes[0] & 1) throw new RangeError(`${what} ${JSON.stringify(value)} is a multicast address; an interface needs a unicast MAC`);
  if (bytes.every((b) => b === 0)) throw new RangeError(`${what} ${JSON.stringify(value)} is the all-zero address`);
  return bytes;
}

/** Lower-case colon-separated form. */
export function formatMac(bytes: Buffer): string {
  return [...bytes].map((b) => b.toString(16).padStart(2, '0')).join(':');
}

/** Why `name` is not a valid Linux interface name, or undefined if it is (kernel's dev_valid_name rules). */
export function interfaceNameProblem(name: unknown): string | undefined {
  if (typeof name !== 'string') return `must be a string, got ${describe(name)}`;
  if (name.length === 0) return 'must not be empty';
  if (Buffer.byteLength(name) > 15) return `${JSON.stringify(name)} is longer than 15 bytes`;
  if (name === '.' || name === '..') return `${JSON.stringify(name)} is reserved`;
  // A NUL would end the name early in the kernel (nla_strscpy): "eth0\0x" would name eth0.
  if (name.includes('\0')) return `${JSON.stringify(name)} contains a NUL byte`;
  if (/[/:\s]/.test(name)) return `${JSON.stringify(name)} contains '/', ':' or whitespace`;
  return undefined;
}

export function assertInterfaceName(name: unknown, what = 'name'): asserts name is string {
  const problem = interfaceNameProblem(name);
  if (problem) throw typeof name === 'string' ? new RangeError(`${what} ${problem}`) : new TypeError(`${what} ${problem}`);
}

export function assertInteger(value: unknown, what: string, min: number, max: number): asserts value is number {
  if (typeof value !== 'number' || !Number.isInteger(value)) throw new TypeError(`${what} must be an integer, got ${describe(value)}`);
  if (value < min || value > max) throw new RangeError(`${what} must be between ${min} and ${max}, got ${value}`);
}

/** A link given by name or ifindex (see `LinkRef`). */
export function assertLinkRef(ref: unknown, what: string): asserts ref is string | number {
  if (typeof ref === 'number') assertInteger(ref, `${what} ifindex`, 1, 0x7fffffff);
  else assertInterfaceName(ref, what);
}

export function assertBoolean(value: unknown, what: string): asserts value is boolean | undefined {
  if (value !== undefined && typeof value !== 'boolean') throw new TypeError(`${what} must be a boolean, got ${describe(value)}`);
}

export function assertObject(value: unknown, what: string): asserts value is object {
  if (typeof value !== 'object' || value === null) throw new TypeError(`${what} must be an object, got ${describe(value)}`);
}

/** A file name for a named namespace under NETNS_RUN_DIR. */
export function assertNsName(name: unknown): asserts name is string {
  if (
    typeof name !== 'string' ||
    name.length === 0 ||
    name.length > 255 ||
    name.includes('/') ||
    name.includes('\0') ||
    name === '.' ||
    name === '..'
  ) {
    throw new TypeError(`namespace name must be a non-empty file name without '/' or NUL, got ${describe(name)}`);
  }
}

/** A value as an error message shows it. */
export function describe(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value);
  if (value === null || value === undefined) return String(value);
  if (typeof value === 'object') return Array.isArray(value) ? 'an array' : 'an object';
  if (typeof value === 'function') return 'a function';
  if (typeof value === 'symbol') return value.toString();
  return `${typeof value} ${(value as number | boolean | bigint).toString()}`;
}

/** A `Link` record passed where a reference is expected: checked enough to address the link by it. */
export function isLinkRecord(ref: unknown): ref is Link {
  if (typeof ref !== 'object' || ref === null) return false;
  const link = ref as Partial<Link>;
  assertInteger(link.index, 'link.index', 1, 0x7fffffff);
  assertInterfaceName(link.name, 'link.name');
  return true;
}
