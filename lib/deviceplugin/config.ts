/**
 * The device plugin's configuration: the JSON array kubevirt's plugin reads from DP_MACVTAP_CONF
 * (`[{name, lowerDevice, mode, capacity}]`), validated in full before anything is served, and the rule that
 * decides which links `[]` turns into resources.
 */
import { interfaceNameProblem, type Link } from '../netlink';
import { RESOURCE_PREFIX } from '../naming';

export type ResourceMode = 'bridge' | 'vepa' | 'private' | 'passthru';
export const RESOURCE_MODES: readonly ResourceMode[] = ['bridge', 'vepa', 'private', 'passthru'];
export const DEFAULT_MODE: ResourceMode = 'bridge';
export const DEFAULT_CAPACITY = 100;
/** Environment variable holding the configuration, as in kubevirt's plugin. */
export const CONFIG_ENV = 'DP_MACVTAP_CONF';

/** One resource `macvtap.network.kubevirt.io/<name>`: `capacity` macvtaps on `lowerDevice`. */
export interface ResourceConfig {
  name: string;
  lowerDevice: string;
  mode: ResourceMode;
  capacity: number;
}

/** Either explicit resources, or `[]`: one resource per NIC found on the node. */
export type PluginConfig = { discover: false; resources: ResourceConfig[] } | { discover: true; resources: [] };

/** A configuration problem: where it came from (`DP_MACVTAP_CONF` or the file), which entry, what is wrong. */
export class ConfigError extends Error {
  readonly source: string;
  readonly entry: string | undefined;
  readonly problem: string;

  constructor(source: string, problem: string, entry?: string) {
    super(`bad configuration in ${source}${entry ? `, ${entry}` : ''}: ${problem}`);
    this.name = 'ConfigError';
    this.source = source;
    this.entry = entry;
    this.problem = problem;
  }
}

const KEYS = new Set(['name', 'lowerDevice', 'master', 'mode', 'capacity']);
/** The name part of a qualified Kubernetes name (what the kubelet accepts after `<domain>/`). */
const QUALIFIED_NAME_RE = /^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/;
/** sun_path holds 108 bytes including the terminating NUL. */
export const MAX_SOCKET_PATH = 107;

/** Why `name` cannot name a resource (`macvtap.network.kubevirt.io/<name>`), or undefined if it can. */
export function resourceNameProblem(name: unknown): string | undefined {
  if (typeof name !== 'string') return `"name" must be a string, got ${typeName(name)}`;
  if (name.length === 0) return '"name" must not be empty';
  if (name.length > 63) return `name ${JSON.stringify(name)} is longer than 63 characters`;
  if (!QUALIFIED_NAME_RE.test(name)) {
    return `name ${JSON.stringify(name)} is not a valid resource name (letters, digits, '-', '_', '.'; starting and ending with a letter or digit)`;
  }
  return undefined;
}

/** The unix socket file name of a resource: `macvtap.network.kubevirt.io_<name>`, as kubevirt's plugin names it. */
export function socketName(name: string): string {
  return `${RESOURCE_PREFIX}_${name}`;
}

/**
 * Parses and validates a configuration document. `source` names where it came from in error messages
 * (`DP_MACVTAP_CONF`, or the file path). Throws ConfigError on the first problem.
 * `pluginDir`, when given, is used to check that every socket path fits in a unix socket address.
 */
export function parseConfig(text: string, source: string, pluginDir?: string): PluginConfig {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    const detail = text.trim() === '' ? 'it is empty' : (err as Error).message;
    throw new ConfigError(source, `not JSON (${detail}); expected an array like [{"name": "dataplane", "lowerDevice": "eth0"}]`);
  }
  if (!Array.isArray(doc))
    throw new ConfigError(source, `must be a JSON array of {name, lowerDevice, mode, capacity}, got ${typeName(doc)}`);
  if (doc.length === 0) return { discover: true, resources: [] };
  const resources: ResourceConfig[] = [];
  const seen = new Map<string, number>();
  doc.forEach((raw, i) => {
    const entry = describeEntry(raw, i);
    const fail = (problem: string): never => {
      throw new ConfigError(source, problem, entry);
    };
    if (typeof raw !== 'object' || raw === null || Array.isArray(raw))
      fail(`must be an object {name, lowerDevice, mode, capacity}, got ${typeName(raw)}`);
    const e = raw as Record<string, unknown>;
    for (const key of Object.keys(e)) {
      if (!KEYS.has(key)) fail(`unknown key ${JSON.stringify(key)} (known: name, lowerDevice, mode, capacity)`);
    }
    if (e.name === undefined) fail('missing "name"');
    const nameProblem = resourceNameProblem(e.name);
    if (nameProblem) fail(nameProblem);
    const name = e.name as string;
    const previous = seen.get(name);
    if (previous !== undefined) fail(`duplicate name ${JSON.stringify(name)} (also entry ${previous})`);
    seen.set(name, i);
    // `master` is what kubevirt's plugin called the lower device before it was renamed.
    if (e.lowerDevice !== undefined && e.master !== undefined && e.lowerDevice !== e.master) {
      fail(`"lowerDevice" ${JSON.stringify(e.lowerDevice)} and its old name "master" ${JSON.stringify(e.master)} disagree`);
    }
    const lower = e.lowerDevice ?? e.master;
    if (lower === undefined) fail('missing "lowerDevice"');
    const lowerProblem = interfaceNameProblem(lower);
    if (lowerProblem) fail(`"lowerDevice" is not a network interface name: it ${lowerProblem}`);
    let mode: ResourceMode = DEFAULT_MODE;
    if (e.mode !== undefined && e.mode !== '') {
      if (typeof e.mode !== 'string' || !RESOURCE_MODES.includes(e.mode as ResourceMode)) {
        fail(`unknown mode ${JSON.stringify(e.mode)}; expected one of ${RESOURCE_MODES.join(', ')}`);
      }
      mode = e.mode as ResourceMode;
    }
    let capacity = DEFAULT_CAPACITY;
    if (e.capacity !== undefined) {
      if (typeof e.capacity !== 'number' || !Number.isInteger(e.capacity) || e.capacity < 1) {
        fail(`"capacity" must be a positive integer, got ${JSON.stringify(e.capacity)}`);
      }
      capacity = e.capacity as number;
      if (capacity > 100000) fail(`"capacity" ${capacity} is more than 100000 macvtaps on one device`);
    }
    if (mode === 'passthru' && capacity !== 1) {
      fail(
        `mode "passthru" gives the whole lower device to one macvtap, so "capacity" must be 1, got ${e.capacity === undefined ? `the default ${DEFAULT_CAPACITY}` : capacity}`,
      );
    }
    if (pluginDir !== undefined) {
      const socket = `${pluginDir.replace(/\/+$/, '')}/${socketName(name)}`;
      if (Buffer.byteLength(socket) > MAX_SOCKET_PATH) {
        fail(
          `socket path ${socket} is ${Buffer.byteLength(socket)} bytes, more than the ${MAX_SOCKET_PATH} a unix socket allows; use a shorter name`,
        );
      }
    }
    resources.push({ name, lowerDevice: lower as string, mode, capacity });
  });
  return { discover: false, resources };
}

function describeEntry(raw: unknown, i: number): string {
  const name =
    typeof raw === 'object' && raw !== null && typeof (raw as { name?: unknown }).name === 'string'
      ? (raw as { name: string }).name
      : undefined;
  return name !== undefined ? `entry ${i} (name ${JSON.stringify(name)})` : `entry ${i}`;
}

function typeName(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'object') return 'an object';
  if (typeof value === 'string') return `the string ${JSON.stringify(value)}`;
  return `${typeof value} ${String(value)}`;
}

/**
 * Whether `[]` discovery turns a link into a resource: a physical NIC (the kernel reports no link kind, and
 * it is not loopback) or a bond, as kubevirt's plugin does; plus any kinds listed in `extraKinds`.
 */
export function isDiscoverable(link: Pick<Link, 'kind' | 'flags' | 'name'>, extraKinds: readonly string[] = []): boolean {
  if (link.flags.loopback) return false;
  if (link.kind === undefined) return true;
  return link.kind === 'bond' || extraKinds.includes(link.kind);
}

/** The resource `[]` makes of a discovered link: named after it, default mode and capacity. */
export function discoveredResource(linkName: string): ResourceConfig {
  return { name: linkName, lowerDevice: linkName, mode: DEFAULT_MODE, capacity: DEFAULT_CAPACITY };
}

/** Whether two resource configurations are the same. */
export function sameResource(a: ResourceConfig, b: ResourceConfig): boolean {
  return a.name === b.name && a.lowerDevice === b.lowerDevice && a.mode === b.mode && a.capacity === b.capacity;
}
