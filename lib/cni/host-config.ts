/**
 * The host configuration: every setting that names a host path or a node-wide policy. Only root on the node
 * controls it; the network configuration on stdin never does (a tenant writes that, through a
 * NetworkAttachmentDefinition). Sources, lowest precedence first:
 *
 *   1. built-in defaults;
 *   2. the file `macvtap.conf.json` next to the executable (`/opt/cni/bin/macvtap.conf.json` for the DaemonSet's
 *      install), or the file `$MACVTAP_CNI_HOST_CONFIG` names; a missing file means the defaults;
 *   3. `MACVTAP_CNI_*` variables of the runtime's environment (the node admin's: tests and the demo use them).
 *
 * The file must be a regular file owned by root (or by the user running the plugin, for tests), not writable by
 * group or others, in a directory of the same kind, and is opened without following a symlink or blocking. A file
 * that fails any of that, is not a JSON object, or has an unknown key or a bad value is code 111: the plugin never
 * guesses a policy (a typo must not turn `enforce` into the default silently).
 */
import { isUtf8 } from 'node:buffer';
import { lstatSync, statSync, type Stats } from 'node:fs';
import { dirname, isAbsolute, join } from 'node:path';
import { DEFAULT_KUBELET_ROOT } from '../kubelet/checkpoint';
import { DEFAULT_STATE_DIR, STATE_DIR_ENV } from '../state';
import { isLogLevel, LOG_LEVELS, type LogLevel } from '../util/log';
import { readBounded } from '../util/bounded-read';
import { ownerProblem } from '../util/root-only';
import { CniError, ErrorCode } from './errors';

/** The file's name, next to the executable. */
export const HOST_CONFIG_NAME = 'macvtap.conf.json';
/** Environment variable naming another host configuration file (tests). */
export const HOST_CONFIG_ENV = 'MACVTAP_CNI_HOST_CONFIG';
const MAX_BYTES = 64 * 1024;

export const OWNERSHIP_POLICIES = ['enforce', 'warn', 'off'] as const;
export type OwnershipPolicy = (typeof OWNERSHIP_POLICIES)[number];

/** The qemu user and group of KubeVirt's virt-launcher images. */
export const DEFAULT_OWNER = 107;
export const DEFAULT_GROUP = 107;

export interface HostConfig {
  /** The node state directory shared with the device plugin. */
  stateDir: string;
  /** Where the log goes (appended); undefined: stderr. */
  logFile: string | undefined;
  logLevel: LogLevel;
  /** What ADD does when the kubelet's checkpoint does not give this pod the device (see ownership.ts). */
  ownership: OwnershipPolicy;
  /** The kubelet's root directory; its device-manager checkpoint is `<kubeletRoot>/device-plugins/...`. */
  kubeletRoot: string;
  /** Owner and group of `/dev/tap<ifindex>` when the network configuration does not set `owner`/`group`. */
  tapOwner: number;
  tapGroup: number;
  /** The file read ('' when there was none), for messages. */
  file: string;
}

type Key = Exclude<keyof HostConfig, 'file'>;

/** Each key's environment variable. */
export const HOST_ENV: Record<Key, string> = {
  stateDir: STATE_DIR_ENV,
  logFile: 'MACVTAP_CNI_LOG_FILE',
  logLevel: 'MACVTAP_CNI_LOG_LEVEL',
  ownership: 'MACVTAP_CNI_OWNERSHIP',
  kubeletRoot: 'MACVTAP_CNI_KUBELET_ROOT',
  tapOwner: 'MACVTAP_CNI_TAP_OWNER',
  tapGroup: 'MACVTAP_CNI_TAP_GROUP',
};

/**
 * Keys a network configuration must not carry: they name host paths or node policy. (`owner`/`group` stay
 * network keys: they only decide who may open the pod's own tap node.)
 */
export const HOST_ONLY_KEYS: readonly Key[] = ['stateDir', 'logFile', 'logLevel', 'ownership', 'kubeletRoot'];

export const DEFAULT_HOST_CONFIG: Readonly<HostConfig> = {
  stateDir: DEFAULT_STATE_DIR,
  logFile: undefined,
  logLevel: 'warn',
  // Without a kubelet (no K8S_POD_UID in CNI_ARGS) nothing is checked, so the safe policy costs nothing there.
  ownership: 'enforce',
  kubeletRoot: DEFAULT_KUBELET_ROOT,
  tapOwner: DEFAULT_OWNER,
  tapGroup: DEFAULT_GROUP,
  file: '',
};

/** The executable's own path: the single executable itself, or the script node runs. */
function executablePath(): string | undefined {
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const sea = require('node:sea') as { isSea(): boolean };
    if (sea.isSea()) return process.execPath;
  } catch {
    /* not a Node with SEA support: a script */
  }
  return process.argv[1];
}

/** Where the host configuration file is looked for. */
export function hostConfigPath(env: NodeJS.ProcessEnv): string | undefined {
  const named = env[HOST_CONFIG_ENV];
  if (named) return named;
  const exe = executablePath();
  return exe ? join(dirname(exe), HOST_CONFIG_NAME) : undefined;
}

function hostError(msg: string, details = ''): CniError {
  return new CniError(ErrorCode.HostConfigInvalid, msg, details);
}

/** The file's text, or undefined if it does not exist. Never follows a symlink, never blocks. */
function readTrusted(file: string): string | undefined {
  const dir = dirname(file);
  let dirStat: Stats;
  try {
    dirStat = lstatSync(dir);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
    throw hostError(`cannot read the host configuration directory ${dir}: ${(err as Error).message}`);
  }
  // A symlinked directory is fine only if it leads to a directory as safe as a real one.
  const real = dirStat.isSymbolicLink() ? safeStat(dir) : dirStat;
  const dirProblem = !real?.isDirectory() ? 'is not a directory' : ownerProblem(real);
  if (dirProblem) throw hostError(`the host configuration directory ${dir} ${dirProblem}`, 'only root may be able to write it');
  const r = readBounded(file, { maxBytes: MAX_BYTES, noFollow: true, rootOnly: true });
  if (r.ok) {
    if (!isUtf8(r.bytes)) throw hostError(`the host configuration ${file} is not UTF-8`);
    return r.bytes.toString('utf8');
  }
  switch (r.reason) {
    case 'missing':
      return undefined;
    case 'symlink':
      throw hostError(`the host configuration ${file} is a symlink`, 'write the file itself there');
    case 'open':
      throw hostError(`cannot open the host configuration ${file}: ${r.error.message}`);
    case 'read':
      throw hostError(`cannot read the host configuration ${file}: ${r.error.message}`);
    case 'not-file':
      throw hostError(`the host configuration ${file} is ${r.kind}, not a regular file`);
    case 'owner':
      throw hostError(`the host configuration ${file} ${r.problem}`, 'only root may be able to write it');
    case 'size':
      throw hostError(`the host configuration ${file} is ${r.size} bytes, above ${MAX_BYTES}`);
    case 'grew':
      throw hostError(`the host configuration ${file} is above ${MAX_BYTES} bytes`);
  }
}

function safeStat(path: string): Stats | undefined {
  try {
    return statSync(path);
  } catch {
    return undefined;
  }
}

/** An absolute path without NUL or `..` components. */
function pathValue(value: unknown): string | undefined {
  if (typeof value !== 'string' || !isAbsolute(value) || value.includes('\0') || value.split('/').includes('..')) return undefined;
  return value;
}

function idValue(value: unknown): number | undefined {
  const n = typeof value === 'string' && /^\d{1,10}$/.test(value) ? Number(value) : value;
  return typeof n === 'number' && Number.isInteger(n) && n >= 0 && n <= 0xfffffffe ? n : undefined;
}

/** Checks one key's value (from the file, or a variable's text); undefined when invalid. */
function parseValue(key: Key, value: unknown): HostConfig[Key] | undefined {
  switch (key) {
    case 'stateDir':
    case 'logFile':
    case 'kubeletRoot':
      return pathValue(value);
    case 'logLevel':
      return isLogLevel(value) ? value : undefined;
    case 'ownership':
      return (OWNERSHIP_POLICIES as readonly unknown[]).includes(value) ? (value as OwnershipPolicy) : undefined;
    case 'tapOwner':
    case 'tapGroup':
      return idValue(value);
  }
}

const EXPECTED: Record<Key, string> = {
  stateDir: 'an absolute path',
  logFile: 'an absolute path',
  kubeletRoot: 'an absolute path',
  logLevel: `one of ${LOG_LEVELS.join(', ')}`,
  ownership: `one of ${OWNERSHIP_POLICIES.join(', ')}`,
  tapOwner: 'a uid (0-4294967294)',
  tapGroup: 'a gid (0-4294967294)',
};

const KEYS = Object.keys(HOST_ENV) as Key[];

/** Reads the host configuration: defaults, then the file, then the environment. Throws code 111 (file) or 4 (env). */
export function readHostConfig(env: NodeJS.ProcessEnv): HostConfig {
  const out: HostConfig = { ...DEFAULT_HOST_CONFIG };
  const set = <K extends Key>(key: K, value: HostConfig[K]): void => {
    out[key] = value;
  };
  const file = hostConfigPath(env);
  const text = file === undefined ? undefined : readTrusted(file);
  if (file !== undefined && text !== undefined) {
    out.file = file;
    let doc: unknown;
    try {
      doc = JSON.parse(text);
    } catch (err) {
      throw hostError(`the host configuration ${file} is not valid JSON`, (err as Error).message);
    }
    if (typeof doc !== 'object' || doc === null || Array.isArray(doc))
      throw hostError(`the host configuration ${file} is not a JSON object`);
    for (const [key, value] of Object.entries(doc)) {
      if (!(KEYS as string[]).includes(key))
        throw hostError(
          `the host configuration ${file} has an unknown key ${JSON.stringify(key).slice(0, 80)}`,
          `known keys: ${KEYS.join(', ')}`,
        );
      const parsed = parseValue(key as Key, value);
      if (parsed === undefined)
        throw hostError(
          `the host configuration ${file}: ${key} must be ${EXPECTED[key as Key]}, got ${JSON.stringify(value)?.slice(0, 80)}`,
        );
      set(key as Key, parsed);
    }
  }
  for (const key of KEYS) {
    const raw = env[HOST_ENV[key]];
    if (raw === undefined || raw === '') continue;
    const parsed = parseValue(key, raw);
    if (parsed === undefined)
      throw new CniError(
        ErrorCode.InvalidEnvironment,
        `${HOST_ENV[key]} must be ${EXPECTED[key]}, got ${JSON.stringify(raw).slice(0, 80)}`,
      );
    set(key, parsed);
  }
  return out;
}

/** Where a host-only key is set now, for the refusal of a network configuration that carries it. */
export function whereSet(key: Key, host: HostConfig, env: NodeJS.ProcessEnv): string {
  const file = host.file || hostConfigPath(env) || `${HOST_CONFIG_NAME} next to the macvtap executable`;
  return `it is a host setting: set "${key}" in the host configuration file ${file} (the DaemonSet's install step writes it), or ${HOST_ENV[key]} in the runtime's environment`;
}
