/**
 * Field checks for records read from disk. A record is untrusted input: every field's type and range is checked
 * before anything acts on it, and the first problem is reported (with the record's path) by the store.
 */
import { ifnameProblem } from './names';

/** Thrown by the checks below; caught by the record parsers, which turn it into a reported, ignored record. */
export class RecordProblem extends Error {
  override name = 'RecordProblem';
}

export type Fields = Record<string, unknown>;

export function object(value: unknown, what: string): Fields {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new RecordProblem(`${what} is not an object`);
  return value as Fields;
}

export function string(rec: Fields, key: string, max = 4096): string {
  const v = rec[key];
  if (typeof v !== 'string') throw new RecordProblem(`${key} is ${JSON.stringify(v) ?? 'missing'}, not a string`);
  if (v.length > max) throw new RecordProblem(`${key} is longer than ${max} characters`);
  return v;
}

export function integer(rec: Fields, key: string, min: number, max: number): number {
  const v = rec[key];
  if (typeof v !== 'number' || !Number.isInteger(v)) throw new RecordProblem(`${key} is ${JSON.stringify(v) ?? 'missing'}, not an integer`);
  if (v < min || v > max) throw new RecordProblem(`${key} is ${v}, outside ${min}..${max}`);
  return v;
}

export function boolean(rec: Fields, key: string): boolean {
  const v = rec[key];
  if (typeof v !== 'boolean') throw new RecordProblem(`${key} is ${JSON.stringify(v) ?? 'missing'}, not a boolean`);
  return v;
}

export function ifname(rec: Fields, key: string): string {
  const v = string(rec, key, 64);
  const problem = ifnameProblem(v);
  if (problem) throw new RecordProblem(`${key} ${problem}`);
  return v;
}

export function oneOf<T extends string>(rec: Fields, key: string, values: readonly T[]): T {
  const v = string(rec, key, 64);
  if (!(values as readonly string[]).includes(v))
    throw new RecordProblem(`${key} is ${JSON.stringify(v)}, not one of ${values.join(', ')}`);
  return v as T;
}

export function isoTime(rec: Fields, key: string): string {
  const v = string(rec, key, 64);
  if (Number.isNaN(Date.parse(v))) throw new RecordProblem(`${key} is ${JSON.stringify(v)}, not a time`);
  return v;
}

export function mac(rec: Fields, key: string): string {
  const v = string(rec, key, 64);
  if (!/^([0-9a-f]{2}:){5}[0-9a-f]{2}$/.test(v)) throw new RecordProblem(`${key} is ${JSON.stringify(v)}, not a MAC address`);
  return v;
}

export function equal(rec: Fields, key: string, expected: unknown): void {
  if (rec[key] !== expected)
    throw new RecordProblem(`${key} is ${JSON.stringify(rec[key]) ?? 'missing'}, expected ${JSON.stringify(expected)}`);
}

/** Version check first, so an unknown version is reported as such rather than as a wrong field. */
export function version(rec: Fields, supported: number): void {
  if (rec.version !== supported)
    throw new RecordProblem(`version ${JSON.stringify(rec.version) ?? 'missing'} is not the supported ${supported}`);
}
