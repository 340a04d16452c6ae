/**
 * Allocation records: what the device plugin answered the kubelet for each device, kept on the host so the
 * CNI plugin can rebuild a device's macvtap exactly (same lower device, mode and ifindex, hence the same
 * /dev/tap<ifindex> the kubelet keeps handing to the pod) after a sandbox was recreated or the node rebooted.
 *
 * One JSON file per device ID in `<stateDir>/allocations/`, written atomically (temp file + rename), so a
 * reader sees either the old or the new record, never a torn one.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';

/** Default host state directory (a hostPath mount in the DaemonSet). */
export const DEFAULT_STATE_DIR = '/var/lib/macvtap-cni';

export interface AllocationRecord {
  /** Format version of this record. */
  version: 1;
  deviceID: string;
  /** `macvtap.network.kubevirt.io/<name>`. */
  resource: string;
  /** Host-side link name (`mvt...`). */
  linkName: string;
  lowerDevice: string;
  mode: 'bridge' | 'vepa' | 'private' | 'passthru';
  /** The ifindex the link was created with; /dev/tap<ifindex> is what the kubelet hands to the pod. */
  ifindex: number;
  txqueuelen: number;
  /** ISO time of the Allocate. */
  allocatedAt: string;
}

const DEVICE_ID_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$/;

export class AllocationStore {
  readonly dir: string;

  constructor(stateDir: string = DEFAULT_STATE_DIR) {
    this.dir = path.join(stateDir, 'allocations');
  }

  private file(deviceID: string): string {
    if (!DEVICE_ID_RE.test(deviceID)) throw new RangeError(`device ID ${JSON.stringify(deviceID)} cannot name a record file`);
    return path.join(this.dir, `${deviceID}.json`);
  }

  /** Writes (or replaces) the record of `record.deviceID`. */
  write(record: AllocationRecord): void {
    fs.mkdirSync(this.dir, { recursive: true, mode: 0o755 });
    const target = this.file(record.deviceID);
    const temp = `${target}.${process.pid}.tmp`;
    fs.writeFileSync(temp, `${JSON.stringify(record)}\n`, { mode: 0o644 });
    fs.renameSync(temp, target);
  }

  /** The record of `deviceID`, or undefined if there is none (or it is unreadable). */
  read(deviceID: string): AllocationRecord | undefined {
    let text: string;
    try {
      text = fs.readFileSync(this.file(deviceID), 'utf8');
    } catch {
      return undefined;
    }
    try {
      const rec = JSON.parse(text) as AllocationRecord;
      return rec && rec.version === 1 && rec.deviceID === deviceID ? rec : undefined;
    } catch {
      return undefined;
    }
  }

  remove(deviceID: string): void {
    fs.rmSync(this.file(deviceID), { force: true });
  }

  /** Device IDs that have a record. */
  list(): string[] {
    try {
      return fs
        .readdirSync(this.dir)
        .filter((f) => f.endsWith('.json'))
        .map((f) => f.slice(0, -'.json'.length));
    } catch {
      return [];
    }
  }
}
