/**
 * The device plugin's configuration: the JSON array kubevirt's plugin reads from DP_MACVTAP_CONF
 * (`[{name, lowerDevice, mode, capacity}]`), read with kubevirt's meaning, and the rule that decides which
 * links `[]` turns into resources.
 *
 * Everything kubevirt's plugin accepts is accepted with the same meaning; where that meaning is surprising
 * (capacity 0 is 100, an unknown key is ignored, a duplicate name replaces the earlier entry, `null` is `[]`)
 * a warning names the entry and the key. What it refuses, and what could never be served (a bad mode, a name
 * that is no resource name), is refused **per entry**: the entry is reported and skipped, the others serve.
 * Only a document that is not a JSON array at all is refused as a whole (ConfigError).
 */
import type { Link } from '../netlink';
import type { Logger } from '../util/log';
import { DEFAULT_CAPACITY, DEFAULT_MODE, parseEntry, ResourceMode, typeName } from './config-entry';
import { JsonSyntaxError, JsonValue, parseJson } from './json';

export {
  DEFAULT_CAPACITY,
  DEFAULT_MODE,
  deviceListBytes,
  MAX_LIST_BYTES,
  MAX_SOCKET_PATH,
  RESOURCE_MODES,
  resourceNameProblem,
  showValue,
  socketName,
} from './config-entry';
export type { ResourceMode } from './config-entry';

/** Environment variable holding the configuration, as in kubevirt's plugin. */
export const CONFIG_ENV = 'DP_MACVTAP_CONF';
/** One resource `macvtap.network.kubevirt.io/<name>`: `capacity` macvtaps on `lowerDevice`. */
export interface ResourceConfig {
  name: string;
  /** Undefined when the entry names none: the resource is offered with no devices, as kubevirt does. */
  lowerDevice: string | undefined;
  mode: ResourceMode;
  capacity: number;
}

/** Either explicit resources, or `[]`: one resource per NIC found on the node. */
export type PluginConfig = { discover: false; resources: ResourceConfig[] } | { discover: true; resources: [] };

/** A whole-document problem: nothing in it can be used. */
export class ConfigError extends Error {
  readonly source: string;
  readonly problem: string;

  constructor(source: string, problem: string) {
    super(`bad configuration in ${source}: ${problem}`);
    this.name = 'ConfigError';
    this.source = source;
    this.problem = problem;
  }
}

/** Something about one entry (or the document) worth telling the operator. */
export interface ConfigProblem {
  /** `warn`: used, with the meaning described; `error`: the entry is skipped. */
  level: 'warn' | 'error';
  source: string;
  /** Index of the entry in the array; undefined for the document as a whole. */
  entry?: number;
  /** The entry's resource name, when it has a usable one. */
  name?: string;
  key?: string;
  /** The value as written (JSON), shortened. */
  value?: string;
  problem: string;
}

/** One line: `DP_MACVTAP_CONF, entry 1 (name "x"), key "mode" = "fast": unknown mode ...`. */
export function describeProblem(p: ConfigProblem): string {
  let where = p.source;
  if (p.entry !== undefined) where += `, entry ${p.entry}${p.name !== undefined ? ` (name ${JSON.stringify(p.name)})` : ''}`;
  if (p.key !== undefined) where += `, key ${JSON.stringify(p.key)}${p.value !== undefined ? ` = ${p.value}` : ''}`;
  return `${where}: ${p.problem}`;
}

/** Logs a problem: `error` lines are skipped entries, `warn` lines entries used with the meaning described. */
export function logProblem(log: Logger, p: ConfigProblem): void {
  const fields = { source: p.source, entry: p.entry, name: p.name, key: p.key, value: p.value, problem: describeProblem(p) };
  if (p.level === 'error') log.error('configuration entry skipped', fields);
  else log.warn('configuration warning', fields);
}

/**
 * What a reloaded configuration makes of the running resources: the new document's resources, plus every
 * running resource whose entry is now skipped (a typo must not withdraw devices pods hold), plus, when an entry
 * was skipped without a usable name (it may have been any resource), every running resource it does not name.
 */
export function mergeReload(
  running: ResourceConfig[],
  next: PluginConfig,
  problems: ConfigProblem[],
): { config: PluginConfig; kept: string[] } {
  if (next.discover) return { config: next, kept: [] };
  const skipped = problems.filter((p) => p.level === 'error' && p.entry !== undefined);
  const skippedNames = new Set(skipped.map((p) => p.name));
  const anonymous = skippedNames.has(undefined);
  const names = new Set(next.resources.map((r) => r.name));
  const kept = running.filter((r) => !names.has(r.name) && (anonymous || skippedNames.has(r.name)));
  return { config: { discover: false, resources: [...next.resources, ...kept] }, kept: kept.map((r) => r.name) };
}

/**
 * Parses a configuration document. `source` names where it came from (`DP_MACVTAP_CONF`, or the file path);
 * `pluginDir`, when given, is used to check that every socket path fits in a unix socket address. Every
 * warning and every skipped entry is handed to `onProblem`; throws ConfigError only when the document as a
 * whole is unusable.
 */
export function parseConfig(
  text: string,
  source: string,
  pluginDir?: string,
  onProblem: (p: ConfigProblem) => void = () => undefined,
): PluginConfig {
  if (text.startsWith('\ufeff')) {
    onProblem({ level: 'warn', source, problem: "starts with a byte order mark, which is ignored (kubevirt's plugin refuses it)" });
    text = text.slice(1);
  }
  let doc: JsonValue;
  try {
    doc = parseJson(text);
  } catch (err) {
    if (!(err instanceof JsonSyntaxError)) throw err;
    throw new ConfigError(source, `not JSON: ${err.message}; expected an array like [{"name": "dataplane", "lowerDevice": "eth0"}]`);
  }
  if (doc === null) {
    onProblem({ level: 'warn', source, problem: "null means [] (as in kubevirt's plugin): one resource per NIC" });
    return { discover: true, resources: [] };
  }
  if (!Array.isArray(doc))
    throw new ConfigError(source, `must be a JSON array of {name, lowerDevice, mode, capacity}, got ${typeName(doc)}`);
  if (doc.length === 0) return { discover: true, resources: [] };
  const accepted = new Map<string, { index: number; resource: ResourceConfig }>();
  doc.forEach((raw, index) => {
    const resource = parseEntry(raw, { source, index, pluginDir, onProblem });
    if (!resource) return;
    const earlier = accepted.get(resource.name);
    if (earlier) {
      onProblem({
        level: 'warn',
        source,
        entry: earlier.index,
        name: resource.name,
        key: 'name',
        problem: `replaced by entry ${index} of the same name (the last one wins, as in kubevirt's plugin)`,
      });
      accepted.delete(resource.name);
    }
    accepted.set(resource.name, { index, resource });
  });
  return { discover: false, resources: [...accepted.values()].map((a) => a.resource) };
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
