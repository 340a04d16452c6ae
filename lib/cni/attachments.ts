/**
 * Attachment records: which container a device is attached to, kept by ADD and dropped by DEL and GC. One
 * device serves one attachment at a time, so records are keyed by deviceID:
 * `<stateDir>/attachments/<deviceID>.json` (deviceID URI-encoded), written atomically (temp file + rename).
 *
 * A record lets DEL without CNI_NETNS, and GC, find the interface and return it to the host under its host
 * name with its pre-ADD settings; and lets ADD tell a device still in use by another sandbox from one whose
 * sandbox is gone.
 */
import { mkdirSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CniError, ErrorCode } from './errors';

export interface LinkSettings {
  mac: string;
  mtu: number;
  promisc: boolean;
  up: boolean;
}

export interface AttachmentRecord {
  version: 1;
  deviceID: string;
  /** The network's `name` (the spec's attachment key is network, container ID, ifname). */
  network: string;
  containerID: string;
  ifname: string;
  /** CNI_NETNS of the ADD. */
  netns: string;
  /** The link's name in the host namespace, which it gets back on DEL. */
  hostName: string;
  ifindex: number;
  /** The link's settings in the host namespace before ADD. */
  original: LinkSettings;
  /** Its character device. */
  tap: { major: number; minor: number };
  attachedAt: string;
}

export class AttachmentStore {
  readonly dir: string;

  constructor(stateDir: string) {
    this.dir = join(stateDir, 'attachments');
  }

  private file(deviceID: string): string {
    return join(this.dir, `${encodeURIComponent(deviceID)}.json`);
  }

  read(deviceID: string): AttachmentRecord | undefined {
    let text: string;
    try {
      text = readFileSync(this.file(deviceID), 'utf8');
    } catch {
      return undefined;
    }
    return parse(text, deviceID);
  }

  write(record: AttachmentRecord): void {
    const target = this.file(record.deviceID);
    const temp = `${target}.${process.pid}.tmp`;
    const data = `${JSON.stringify(record)}\n`;
    try {
      try {
        writeFileSync(temp, data, { mode: 0o644 });
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
        mkdirSync(this.dir, { recursive: true, mode: 0o755 });
        writeFileSync(temp, data, { mode: 0o644 });
      }
      renameSync(temp, target);
    } catch (err) {
      rmSync(temp, { force: true });
      throw new CniError(ErrorCode.IoFailure, `cannot write attachment record ${target}`, (err as Error).message);
    }
  }

  remove(deviceID: string): void {
    rmSync(this.file(deviceID), { force: true });
  }

  /** Every readable record. */
  list(): AttachmentRecord[] {
    let names: string[];
    try {
      names = readdirSync(this.dir);
    } catch {
      return [];
    }
    const out: AttachmentRecord[] = [];
    for (const name of names) {
      if (!name.endsWith('.json')) continue;
      let deviceID: string;
      try {
        deviceID = decodeURIComponent(name.slice(0, -'.json'.length));
      } catch {
        continue;
      }
      const rec = this.read(deviceID);
      if (rec) out.push(rec);
    }
    return out;
  }

  /** The record of an attachment (network, container ID, ifname), searched when the deviceID is unknown. */
  find(network: string, containerID: string, ifname: string): AttachmentRecord | undefined {
    return this.list().find((r) => r.network === network && r.containerID === containerID && r.ifname === ifname);
  }
}

/** True if `rec` is the record of the attachment (network, container ID, ifname). */
export function isAttachment(rec: AttachmentRecord | undefined, network: string, containerID: string, ifname: string): boolean {
  return rec !== undefined && rec.network === network && rec.containerID === containerID && rec.ifname === ifname;
}

function parse(text: string, deviceID: string): AttachmentRecord | undefined {
  try {
    const rec = JSON.parse(text) as AttachmentRecord;
    return rec && rec.version === 1 && rec.deviceID === deviceID ? rec : undefined;
  } catch {
    return undefined;
  }
}
