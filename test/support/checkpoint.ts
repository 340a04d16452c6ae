/**
 * The kubelet stand-in's device-manager checkpoint: the pod -> device assignments it made, written to
 * `<device-plugins dir>/kubelet_internal_checkpoint` byte for byte as the kubelet writes it, so the code that
 * reads the real file (lib/kubelet) is tested against the real format:
 *
 * - Go's encoding/json of the kubelet's `checkpoint.Data`: fields in struct order, map keys sorted, nil as
 *   `null`, `<` `>` `&` U+2028 U+2029 escaped as `\u003c`..., `AllocResp` as standard base64 of the protobuf
 *   `ContainerAllocateResponse` the plugin answered;
 * - `DeviceIDs` per NUMA node, `-1` for devices without topology (the macvtap plugin reports none); or, with
 *   `format: 'v1'`, the plain list kubelets up to 1.19 wrote;
 * - `Checksum`: the kubelet's FNV-32a over its Go reflection printer's (`spew`, `%#v`, sorted keys) rendering of
 *   `Data`. `kubeletChecksum` reproduces it; the unit tests check it against checkpoints published from real
 *   nodes;
 * - written as the kubelet's file store does: a temp file `.<random>` (mode 0600) in the same directory, write,
 *   fsync, close, rename over the target.
 */
import { randomInt } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { AllocateResponse } from './kubelet';

export const CHECKPOINT_FILE = 'kubelet_internal_checkpoint';
/** The NUMA node the kubelet files a device under when the device reports no topology. */
export const NO_NUMA_NODE = -1;

export interface CheckpointEntry {
  podUID: string;
  containerName: string;
  resourceName: string;
  /** NUMA node -> device IDs (kubelet >= 1.20). */
  deviceIDs: Map<number, string[]>;
  /** The plugin's ContainerAllocateResponse, protobuf-encoded; undefined is Go's nil (`null`). */
  allocResp: Buffer | undefined;
}

export interface CheckpointData {
  entries: CheckpointEntry[] | undefined;
  registered: Map<string, string[]> | undefined;
}

/** FNV-1a, 32 bits, over the UTF-8 bytes of `text` (Go's hash/fnv New32a). */
export function fnv32a(text: string): number {
  let h = 0x811c9dc5;
  for (const b of Buffer.from(text, 'utf8')) {
    h ^= b;
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h >>> 0;
}

/**
 * The kubelet's checksum of `data`: spew's `%#v` of `checkpoint.checkpointData` (a struct's type is printed
 * before it unless it is a slice element or a map key/value; strings raw; []byte as decimal bytes; map keys
 * sorted; nil as `<nil>`), hashed with FNV-32a. For `v1` the kubelet renders its 1.19 types under the current
 * names, so only `DeviceIDs` differs.
 */
export function kubeletChecksum(data: CheckpointData, format: 'v1' | 'v2' = 'v2'): number {
  const list = (xs: string[] | undefined): string => (xs ? `[${xs.join(' ')}]` : '<nil>');
  const entry = (e: CheckpointEntry): string => {
    const numa = [...e.deviceIDs.keys()].sort((a, b) => a - b);
    const ids =
      format === 'v1'
        ? `([]string)${list(numa.flatMap((n) => e.deviceIDs.get(n) ?? []))}`
        : `(checkpoint.DevicesPerNUMA)map[${numa.map((n) => `${n}:${list(e.deviceIDs.get(n))}`).join(' ')}]`;
    const alloc = e.allocResp ? `[${[...e.allocResp].join(' ')}]` : '<nil>';
    return `{PodUID:(string)${e.podUID} ContainerName:(string)${e.containerName} ResourceName:(string)${e.resourceName} DeviceIDs:${ids} AllocResp:([]uint8)${alloc}}`;
  };
  const entries = data.entries ? `[${data.entries.map(entry).join(' ')}]` : '<nil>';
  const registered = data.registered
    ? `map[${[...data.registered.keys()]
        .sort()
        .map((k) => `${k}:${list(data.registered?.get(k))}`)
        .join(' ')}]`
    : '<nil>';
  return fnv32a(
    `(checkpoint.checkpointData){PodDeviceEntries:([]checkpoint.PodDevicesEntry)${entries} RegisteredDevices:(map[string][]string)${registered}}`,
  );
}

/** A JSON string as Go's encoding/json writes it (HTML-safe escaping). */
function goString(s: string): string {
  return JSON.stringify(s).replace(/[<>&\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

function goList(xs: string[] | undefined): string {
  return xs ? `[${xs.map(goString).join(',')}]` : 'null';
}

/** Go's encoding/json sorts map keys by their string form ("-1" < "0" < "10" < "2"). */
function sortedKeys<K extends string | number>(m: Map<K, unknown>): K[] {
  return [...m.keys()].sort((a, b) => (String(a) < String(b) ? -1 : String(a) > String(b) ? 1 : 0));
}

/** The checkpoint file's bytes, as the kubelet's json.Marshal of checkpoint.Data writes them. */
export function renderCheckpoint(data: CheckpointData, opts: { format?: 'v1' | 'v2'; bootID?: string } = {}): string {
  const format = opts.format ?? 'v2';
  const entry = (e: CheckpointEntry): string => {
    const ids =
      format === 'v1'
        ? goList([...e.deviceIDs.keys()].sort((a, b) => a - b).flatMap((n) => e.deviceIDs.get(n) ?? []))
        : `{${sortedKeys(e.deviceIDs)
            .map((n) => `${goString(String(n))}:${goList(e.deviceIDs.get(n))}`)
            .join(',')}}`;
    const alloc = e.allocResp ? goString(e.allocResp.toString('base64')) : 'null';
    return `{"PodUID":${goString(e.podUID)},"ContainerName":${goString(e.containerName)},"ResourceName":${goString(e.resourceName)},"DeviceIDs":${ids},"AllocResp":${alloc}}`;
  };
  const entries = data.entries ? `[${data.entries.map(entry).join(',')}]` : 'null';
  const registered = data.registered
    ? `{${sortedKeys(data.registered)
        .map((k) => `${goString(k)}:${goList(data.registered?.get(k))}`)
        .join(',')}}`
    : 'null';
  const boot = opts.bootID ? `,"BootID":${goString(opts.bootID)}` : '';
  return `{"Data":{"PodDeviceEntries":${entries},"RegisteredDevices":${registered}},"Checksum":${kubeletChecksum(data, format)}${boot}}`;
}

/** Writes `data` to `<dir>/<name>` as the kubelet's file store does (temp `.<random>` 0600, fsync, rename). */
export function writeLikeKubelet(dir: string, name: string, data: string | Buffer): void {
  fs.mkdirSync(dir, { recursive: true, mode: 0o755 });
  let temp: string;
  let fd: number;
  for (;;) {
    temp = path.join(dir, `.${randomInt(2 ** 32 - 1)}`);
    try {
      fd = fs.openSync(temp, fs.constants.O_RDWR | fs.constants.O_CREAT | fs.constants.O_EXCL, 0o600);
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
  }
  try {
    fs.writeSync(fd, typeof data === 'string' ? Buffer.from(data) : data);
    fs.fsyncSync(fd);
  } catch (err) {
    fs.closeSync(fd);
    fs.rmSync(temp, { force: true });
    throw err;
  }
  fs.closeSync(fd);
  fs.renameSync(temp, path.join(dir, name));
}

/* Protobuf encoding of v1beta1.ContainerAllocateResponse (what the kubelet keeps as AllocResp). */
function varint(n: number): Buffer {
  const out: number[] = [];
  while (n > 0x7f) {
    out.push((n & 0x7f) | 0x80);
    n >>>= 7;
  }
  out.push(n);
  return Buffer.from(out);
}
function field(num: number, body: Buffer): Buffer {
  return Buffer.concat([varint((num << 3) | 2), varint(body.length), body]);
}
function str(num: number, s: string): Buffer {
  return s === '' ? Buffer.alloc(0) : field(num, Buffer.from(s));
}
function stringMap(num: number, m: Record<string, string>): Buffer[] {
  return Object.keys(m)
    .sort()
    .map((k) => field(num, Buffer.concat([str(1, k), str(2, m[k])])));
}

export function encodeContainerAllocateResponse(r: AllocateResponse['containerResponses'][number]): Buffer {
  return Buffer.concat([
    ...stringMap(1, r.envs ?? {}),
    ...(r.mounts ?? []).map((m) =>
      field(2, Buffer.concat([str(1, m.containerPath), str(2, m.hostPath), m.readOnly ? Buffer.from([0x18, 1]) : Buffer.alloc(0)])),
    ),
    ...(r.devices ?? []).map((d) => field(3, Buffer.concat([str(1, d.containerPath), str(2, d.hostPath), str(3, d.permissions)]))),
    ...stringMap(4, r.annotations ?? {}),
    ...(r.cdiDevices ?? []).map((c) => field(5, str(1, c.name))),
  ]);
}

/** A pod as the stand-in's Allocate caller names it: its UID and the containers of the inner ID lists. */
export interface PodRef {
  podUID: string;
  /** One name per container request of the Allocate; default `compute` (virt-launcher's container). */
  containers?: string[];
}

/** The assignments of one kubelet and its checkpoint file. */
export class KubeletCheckpoint {
  readonly dir: string;
  readonly path: string;
  readonly format: 'v1' | 'v2';
  entries: CheckpointEntry[] = [];
  /** Resource -> healthy device IDs, as last reported by its plugin. */
  registered = new Map<string, string[]>();

  constructor(deviceDir: string, opts: { format?: 'v1' | 'v2' } = {}) {
    this.dir = deviceDir;
    this.path = path.join(deviceDir, CHECKPOINT_FILE);
    this.format = opts.format ?? 'v2';
  }

  /** Records that the pod's container holds `deviceIDs` (replacing its previous devices of that resource). */
  assign(podUID: string, containerName: string, resourceName: string, deviceIDs: string[], allocResp?: Buffer): void {
    this.entries = this.entries.filter(
      (e) => !(e.podUID === podUID && e.containerName === containerName && e.resourceName === resourceName),
    );
    this.entries.push({ podUID, containerName, resourceName, deviceIDs: new Map([[NO_NUMA_NODE, [...deviceIDs]]]), allocResp });
  }

  /** The kubelet forgetting a pod that is gone. */
  removePod(podUID: string): void {
    this.entries = this.entries.filter((e) => e.podUID !== podUID);
  }

  /** What an Allocate answered for `pod`, one inner list per container; then the file is rewritten. */
  recordAllocation(resource: string, ids: string[][], response: AllocateResponse, pod: PodRef, registered: Map<string, string[]>): void {
    ids.forEach((deviceIDs, i) => {
      const name = pod.containers?.[i] ?? (i === 0 ? 'compute' : `container${i}`);
      const answer = response.containerResponses[i];
      this.assign(pod.podUID, name, resource, deviceIDs, answer ? encodeContainerAllocateResponse(answer) : undefined);
    });
    this.registered = new Map(registered);
    this.write();
  }

  render(): string {
    return renderCheckpoint({ entries: this.entries, registered: this.registered }, { format: this.format });
  }

  write(): void {
    writeLikeKubelet(this.dir, CHECKPOINT_FILE, this.render());
  }
}
