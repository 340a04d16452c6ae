/**
 * The kubelet's device-manager checkpoint, `<kubelet root>/device-plugins/kubelet_internal_checkpoint`: which
 * pod (and container) the kubelet assigned which device of which resource. The kubelet rewrites it after every
 * allocation and pod removal; Multus reads it to find a pod's device IDs; here the CNI plugin reads it to check
 * that a pod only gets its own device, and the device plugin to reclaim devices no pod holds.
 *
 * Format, as the kubelet's checkpoint code writes it (Go's encoding/json of `checkpoint.Data`):
 *
 *     {"Data": {"PodDeviceEntries": [{"PodUID": "...", "ContainerName": "...", "ResourceName": "...",
 *                                     "DeviceIDs": {"-1": ["dev0", "dev1"]}, "AllocResp": "<base64>"}, ...],
 *               "RegisteredDevices": {"<resource>": ["dev0", ...]}},
 *      "Checksum": 1234567890, "BootID": "..."}
 *
 * `DeviceIDs` maps a NUMA node (`-1`: the device reports no topology) to device IDs; kubelets up to 1.19 wrote a
 * plain array instead. Go writes a nil slice or map as `null`. `BootID` is recent and optional.
 *
 * Validation is strict for every field this module reads (a wrong type anywhere is "corrupt", never skipped);
 * fields it does not read (new ones a later kubelet adds outside `Data`) are ignored.
 *
 * The `Checksum` is checked for presence and type but **not verified**. It is an unkeyed FNV-32a hash of Go's
 * reflection printer's rendering of the Go structs (type names included), so it proves nothing against someone
 * who can write the file; what makes the file trustworthy is who can write it, which `readCheckpoint` checks
 * (a regular file owned by root, not group/world writable, in a directory of the same kind, no symlink). The
 * kubelet writes it atomically (temp file, fsync, rename), so a reader never sees a torn file. And the rendering
 * is a kubelet internal that has changed across releases (the 1.20 format change needed type-name substitutions
 * to verify old files); verifying it would let a kubelet upgrade refuse every ADD on the node. Multus, which
 * reads the same file for device IDs, does not verify it either.
 */
import { isUtf8 } from 'node:buffer';
import { lstatSync, type Stats } from 'node:fs';
import { dirname, join } from 'node:path';
import { type BoundedRead, describeKind, readBounded } from '../util/bounded-read';
import { ownerProblem } from '../util/root-only';

export const DEFAULT_KUBELET_ROOT = '/var/lib/kubelet';
export const CHECKPOINT_NAME = 'kubelet_internal_checkpoint';
/** Far above a full node (500 pods x 4 devices is ~250 kB with allocation responses); bounds memory and time. */
export const MAX_CHECKPOINT_BYTES = 16 * 1024 * 1024;
/** The resources of the macvtap device plugin (kubevirt's and this project's). */
export const MACVTAP_RESOURCE_PREFIX = 'macvtap.network.kubevirt.io/';

/** `<kubeletRoot>/device-plugins/kubelet_internal_checkpoint`. */
export function checkpointPath(kubeletRoot: string): string {
  return join(kubeletRoot, 'device-plugins', CHECKPOINT_NAME);
}

/** One container's devices of one resource. */
export interface PodDeviceEntry {
  podUID: string;
  containerName: string;
  resourceName: string;
  /** The device IDs over all NUMA nodes, in file order. */
  deviceIDs: string[];
}

export interface DeviceCheckpoint {
  /** `v1`: DeviceIDs as a plain array (kubelet <= 1.19); `v2`: per NUMA node. An empty file reads as `v2`. */
  format: 'v1' | 'v2';
  entries: PodDeviceEntry[];
  /** Resource -> the healthy device IDs the plugin last reported. */
  registeredDevices: Map<string, string[]>;
  /** As written (not verified: see the module comment). */
  checksum: number;
  bootID: string | undefined;
}

export type CheckpointProblem = 'missing' | 'unreadable' | 'unsafe' | 'corrupt';

/** Why the checkpoint cannot be used. `message` names the file and the problem. */
export class CheckpointError extends Error {
  readonly problem: CheckpointProblem;
  readonly path: string;

  constructor(problem: CheckpointProblem, path: string, message: string) {
    super(message);
    this.name = 'CheckpointError';
    this.problem = problem;
    this.path = path;
  }
}

type Json = unknown;

function typeName(v: Json): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  return typeof v === 'object' ? 'an object' : `${typeof v} ${JSON.stringify(v)}`;
}

const NUMA_KEY = /^-?\d{1,19}$/;

function isObject(v: Json): v is Record<string, Json> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Parses and validates checkpoint text. Throws CheckpointError('corrupt') naming the first bad field. */
export function parseCheckpoint(text: string, source = CHECKPOINT_NAME): DeviceCheckpoint {
  const corrupt = (what: string): CheckpointError =>
    new CheckpointError('corrupt', source, `kubelet checkpoint ${source} is corrupt: ${what}`);
  let doc: Json;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    throw corrupt(`not JSON (${(err as Error).message})`);
  }
  if (!isObject(doc)) throw corrupt(`the document is ${typeName(doc)}, not an object`);
  const data = doc.Data;
  if (!isObject(data)) throw corrupt(`Data is ${data === undefined ? 'missing' : typeName(data)}, not an object`);
  const checksum = doc.Checksum;
  if (typeof checksum !== 'number' || !Number.isSafeInteger(checksum) || checksum < 0)
    throw corrupt(`Checksum is ${checksum === undefined ? 'missing' : typeName(checksum)}, not an unsigned integer`);
  const bootID = doc.BootID;
  if (bootID !== undefined && typeof bootID !== 'string') throw corrupt(`BootID is ${typeName(bootID)}, not a string`);

  // Field paths for messages are built only on failure (`where()`): the CNI reads this file in a cold process on
  // every ADD, so the loop over a full node's entries allocates nothing it does not keep.
  const stringList = (v: Json, where: () => string): string[] => {
    if (v === null) return [];
    if (!Array.isArray(v)) throw corrupt(`${where()} is ${typeName(v)}, not a list of device IDs`);
    for (let i = 0; i < v.length; i++) {
      if (typeof v[i] !== 'string') throw corrupt(`${where()}[${i}] is ${typeName(v[i] as Json)}, not a string`);
    }
    return v as string[];
  };
  const requiredString = (entry: Record<string, Json>, key: string, where: () => string, nonEmpty: boolean): string => {
    const v = entry[key];
    if (typeof v !== 'string') throw corrupt(`${where()}.${key} is ${v === undefined ? 'missing' : typeName(v)}, not a string`);
    if (nonEmpty && v === '') throw corrupt(`${where()}.${key} is empty`);
    return v;
  };

  let sawV1 = false;
  let sawV2 = false;
  const entries: PodDeviceEntry[] = [];
  const rawEntries = data.PodDeviceEntries;
  if (rawEntries !== null && rawEntries !== undefined && !Array.isArray(rawEntries))
    throw corrupt(`Data.PodDeviceEntries is ${typeName(rawEntries)}, not a list`);
  const list: Json[] = rawEntries ?? [];
  for (let i = 0; i < list.length; i++) {
    const raw = list[i];
    const where = (): string => `Data.PodDeviceEntries[${i}]`;
    if (!isObject(raw)) throw corrupt(`${where()} is ${typeName(raw)}, not an object`);
    const podUID = requiredString(raw, 'PodUID', where, true);
    const containerName = requiredString(raw, 'ContainerName', where, false);
    const resourceName = requiredString(raw, 'ResourceName', where, true);
    const ids = raw.DeviceIDs;
    let deviceIDs: string[];
    if (Array.isArray(ids)) {
      sawV1 = true;
      deviceIDs = stringList(ids, () => `${where()}.DeviceIDs`);
    } else if (isObject(ids)) {
      sawV2 = true;
      deviceIDs = [];
      for (const numa in ids) {
        // Go writes map[int64] keys as decimal strings.
        if (!NUMA_KEY.test(numa)) throw corrupt(`${where()}.DeviceIDs has key ${JSON.stringify(numa)}, not a NUMA node number`);
        const ofNode = stringList(ids[numa], () => `${where()}.DeviceIDs[${JSON.stringify(numa)}]`);
        deviceIDs = deviceIDs.length ? deviceIDs.concat(ofNode) : ofNode;
      }
    } else if (ids === null) {
      deviceIDs = [];
    } else {
      throw corrupt(`${where()}.DeviceIDs is ${ids === undefined ? 'missing' : typeName(ids)}, not a map of NUMA node to device IDs`);
    }
    const alloc = raw.AllocResp;
    if (alloc !== undefined && alloc !== null && typeof alloc !== 'string')
      throw corrupt(`${where()}.AllocResp is ${typeName(alloc)}, not base64`);
    entries.push({ podUID, containerName, resourceName, deviceIDs });
  }
  if (sawV1 && sawV2) throw corrupt('PodDeviceEntries mix the kubelet <= 1.19 (list) and >= 1.20 (per NUMA node) DeviceIDs formats');

  const registeredDevices = new Map<string, string[]>();
  const registered = data.RegisteredDevices;
  if (registered !== null && registered !== undefined) {
    if (!isObject(registered)) throw corrupt(`Data.RegisteredDevices is ${typeName(registered)}, not an object`);
    for (const [resource, list] of Object.entries(registered)) {
      registeredDevices.set(
        resource,
        stringList(list, () => `Data.RegisteredDevices[${JSON.stringify(resource)}]`),
      );
    }
  }
  return { format: sawV1 ? 'v1' : 'v2', entries, registeredDevices, checksum, bootID };
}

/**
 * Reads and validates the checkpoint at `path` (see `checkpointPath`). Opens without following a symlink and
 * without blocking (a FIFO planted there cannot hang the caller), reads at most MAX_CHECKPOINT_BYTES, and
 * refuses a file or directory that someone other than root could have written.
 */
export function readCheckpoint(path: string, maxBytes = MAX_CHECKPOINT_BYTES): DeviceCheckpoint {
  const dir = dirname(path);
  let dirStat: Stats;
  try {
    dirStat = lstatSync(dir);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR')
      throw new CheckpointError('missing', path, `kubelet checkpoint directory ${dir} does not exist`);
    throw new CheckpointError('unreadable', path, `cannot read kubelet checkpoint directory ${dir}: ${(err as Error).message}`);
  }
  if (!dirStat.isDirectory()) throw new CheckpointError('unsafe', path, `kubelet checkpoint directory ${dir} is ${describeKind(dirStat)}`);
  const dirProblem = ownerProblem(dirStat);
  if (dirProblem) throw new CheckpointError('unsafe', path, `kubelet checkpoint directory ${dir} ${dirProblem}`);

  const r = readBounded(path, { maxBytes, noFollow: true, rootOnly: true });
  if (!r.ok) throw checkpointReadError(path, r, maxBytes);
  // isUtf8 is native and needs no decoder set-up (a TextDecoder costs a cold CNI process milliseconds).
  if (!isUtf8(r.bytes)) throw new CheckpointError('corrupt', path, `kubelet checkpoint ${path} is corrupt: not UTF-8`);
  return parseCheckpoint(r.bytes.toString('utf8'), path);
}

function checkpointReadError(path: string, r: Exclude<BoundedRead, { ok: true }>, maxBytes: number): CheckpointError {
  switch (r.reason) {
    case 'missing':
      return new CheckpointError('missing', path, `kubelet checkpoint ${path} does not exist`);
    case 'symlink':
      return new CheckpointError('unsafe', path, `kubelet checkpoint ${path} is a symlink`);
    case 'open':
      return new CheckpointError('unreadable', path, `cannot open kubelet checkpoint ${path}: ${r.error.message}`);
    case 'read':
      return new CheckpointError('unreadable', path, `cannot read kubelet checkpoint ${path}: ${r.error.message}`);
    case 'not-file':
      return new CheckpointError('unsafe', path, `kubelet checkpoint ${path} is ${r.kind}`);
    case 'owner':
      return new CheckpointError('unsafe', path, `kubelet checkpoint ${path} ${r.problem}`);
    case 'size':
      return new CheckpointError('corrupt', path, `kubelet checkpoint ${path} is ${r.size} bytes, above the ${maxBytes}-byte limit`);
    case 'grew':
      return new CheckpointError('corrupt', path, `kubelet checkpoint ${path} is above the ${maxBytes}-byte limit`);
  }
}

/** The entries holding `deviceID` under a resource whose name starts with `resourcePrefix`. */
export function holdersOf(cp: DeviceCheckpoint, deviceID: string, resourcePrefix = MACVTAP_RESOURCE_PREFIX): PodDeviceEntry[] {
  return cp.entries.filter(
    (e) => e.resourceName.startsWith(resourcePrefix) && e.resourceName.length > resourcePrefix.length && e.deviceIDs.includes(deviceID),
  );
}

/** Device IDs of `resourceName` held by any pod, with the pods holding each. */
export function assignedDevices(cp: DeviceCheckpoint, resourceName: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const e of cp.entries) {
    if (e.resourceName !== resourceName) continue;
    for (const id of e.deviceIDs) {
      const pods = out.get(id);
      if (!pods) out.set(id, [e.podUID]);
      else if (!pods.includes(e.podUID)) pods.push(e.podUID);
    }
  }
  return out;
}
