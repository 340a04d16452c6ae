/**
 * File names of the state directory, derived only from validated IDs:
 *
 *   locks/<deviceID>.lock
 *   allocations/<deviceID>.json
 *   attachments/<deviceID>+<containerID>+<ifname>.json     (ifname percent-encoded beyond [A-Za-z0-9_.-])
 *   <any of these>.<pid>.tmp                                 (a writer's temp file before its rename)
 *
 * `+` appears in none of the three parts, so an attachment name splits back unambiguously. Bounds keep the longest
 * temp name under NAME_MAX (255): 90 + 1 + 96 + 1 + 45 + 5 (`.json`) + 12 (`.<pid>.tmp`) = 250.
 */
import { InvalidStateName } from './errors';

export const DEVICE_ID_MAX = 90;
export const CONTAINER_ID_MAX = 96;

const DEVICE_ID_RE = /^[A-Za-z0-9_-][A-Za-z0-9._-]*$/;
/** The CNI spec's container ID pattern. */
const CONTAINER_ID_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;

/** Why `id` cannot be a device ID, or undefined if it can. */
export function deviceIdProblem(id: unknown): string | undefined {
  if (typeof id !== 'string') return `must be a string, got ${typeof id}`;
  if (id.length === 0) return 'must not be empty';
  if (id.length > DEVICE_ID_MAX) return `is ${id.length} characters long; at most ${DEVICE_ID_MAX} are allowed`;
  if (!DEVICE_ID_RE.test(id)) return `${JSON.stringify(id)} may only contain A-Z, a-z, 0-9, ".", "_" and "-", and not start with "."`;
  return undefined;
}

export function containerIdProblem(id: unknown): string | undefined {
  if (typeof id !== 'string') return `must be a string, got ${typeof id}`;
  if (id.length === 0) return 'must not be empty';
  if (id.length > CONTAINER_ID_MAX) return `is ${id.length} characters long; at most ${CONTAINER_ID_MAX} are allowed`;
  if (!CONTAINER_ID_RE.test(id)) return `${JSON.stringify(id)} must start with a letter or digit, then letters, digits, "_", "." or "-"`;
  return undefined;
}

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/** Linux's rule for interface names (dev_valid_name): 1-15 bytes, not `.` or `..`, no `/`, `:`, whitespace or NUL. */
export function ifnameProblem(name: unknown): string | undefined {
  if (typeof name !== 'string') return `must be a string, got ${typeof name}`;
  const bytes = Buffer.byteLength(name);
  if (bytes === 0 || bytes > 15) return `must be 1-15 bytes, got ${bytes}`;
  if (name === '.' || name === '..') return `must not be ${JSON.stringify(name)}`;
  if (/[/:\s\0]/.test(name)) return `${JSON.stringify(name)} contains a character Linux does not allow`;
  if (LONE_SURROGATE.test(name)) return `${JSON.stringify(name)} is not valid Unicode (a lone surrogate has no bytes)`;
  return undefined;
}

function check(field: string, problem: string | undefined): void {
  if (problem) throw new InvalidStateName(field, problem);
}

export function lockName(deviceID: string): string {
  check('deviceID', deviceIdProblem(deviceID));
  return `${deviceID}.lock`;
}

export function allocationName(deviceID: string): string {
  check('deviceID', deviceIdProblem(deviceID));
  return `${deviceID}.json`;
}

function encodeIfname(ifname: string): string {
  let out = '';
  for (const byte of Buffer.from(ifname)) {
    const c = String.fromCharCode(byte);
    out += /[A-Za-z0-9_.-]/.test(c) ? c : `%${byte.toString(16).padStart(2, '0')}`;
  }
  return out;
}

/** The key of one attachment: which device, which container, which interface in it. */
export interface AttachmentKey {
  deviceID: string;
  containerID: string;
  ifname: string;
}

export function attachmentName(key: AttachmentKey): string {
  check('deviceID', deviceIdProblem(key.deviceID));
  check('containerID', containerIdProblem(key.containerID));
  check('ifname', ifnameProblem(key.ifname));
  return `${key.deviceID}+${key.containerID}+${encodeIfname(key.ifname)}.json`;
}

/** The device ID an attachment file name (or its temp file's name) belongs to, if it is one. */
export function deviceOfAttachmentName(name: string): string | undefined {
  const plus = name.indexOf('+');
  if (plus <= 0) return undefined;
  const deviceID = name.slice(0, plus);
  return deviceIdProblem(deviceID) ? undefined : deviceID;
}

/** A writer's temp file for `name`. */
export function tempName(name: string, pid = process.pid): string {
  return `${name}.${pid}.tmp`;
}

/** `{target, pid}` if `name` is a temp file, else undefined. */
export function parseTempName(name: string): { target: string; pid: number } | undefined {
  const m = /^(.+)\.(\d{1,10})\.tmp$/.exec(name);
  return m ? { target: m[1], pid: Number(m[2]) } : undefined;
}
