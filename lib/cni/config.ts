/**
 * Reading an invocation: the CNI_* environment and the network configuration on stdin, validated into typed
 * values before anything touches the kernel. Each problem is a CniError with the spec's code: 4 for the
 * environment, 6 for undecodable input, 7 for configuration values, 1 for versions.
 *
 * DEL reads leniently: a value DEL does not need (mac, mtu, promiscMode, owner, group, CNI_ARGS, an invalid
 * deviceID, a host-only key) is logged and ignored when invalid, so that the cleanup of a failed ADD is never
 * refused for the input that made ADD fail.
 *
 * The network configuration is a tenant's (a NetworkAttachmentDefinition's): every string in it is data. Host
 * paths and node policy come only from the host configuration (host-config.ts); a network configuration naming
 * one of those keys is refused before anything is opened or written.
 */
import { containerIdProblem, DEFAULT_LOCK_TIMEOUT_MS, DEFAULT_STATE_DIR, deviceIdProblem, STATE_DIR_ENV } from '../state';
import { formatMac, interfaceNameProblem, parseUnicastMac } from '../netlink/validate';
import { CniArgs, parseCniArgs } from './args';
import { CniError, ErrorCode } from './errors';
import { DEFAULT_GROUP, DEFAULT_OWNER, HOST_ONLY_KEYS, readHostConfig, whereSet, type HostConfig } from './host-config';
import { log } from './log';
import { checkPrevResult } from './prev-result';
import { show } from './show';
import { CniVersion, JsonObject, requireSupported, requireVerb } from './version';

export const COMMANDS = ['ADD', 'DEL', 'CHECK', 'VERSION', 'GC', 'STATUS'] as const;
export type Command = (typeof COMMANDS)[number];

/** Default host state directory, shared with the device plugin, and the environment variable overriding it. */
export { DEFAULT_STATE_DIR, STATE_DIR_ENV };
/** Environment variable bounding the wait for a device's lock (milliseconds; the runtime's environment). */
export const LOCK_TIMEOUT_ENV = 'MACVTAP_CNI_LOCK_TIMEOUT_MS';
/** The qemu user and group of KubeVirt's virt-launcher images (defaults of the host's tapOwner/tapGroup). */
export { DEFAULT_GROUP, DEFAULT_OWNER };

/** SPEC: a network name starts with an alphanumeric, then alphanumerics, `_`, `.`, `-` (libcni checks the same). */
const NETWORK_NAME_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;
/** The attachment record keeps the name; Kubernetes object names are at most 253 characters. */
const NETWORK_NAME_MAX = 253;
/** Far above any real configuration (a chained prevResult included); bounds memory and parse time. */
export const MAX_CONFIG_BYTES = 1024 * 1024;
/** A path the kernel can take (PATH_MAX). */
const PATH_MAX = 4096;

export interface Environment {
  command: Command;
  containerId: string;
  /** CNI_NETNS, or '' when not given (allowed for DEL). */
  netns: string;
  ifname: string;
  args: CniArgs;
}

export type MacSource = 'config mac' | 'CNI_ARGS MAC' | 'runtimeConfig.mac' | 'args.cni.mac';

export interface Attachment {
  containerID: string;
  ifname: string;
}

export interface NetConf {
  cniVersion: CniVersion;
  name: string;
  type: string;
  /** `runtimeConfig.deviceID` if given, else `deviceID`. */
  deviceID: string | undefined;
  /** The effective MAC (lower-case, colons) from the highest-precedence source that set one. */
  mac: string | undefined;
  macSource: MacSource | undefined;
  mtu: number | undefined;
  promiscMode: boolean;
  owner: number;
  group: number;
  /** The host's state directory (host configuration, never the network configuration). */
  stateDir: string;
  /** How long a verb waits for the device's lock before code 11. */
  lockTimeoutMs: number;
  /** The host configuration this invocation runs under. */
  host: HostConfig;
  prevResult: JsonObject | undefined;
  /** GC only: `cni.dev/valid-attachments`. */
  validAttachments: Attachment[] | undefined;
}

/**
 * The message for an ID the state module's check refused: a length or type problem as it says, a wrong character
 * as "<value> is not a valid <what>" (the value quoted by show(): escaped and short).
 */
function idMessage(value: unknown, problem: string, what: string): string {
  return typeof value === 'string' && problem.startsWith('"') ? `${show(value)} is not a valid ${what}` : problem;
}

function envError(msg: string, details = ''): CniError {
  return new CniError(ErrorCode.InvalidEnvironment, msg, details);
}

function configError(msg: string, details = ''): CniError {
  return new CniError(ErrorCode.InvalidConfig, msg, details);
}

export function readCommand(env: NodeJS.ProcessEnv): Command {
  const command = env.CNI_COMMAND;
  if (!command) throw envError('CNI_COMMAND is not set', `expected one of ${COMMANDS.join(', ')}`);
  if (!(COMMANDS as readonly string[]).includes(command)) {
    throw envError(`CNI_COMMAND ${JSON.stringify(command)} is not a CNI command`, `expected one of ${COMMANDS.join(', ')}`);
  }
  return command as Command;
}

/** The attachment's environment. ADD and CHECK need all of it; DEL may lack CNI_NETNS. */
export function readEnvironment(command: Command, env: NodeJS.ProcessEnv): Environment {
  const containerId = env.CNI_CONTAINERID ?? '';
  if (!containerId) throw envError('CNI_CONTAINERID is not set');
  const idProblem = containerIdProblem(containerId);
  if (idProblem) {
    throw envError(
      `CNI_CONTAINERID ${idMessage(containerId, idProblem, 'container ID')}`,
      'it must start with a letter or digit, followed by letters, digits, "_", "." or "-" (at most 96)',
    );
  }
  const ifname = env.CNI_IFNAME ?? '';
  if (!ifname) throw envError('CNI_IFNAME is not set');
  const problem = interfaceNameProblem(ifname);
  if (problem)
    throw envError(
      `CNI_IFNAME ${show(ifname)} is not a valid interface name`,
      'an interface name is 1-15 bytes, not "." or "..", without "/", ":" or whitespace',
    );
  const netns = env.CNI_NETNS ?? '';
  if (!netns && command !== 'DEL') throw envError('CNI_NETNS is not set');
  // eslint-disable-next-line no-control-regex
  if (netns && (!netns.startsWith('/') || netns.length > PATH_MAX || /[\u0000-\u001f\u007f]/.test(netns)))
    throw envError(`CNI_NETNS ${show(netns)} is not an absolute path`, 'the runtime passes the path of the network namespace');
  let args: CniArgs;
  try {
    args = parseCniArgs(env.CNI_ARGS);
  } catch (err) {
    if (command !== 'DEL') throw err;
    log.warn(`ignoring CNI_ARGS for DEL: ${(err as Error).message}`);
    args = { values: new Map(), ignoreUnknown: true };
  }
  return { command, containerId, netns, ifname, args };
}

/** Decodes stdin. Anything but a JSON object (of at most MAX_CONFIG_BYTES) is code 6. */
export function decodeConfig(stdin: string): Record<string, unknown> {
  if (stdin.length > MAX_CONFIG_BYTES)
    throw new CniError(ErrorCode.DecodeFailure, `the network configuration on stdin is larger than ${MAX_CONFIG_BYTES} bytes`);
  let parsed: unknown;
  try {
    parsed = JSON.parse(stdin);
  } catch (err) {
    throw new CniError(ErrorCode.DecodeFailure, 'the network configuration on stdin is not valid JSON', (err as Error).message);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new CniError(ErrorCode.DecodeFailure, 'the network configuration on stdin must be a JSON object');
  }
  return parsed as Record<string, unknown>;
}

/** The config's `cniVersion` as written (for error results), if it is a string. */
export function rawVersion(config: Record<string, unknown> | undefined): string | undefined {
  const v = config?.cniVersion;
  return typeof v === 'string' ? v : undefined;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function optionalObject(config: Record<string, unknown>, key: string): Record<string, unknown> | undefined {
  const v = config[key];
  if (v === undefined || v === null) return undefined;
  if (!isObject(v)) throw configError(`${key} must be an object, got ${Array.isArray(v) ? 'an array' : typeof v}`);
  return v;
}

function integerKey(value: unknown, key: string, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isInteger(value)) throw configError(`${key} must be an integer, got ${show(value)}`);
  if (value < min || value > max) throw configError(`${key} must be between ${min} and ${max}, got ${value}`);
  return value;
}

function macValue(value: unknown, source: MacSource, code: number): string {
  // The netlink module's messages quote the whole value; a MAC has at most 17 characters.
  if (typeof value === 'string' && value.length > 64) throw new CniError(code, `${source} ${show(value)} is not a MAC address`);
  try {
    return formatMac(parseUnicastMac(value, source));
  } catch (err) {
    throw new CniError(code, (err as Error).message, 'a MAC is 6 hex octets like 02:00:00:00:00:01, unicast and not all-zero');
  }
}

/**
 * Validates the configuration for `command` under the host configuration `host` (read from `processEnv` when not
 * given). Host-only keys are refused first (DEL: ignored), before anything is opened.
 */
export function readConfig(
  command: Command,
  config: Record<string, unknown>,
  env: Environment | undefined,
  processEnv: NodeJS.ProcessEnv,
  host: HostConfig = readHostConfig(processEnv),
): NetConf {
  const lenient = command === 'DEL';
  for (const key of HOST_ONLY_KEYS) {
    if (config[key] === undefined) continue;
    if (lenient) {
      log.warn(`ignoring "${key}" in the network configuration for DEL: ${whereSet(key, host, processEnv)}`);
      continue;
    }
    throw configError(`the network configuration may not set "${key}"`, whereSet(key, host, processEnv));
  }

  if (config.cniVersion !== undefined && typeof config.cniVersion !== 'string') {
    throw new CniError(ErrorCode.DecodeFailure, `cniVersion must be a string, got ${show(config.cniVersion)}`);
  }
  const cniVersion = requireSupported(config.cniVersion);
  requireVerb(command, cniVersion);
  if (typeof config.name !== 'string' || config.name === '') throw configError(`name must be a non-empty string, got ${show(config.name)}`);
  if (config.name.length > NETWORK_NAME_MAX || !NETWORK_NAME_RE.test(config.name))
    throw configError(
      `name ${show(config.name)} is not a valid network name`,
      `a letter or digit, then letters, digits, "_", "." or "-", at most ${NETWORK_NAME_MAX} characters (the CNI spec's rule)`,
    );
  if (typeof config.type !== 'string' || config.type === '') throw configError(`type must be a non-empty string, got ${show(config.type)}`);
  if (config.type.length > NETWORK_NAME_MAX || !NETWORK_NAME_RE.test(config.type))
    throw configError(`type ${show(config.type)} is not a plugin name`);

  const stateDir = host.stateDir;

  let lockTimeoutMs = DEFAULT_LOCK_TIMEOUT_MS;
  const lockEnv = processEnv[LOCK_TIMEOUT_ENV];
  if (lockEnv !== undefined && lockEnv !== '') {
    if (!/^\d{1,7}$/.test(lockEnv) || Number(lockEnv) < 1)
      throw envError(`${LOCK_TIMEOUT_ENV} must be a number of milliseconds (1-9999999), got ${JSON.stringify(lockEnv)}`);
    lockTimeoutMs = Number(lockEnv);
  }

  const runtimeConfig = optionalObject(config, 'runtimeConfig');
  const cniArgsObject = optionalObject(config, 'args');

  let deviceID: string | undefined;
  for (const [value, key] of [
    [config.deviceID, 'deviceID'],
    [runtimeConfig?.deviceID, 'runtimeConfig.deviceID'],
  ] as const) {
    if (value === undefined || value === null) continue;
    const problem = typeof value !== 'string' || value === '' ? `must be a non-empty string, got ${show(value)}` : deviceIdProblem(value);
    if (problem) {
      const err = configError(
        `${key} ${idMessage(value, problem, 'device ID')}`,
        'a device ID is 1-90 characters of A-Z, a-z, 0-9, ".", "_" and "-", not starting with "."',
      );
      // DEL: an ID that can name no state file was never attached; the record (if any) says what to release.
      if (!lenient) throw err;
      log.warn(`ignoring for DEL: ${err.message}`);
      continue;
    }
    deviceID = value as string;
  }
  if (deviceID === undefined && (command === 'ADD' || command === 'CHECK')) {
    throw configError(
      'deviceID is required',
      'set "deviceID" (Multus sets it from the device plugin allocation) or pass runtimeConfig.deviceID',
    );
  }

  /** Runs a check; for DEL an invalid value is logged and replaced by `fallback`. */
  const field = <T>(fallback: T, read: () => T): T => {
    try {
      return read();
    } catch (err) {
      if (!lenient || !(err instanceof CniError)) throw err;
      log.warn(`ignoring for DEL: ${err.message}`);
      return fallback;
    }
  };

  // MAC sources, lowest precedence first.
  let mac: string | undefined;
  let macSource: MacSource | undefined;
  const cniArgsCni = field(undefined, () => {
    const cni = cniArgsObject?.cni;
    if (cni === undefined || cni === null) return undefined;
    if (!isObject(cni)) throw configError('args.cni must be an object');
    return cni;
  });
  const sources: [unknown, MacSource, number][] = [
    [config.mac, 'config mac', ErrorCode.InvalidConfig],
    [env?.args.values.get('MAC'), 'CNI_ARGS MAC', ErrorCode.InvalidEnvironment],
    [runtimeConfig?.mac, 'runtimeConfig.mac', ErrorCode.InvalidConfig],
    [cniArgsCni?.mac, 'args.cni.mac', ErrorCode.InvalidConfig],
  ];
  for (const [value, source, code] of sources) {
    if (value === undefined || value === null || value === '') continue;
    const parsed = field(undefined, () => macValue(value, source, code));
    if (parsed !== undefined) {
      mac = parsed;
      macSource = source;
    }
  }

  const mtu = field(undefined, () =>
    config.mtu === undefined || config.mtu === null ? undefined : integerKey(config.mtu, 'mtu', 68, 65535),
  );
  const promiscMode = field(false, () => {
    if (config.promiscMode === undefined || config.promiscMode === null) return false;
    if (typeof config.promiscMode !== 'boolean')
      throw configError(`promiscMode must be a boolean, got ${JSON.stringify(config.promiscMode)}`);
    return config.promiscMode;
  });
  const owner = field(host.tapOwner, () => (config.owner === undefined ? host.tapOwner : integerKey(config.owner, 'owner', 0, 0xfffffffe)));
  const group = field(host.tapGroup, () => (config.group === undefined ? host.tapGroup : integerKey(config.group, 'group', 0, 0xfffffffe)));

  const prevResult = field(undefined, () => {
    const prev = config.prevResult;
    if (prev === undefined || prev === null) return undefined;
    const problem = checkPrevResult(prev);
    if (problem) throw configError(`prevResult ${problem}`, 'prevResult is the previous plugin\'s result (SPEC "Result")');
    return prev as JsonObject;
  });

  let validAttachments: Attachment[] | undefined;
  if (command === 'GC') {
    // libcni sends both spellings (the spec's first draft named it cni.dev/attachments).
    const list = config['cni.dev/valid-attachments'] ?? config['cni.dev/attachments'];
    if (!Array.isArray(list)) throw configError('GC needs "cni.dev/valid-attachments", a list of {containerID, ifname}');
    if (list.length > 100_000) throw configError('cni.dev/valid-attachments has more than 100000 entries');
    validAttachments = list.map((a, i) => {
      if (!isObject(a) || typeof a.containerID !== 'string' || typeof a.ifname !== 'string') {
        throw configError(`cni.dev/valid-attachments[${i}] must be {"containerID": string, "ifname": string}`);
      }
      return { containerID: a.containerID, ifname: a.ifname };
    });
  }

  return {
    cniVersion,
    name: config.name,
    type: config.type,
    deviceID,
    mac,
    macSource,
    mtu,
    promiscMode,
    owner,
    group,
    stateDir,
    lockTimeoutMs,
    host,
    prevResult,
    validAttachments,
  };
}
