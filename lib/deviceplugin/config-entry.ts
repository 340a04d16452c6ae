/**
 * What one configuration entry is, read as kubevirt's plugin (Go's encoding/json) reads it: keys matched
 * case-insensitively with the last of equal keys winning, null as the zero value, an integer field refusing
 * `2.5` or `1e3`; then the checks that decide whether the entry can be served at all.
 */
import { interfaceNameProblem } from '../netlink';
import { RESOURCE_PREFIX } from '../naming';
import type { ConfigProblem, ResourceConfig } from './config';
import { JsonNumber, JsonObject, JsonValue } from './json';

export type ResourceMode = 'bridge' | 'vepa' | 'private' | 'passthru';
export const RESOURCE_MODES: readonly ResourceMode[] = ['bridge', 'vepa', 'private', 'passthru'];
export const DEFAULT_MODE: ResourceMode = 'bridge';
export const DEFAULT_CAPACITY = 100;
/** The kubelet's (gRPC's default) limit on one received message: the whole ListAndWatch device list. */
export const MAX_LIST_BYTES = 4 * 1024 * 1024;

/** The canonical keys by their lower-case form (Go's encoding/json matches keys case-insensitively). */
const KEYS = new Map(['name', 'lowerDevice', 'mode', 'capacity', 'master'].map((k) => [k.toLowerCase(), k]));
/** The name part of a qualified Kubernetes name (what the kubelet accepts after `<domain>/`). */
const QUALIFIED_NAME_RE = /^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/;
/** sun_path holds 108 bytes including the terminating NUL. */
export const MAX_SOCKET_PATH = 107;
const SHOWN_CHARS = 64;

/** A value for a message: its JSON text, cut to a readable length (a 1 MB name stays a short line). */
export function showValue(value: JsonValue | undefined): string {
  const text = toText(value);
  return text.length > SHOWN_CHARS ? `${text.slice(0, SHOWN_CHARS)}... (${text.length} characters)` : text;
}

function toText(value: JsonValue | undefined): string {
  if (value === undefined) return 'nothing';
  if (value instanceof JsonNumber) return value.raw;
  if (value instanceof JsonObject) return '{...}';
  if (Array.isArray(value)) return '[...]';
  return JSON.stringify(value);
}

export function typeName(value: JsonValue): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (value instanceof JsonObject) return 'an object';
  if (value instanceof JsonNumber) return 'a number';
  return typeof value === 'string' ? 'a string' : 'a boolean';
}

/** Why `name` cannot name a resource (`macvtap.network.kubevirt.io/<name>`), or undefined if it can. */
export function resourceNameProblem(name: unknown): string | undefined {
  if (typeof name !== 'string') return `"name" must be a string`;
  if (name.length === 0) return '"name" must not be empty';
  if (name.length > 63) return `a resource name is at most 63 characters, this one has ${name.length}`;
  if (!QUALIFIED_NAME_RE.test(name)) {
    return `not a valid resource name (letters, digits, '-', '_', '.'; starting and ending with a letter or digit)`;
  }
  return undefined;
}

/** The unix socket file name of a resource: `macvtap.network.kubevirt.io_<name>`, as kubevirt's plugin names it. */
export function socketName(name: string): string {
  return `${RESOURCE_PREFIX}_${name}`;
}

function varintLength(n: number): number {
  let len = 1;
  while (n >= 0x80) {
    n = Math.floor(n / 0x80);
    len += 1;
  }
  return len;
}

/** Bytes of the ListAndWatch response listing `capacity` devices of `name`, all "Unhealthy" (the longer word). */
export function deviceListBytes(name: string, capacity: number): number {
  let total = 0;
  // Device IDs `<name>Mvp<i>`: count the devices with each number of digits at once.
  for (let digits = 1, first = 0; first < capacity; digits += 1, first = first === 0 ? 10 : first * 10) {
    const count = Math.min(capacity, first === 0 ? 10 : first * 10) - first;
    const id = Buffer.byteLength(name) + 3 + digits;
    const device = 1 + varintLength(id) + id + 1 + 1 + 'Unhealthy'.length;
    total += count * (1 + varintLength(device) + device);
  }
  return total;
}

export interface EntryContext {
  source: string;
  index: number;
  pluginDir: string | undefined;
  onProblem: (p: ConfigProblem) => void;
}

/** One entry as kubevirt reads it; undefined (after reporting why) when it is skipped. */
export function parseEntry(raw: JsonValue, ctx: EntryContext): ResourceConfig | undefined {
  const { source, index: entry } = ctx;
  if (!(raw instanceof JsonObject)) {
    ctx.onProblem({
      level: 'error',
      source,
      entry,
      value: showValue(raw),
      problem: `must be an object {name, lowerDevice, mode, capacity}, got ${typeName(raw)}; skipped`,
    });
    return undefined;
  }
  // Equal-folded keys: the last wins, as in Go.
  const fields = new Map<string, { key: string; value: JsonValue }>();
  const notes: Omit<ConfigProblem, 'source' | 'entry' | 'name'>[] = [];
  for (const [key, value] of raw.members) {
    const canonical = KEYS.get(key.toLowerCase());
    if (!canonical) {
      notes.push({ level: 'warn', key, problem: "unknown key, ignored (as in kubevirt's plugin)" });
      continue;
    }
    const previous = fields.get(canonical);
    if (previous)
      notes.push({
        level: 'warn',
        key,
        problem: `key ${JSON.stringify(previous.key)} given again: the last one wins (as in kubevirt's plugin)`,
      });
    if (key !== canonical)
      notes.push({
        level: 'warn',
        key,
        problem: `read as ${JSON.stringify(canonical)} (kubevirt's plugin matches keys case-insensitively)`,
      });
    fields.set(canonical, { key, value });
  }
  // Problems name the entry's resource once the name is known to be usable.
  const known: { name?: string } = {};
  const report = (p: Omit<ConfigProblem, 'source' | 'entry' | 'name'>): void => ctx.onProblem({ ...p, source, entry, name: known.name });
  const skip = (key: string, problem: string): undefined => {
    const f = fields.get(key);
    report({ level: 'error', key: f?.key ?? key, value: f ? showValue(f.value) : undefined, problem: `${problem}; entry skipped` });
    return undefined;
  };
  /** A string field as Go decodes it: null is "", anything but a string is refused. */
  const stringField = (key: string): string | undefined | Error => {
    const f = fields.get(key);
    if (!f || f.value === null) return undefined;
    if (typeof f.value !== 'string') return new Error(`must be a string, got ${typeName(f.value)}`);
    return f.value;
  };

  const rawName = stringField('name');
  if (rawName instanceof Error) return skip('name', rawName.message);
  if (rawName === undefined || rawName === '') return skip('name', 'a resource needs a name');
  const nameProblem = resourceNameProblem(rawName);
  if (nameProblem) return skip('name', nameProblem);
  const name = rawName;
  known.name = name;
  for (const note of notes) report(note);

  let lower = stringField('lowerDevice');
  if (lower instanceof Error) return skip('lowerDevice', lower.message);
  const master = stringField('master');
  if (master instanceof Error) return skip('master', master.message);
  if (master !== undefined && master !== '') {
    if (lower !== undefined && lower !== '' && lower !== master)
      return skip('master', `disagrees with "lowerDevice" ${JSON.stringify(lower)}`);
    if (lower === undefined || lower === '') {
      report({
        level: 'warn',
        key: fields.get('master')?.key,
        value: showValue(master),
        problem: 'read as "lowerDevice" (kubevirt\'s plugin ignores "master" and would offer no devices)',
      });
      lower = master;
    }
  }
  if (lower === undefined || lower === '') {
    report({
      level: 'warn',
      key: 'lowerDevice',
      problem: "no lower device: the resource is offered with no devices (as in kubevirt's plugin)",
    });
    lower = undefined;
  } else {
    const lowerProblem = Buffer.byteLength(lower) > 15 ? 'is longer than the 15 bytes of an interface name' : interfaceNameProblem(lower);
    if (lowerProblem) return skip('lowerDevice', `not a network interface name: it ${lowerProblem.replace(/^".*" /, '')}`);
  }

  let mode: ResourceMode = DEFAULT_MODE;
  const rawMode = stringField('mode');
  if (rawMode instanceof Error) return skip('mode', rawMode.message);
  if (rawMode !== undefined && rawMode !== '') {
    const folded = rawMode.toLowerCase() as ResourceMode;
    if (!RESOURCE_MODES.includes(folded)) return skip('mode', `unknown mode; expected one of ${RESOURCE_MODES.join(', ')}`);
    if (folded !== rawMode) {
      report({
        level: 'warn',
        key: 'mode',
        value: showValue(rawMode),
        problem: `read as ${JSON.stringify(folded)} (kubevirt's plugin fails every Allocate for it)`,
      });
    }
    mode = folded;
  }

  let capacity = DEFAULT_CAPACITY;
  const cap = fields.get('capacity');
  if (cap && cap.value !== null) {
    if (!(cap.value instanceof JsonNumber)) return skip('capacity', `must be an integer, got ${typeName(cap.value)}`);
    if (!cap.value.isIntegerLiteral)
      return skip('capacity', "must be an integer written without fraction or exponent (kubevirt's plugin refuses it too)");
    capacity = cap.value.value;
    if (capacity <= 0) {
      report({
        level: 'warn',
        key: cap.key,
        value: cap.value.raw,
        problem: `${capacity} means the default ${DEFAULT_CAPACITY} (as in kubevirt's plugin)`,
      });
      capacity = DEFAULT_CAPACITY;
    }
  } else if (cap) {
    report({ level: 'warn', key: cap.key, value: 'null', problem: `null means the default ${DEFAULT_CAPACITY} (as in kubevirt's plugin)` });
  }
  // Every device costs at least 16 bytes of the list: beyond a million, no need to count.
  const listBytes = capacity > 1_000_000 ? Infinity : deviceListBytes(name, capacity);
  if (listBytes > MAX_LIST_BYTES) {
    const size = Number.isFinite(listBytes) ? ` (${(listBytes / 1048576).toFixed(1)} MiB)` : '';
    return skip('capacity', `too large: a list of ${capacity} devices${size} is more than the 4 MiB the kubelet accepts in one message`);
  }
  if (mode === 'passthru' && capacity !== 1) {
    report({
      level: 'warn',
      key: 'capacity',
      value: String(capacity),
      problem: 'mode "passthru" gives the whole lower device to one macvtap: 1 device is offered',
    });
    capacity = 1;
  }
  if (ctx.pluginDir !== undefined) {
    const socket = `${ctx.pluginDir.replace(/\/+$/, '')}/${socketName(name)}`;
    if (Buffer.byteLength(socket) > MAX_SOCKET_PATH) {
      return skip(
        'name',
        `its socket path ${socket} is ${Buffer.byteLength(socket)} bytes, more than the ${MAX_SOCKET_PATH} a unix socket allows; use a shorter name`,
      );
    }
  }
  return { name, lowerDevice: lower, mode, capacity };
}
