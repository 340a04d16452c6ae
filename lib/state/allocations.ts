/**
 * Allocation records: what the device plugin answered the kubelet for each device, `allocations/<deviceID>.json`.
 * The CNI rebuilds a device's macvtap from it (same lower device, mode, txqueuelen and ifindex, hence the same
 * /dev/tap<ifindex> the kubelet keeps handing to the pod) after a sandbox was recreated or the node rebooted.
 * Written by the device plugin under the device's lock; read by both.
 */
import { hostLinkName, RESOURCE_PREFIX } from '../naming';
import { RecordStore } from './store';
import { allocationName, deviceIdProblem, parseTempName } from './names';
import { equal, ifname, integer, isoTime, object, oneOf, RecordProblem, string, version } from './schema';

export const ALLOCATION_VERSION = 1;

export interface AllocationRecord {
  version: 1;
  deviceID: string;
  /** `macvtap.network.kubevirt.io/<name>`. */
  resource: string;
  /** Host-side link name: `mvt` + 12 hex digits of xxhash64(deviceID). */
  linkName: string;
  lowerDevice: string;
  mode: AllocationMode;
  /** The ifindex the link was created with; /dev/tap<ifindex> is what the kubelet hands to the pod. */
  ifindex: number;
  txqueuelen: number;
  /** ISO time of the Allocate. */
  allocatedAt: string;
  /**
   * The Allocate request that made it (written by this device plugin; absent in older records): its ID and how
   * many devices it allocated. The request is committed (answered) once all `size` records with its ID are durable;
   * the device plugin's start tells a crashed request's work from answered devices by it.
   */
  request?: AllocationRequest;
}

export interface AllocationRequest {
  /** 16 to 32 lowercase hex digits. */
  id: string;
  size: number;
}

/** The modes the device plugin allocates (kubevirt's: `source` needs per-device MACs and is not offered). */
export const ALLOCATION_MODES = ['bridge', 'vepa', 'private', 'passthru'] as const;
export type AllocationMode = (typeof ALLOCATION_MODES)[number];

/** Checks an allocation record read from `allocations/<name>`; throws RecordProblem. */
export function parseAllocation(value: unknown, fileName?: string): AllocationRecord {
  const rec = object(value, 'the record');
  version(rec, ALLOCATION_VERSION);
  const deviceID = string(rec, 'deviceID', 256);
  const problem = deviceIdProblem(deviceID);
  if (problem) throw new RecordProblem(`deviceID ${problem}`);
  if (fileName !== undefined && fileName !== allocationName(deviceID))
    throw new RecordProblem(`deviceID ${JSON.stringify(deviceID)} does not match the file name`);
  const resource = string(rec, 'resource', 300);
  if (!resource.startsWith(`${RESOURCE_PREFIX}/`))
    throw new RecordProblem(`resource ${JSON.stringify(resource)} is not a ${RESOURCE_PREFIX} resource`);
  const linkName = ifname(rec, 'linkName');
  if (linkName !== hostLinkName(deviceID))
    throw new RecordProblem(`linkName ${JSON.stringify(linkName)} is not the device's name ${hostLinkName(deviceID)}`);
  const out: AllocationRecord = {
    version: 1,
    deviceID,
    resource,
    linkName,
    lowerDevice: ifname(rec, 'lowerDevice'),
    mode: oneOf(rec, 'mode', ALLOCATION_MODES),
    ifindex: integer(rec, 'ifindex', 1, 0x7fffffff),
    txqueuelen: integer(rec, 'txqueuelen', 0, 0xffffffff),
    allocatedAt: isoTime(rec, 'allocatedAt'),
  };
  if (rec.request !== undefined) out.request = parseRequest(rec.request);
  equal(rec, 'version', 1);
  return out;
}

function parseRequest(value: unknown): AllocationRequest {
  const req = object(value, 'request');
  const id = string(req, 'id', 32);
  if (!/^[0-9a-f]{16,32}$/.test(id)) throw new RecordProblem(`request id ${JSON.stringify(id)} is not 16 to 32 hex digits`);
  return { id, size: integer(req, 'size', 1, 1_000_000) };
}

export class AllocationStore extends RecordStore<AllocationRecord> {
  protected parse(value: unknown, name: string): AllocationRecord {
    return parseAllocation(value, name);
  }

  /** The record of `deviceID`, or undefined (none, or one that cannot be trusted: reported). */
  read(deviceID: string): AllocationRecord | undefined {
    return this.readRecord(allocationName(deviceID));
  }

  /** Writes (or replaces) the record durably. The caller holds the device's lock. */
  write(record: AllocationRecord): void {
    this.writeRecord(allocationName(record.deviceID), parseAllocation(record));
  }

  /** write() with the fsyncs and the rename on the thread pool (the daemon's event loop keeps running). */
  async writeAsync(record: AllocationRecord): Promise<void> {
    await this.beginWriteRecord(allocationName(record.deviceID), parseAllocation(record));
  }

  remove(deviceID: string): boolean {
    return this.removeRecord(allocationName(deviceID));
  }

  /** remove() with the directory's fsync on the thread pool. */
  async removeAsync(deviceID: string): Promise<boolean> {
    return await this.removeRecordAsync(allocationName(deviceID));
  }

  /**
   * Removes every temp file, whatever its writer's pid: for the device plugin's start only, when none of its writes
   * can be in flight (it is the only writer of allocations; in a container it may well get its dead predecessor's
   * pid). Returns how many were removed.
   */
  sweepTemp(): number {
    const dir = this.dir(false);
    if (!dir) return 0;
    let removed = 0;
    for (const name of dir.list()) {
      if (!parseTempName(name) || !dir.discard(name)) continue;
      removed++;
      this.log.info('removed the temp file of a record write that never completed', { path: this.pathOf(name) });
    }
    return removed;
  }

  /** Device IDs that have a record file (readable or not). */
  list(): string[] {
    return this.names()
      .filter((n) => n.endsWith('.json'))
      .map((n) => n.slice(0, -'.json'.length))
      .filter((id) => !deviceIdProblem(id));
  }
}
