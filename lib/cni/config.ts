/**
 * Reading an invocation: the CNI_* environment and the network configuration on stdin, validated into typed
 * values before anything touches the kernel. Each problem is a CniError with the spec's code: 4 for the
 * environment, 6 for undecodable input, 7 for configuration values, 1 for versions.
 *
 * DEL reads leniently: a value DEL does not need (mac, mtu, promiscMode, owner, group, CNI_ARGS) is logged and
 * ignored when invalid, so that the cleanup of a failed ADD is never refused for the input that made ADD fail.
 */
import { DEFAULT_LOCK_TIMEOUT_MS, DEFAULT_STATE_DIR, STATE_DIR_ENV } from '../state';
import { formatMac, interfaceNameProblem, parseUnicastMac } from '../netlink/validate';
import { CniArgs, parseCniArgs } from './args';
import { CniError, ErrorCode } from './errors';
import { configureLog, DEFAULT_LOG_LEVEL, isLogLevel, log, LOG_LEVELS, LogLevel } from './log';
import { CniVersion, JsonObject, requireSupported, requireVerb } from './version';

export const COMMANDS = ['ADD', 'DEL', 'CHECK', 'VERSION', 'GC', 'STATUS'] as const;
export type Command = (typeof COMMANDS)[number];

/** Default host state directory, shared with the device plugin, and the environment variable overriding it. */
export { DEFAULT_STATE_DIR, STATE_DIR_ENV };
/** Environment variable bounding the wait for a device's lock (milliseconds; the runtime's environment). */
export const LOCK_TIMEOUT_ENV = 'MACVTAP_CNI_LOCK_TIMEOUT_MS';
/** The qemu user and group of KubeVirt's virt-launcher images. */
export const DEFAULT_OWNER = 107;
export const DEFAULT_GROUP = 107;

/** SPEC: a container ID starts with an alphanumeric, then alphanumerics, `_`, `.`, `-`. */
const CONTAINER_ID_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;

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
  stateDir: string;
  /** How long a verb waits for the device's lock before code 11. */
  lockTimeoutMs: number;
  logFile: string | undefined;
  logLevel: LogLevel;
  prevResult: JsonObject | undefined;
  /** GC only: `cni.dev/valid-attachments`. */
  validAttachments: Attachment[] | undefined;
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
  if (!CONTAINER_ID_RE.test(containerId)) {
    throw envError(
      `CNI_CONTAINERID ${JSON.stringify(containerId)} is not a valid container ID`,
      'it must start with a letter or digit, followed by letters, digits, "_", "." or "-"',
    );
  }
  const ifname = env.CNI_IFNAME ?? '';
  if (!ifname) throw envError('CNI_IFNAME is not set');
  const problem = interfaceNameProblem(ifname);
  if (problem) throw envError(`CNI_IFNAME ${problem}`, 'an interface name is 1-15 bytes, not "." or "..", without "/", ":" or whitespace');
  const netns = env.CNI_NETNS ?? '';
  if (!netns && command !== 'DEL') throw envError('CNI_NETNS is not set');
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

/** Decodes stdin. Anything but a JSON object is code 6. */
export function decodeConfig(stdin: string): Record<string, unknown> {
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
  if (!isObject(v)) throw configError(`${key} must be an object, got ${typeof v}`);
  return v;
}

function integerKey(value: unknown, key: string, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isInteger(value)) throw configError(`${key} must be an integer, got ${JSON.stringify(value)}`);
  if (value < min || value > max) throw configError(`${key} must be between ${min} and ${max}, got ${value}`);
  return value;
}

function macValue(value: unknown, source: MacSource, code: number): string {
  try {
    return formatMac(parseUnicastMac(value, source));
  } catch (err) {
    throw new CniError(code, (err as Error).message, 'a MAC is 6 hex octets like 02:00:00:00:00:01, unicast and not all-zero');
  }
}

/**
 * Validates the configuration for `command`. Reads `logFile`/`logLevel` first and configures the log, so that
 * later problems are logged where the operator looks.
 */
export function readConfig(
  command: Command,
  config: Record<string, unknown>,
  env: Environment | undefined,
  processEnv: NodeJS.ProcessEnv,
): NetConf {
  const lenient = command === 'DEL';
  // Logging first.
  let logLevel: LogLevel = DEFAULT_LOG_LEVEL;
  if (config.logLevel !== undefined) {
    if (!isLogLevel(config.logLevel)) {
      throw configError(`logLevel must be one of ${LOG_LEVELS.join(', ')}, got ${JSON.stringify(config.logLevel)}`);
    }
    logLevel = config.logLevel;
  }
  let logFile: string | undefined;
  if (config.logFile !== undefined) {
    if (typeof config.logFile !== 'string' || !config.logFile.startsWith('/'))
      throw configError(`logFile must be an absolute path, got ${JSON.stringify(config.logFile)}`);
    logFile = config.logFile;
  }
  configureLog({ level: logLevel, file: logFile });

  if (config.cniVersion !== undefined && typeof config.cniVersion !== 'string') {
    throw new CniError(ErrorCode.DecodeFailure, `cniVersion must be a string, got ${JSON.stringify(config.cniVersion)}`);
  }
  const cniVersion = requireSupported(config.cniVersion);
  requireVerb(command, cniVersion);
  if (typeof config.name !== 'string' || config.name === '') throw configError('name must be a non-empty string');
  if (typeof config.type !== 'string' || config.type === '') throw configError('type must be a non-empty string');

  let stateDir = processEnv[STATE_DIR_ENV] || DEFAULT_STATE_DIR;
  if (config.stateDir !== undefined) {
    if (typeof config.stateDir !== 'string' || !config.stateDir.startsWith('/'))
      throw configError(`stateDir must be an absolute path, got ${JSON.stringify(config.stateDir)}`);
    stateDir = config.stateDir;
  }

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
    if (typeof value !== 'string' || value === '') throw configError(`${key} must be a non-empty string, got ${JSON.stringify(value)}`);
    deviceID = value;
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
  const owner = field(DEFAULT_OWNER, () => (config.owner === undefined ? DEFAULT_OWNER : integerKey(config.owner, 'owner', 0, 0xfffffffe)));
  const group = field(DEFAULT_GROUP, () => (config.group === undefined ? DEFAULT_GROUP : integerKey(config.group, 'group', 0, 0xfffffffe)));

  const prevResult = field(undefined, () => {
    const prev = config.prevResult;
    if (prev === undefined || prev === null) return undefined;
    if (!isObject(prev)) throw configError('prevResult must be an object');
    if (prev.interfaces !== undefined && !Array.isArray(prev.interfaces)) throw configError('prevResult.interfaces must be an array');
    return prev;
  });

  let validAttachments: Attachment[] | undefined;
  if (command === 'GC') {
    // libcni sends both spellings (the spec's first draft named it cni.dev/attachments).
    const list = config['cni.dev/valid-attachments'] ?? config['cni.dev/attachments'];
    if (!Array.isArray(list)) throw configError('GC needs "cni.dev/valid-attachments", a list of {containerID, ifname}');
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
    logFile,
    logLevel,
    prevResult,
    validAttachments,
  };
}
