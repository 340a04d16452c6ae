/**
 * Attachment records: which container holds which device, written by the CNI's ADD before it moves the link and
 * dropped by DEL or GC only after the link is back on the host as it was. One file per attachment,
 * `attachments/<deviceID>+<containerID>+<ifname>.json`, so two containers (or a container and a later sandbox of
 * the same pod) never overwrite each other's record.
 *
 * The record is DEL's redo log: it holds everything needed to put the link back (its host name and ifindex, its
 * lower device, its settings before ADD), so a DEL retried after any crash finishes the restore.
 *
 * A writer killed between its temp file and the rename leaves a complete record under the temp name. All writes
 * of a device's records happen under the device's lock, so whoever holds that lock next knows no writer is at
 * work: recover() turns such a temp file into the record (or drops it if it is not a whole one).
 */
import { hostLinkName } from '../naming';
import { RecordStore } from './store';
import { attachmentName, AttachmentKey, containerIdProblem, deviceIdProblem, deviceOfAttachmentName, parseTempName } from './names';
import { boolean, Fields, ifname, integer, isoTime, mac, object, RecordProblem, string, version } from './schema';

export const ATTACHMENT_VERSION = 2;

/** A link's settings in the host namespace before ADD changed them. */
export interface LinkSettings {
  /** Lower-case MAC. */
  mac: string;
  mtu: number;
  promisc: boolean;
  up: boolean;
}

/** The pod the runtime said the attachment is for (CNI_ARGS K8S_POD_*), when it said. */
export interface PodRef {
  namespace: string;
  name: string;
  uid: string;
}

export interface AttachmentRecord extends AttachmentKey {
  version: 2;
  /** The network's `name` (the spec's attachment key is network, container ID, ifname). */
  network: string;
  /** CNI_NETNS of the ADD. */
  netns: string;
  /** The link's name in the host namespace, which it gets back on DEL. */
  hostName: string;
  /** Its ifindex (kept across moves: it names /dev/tap<ifindex>). */
  ifindex: number;
  /** ifindex of its lower device in the host namespace. */
  lowerIndex: number;
  original: LinkSettings;
  pod?: PodRef;
  attachedAt: string;
}

function settings(value: unknown): LinkSettings {
  const o = object(value, 'original');
  return { mac: mac(o, 'mac'), mtu: integer(o, 'mtu', 68, 65535), promisc: boolean(o, 'promisc'), up: boolean(o, 'up') };
}

function pod(value: unknown): PodRef | undefined {
  if (value === undefined) return undefined;
  const o: Fields = object(value, 'pod');
  return { namespace: string(o, 'namespace', 253), name: string(o, 'name', 253), uid: string(o, 'uid', 64) };
}

/** Checks an attachment record (from file `fileName` when given); throws RecordProblem. */
export function parseAttachment(value: unknown, fileName?: string): AttachmentRecord {
  const rec = object(value, 'the record');
  version(rec, ATTACHMENT_VERSION);
  const key: AttachmentKey = {
    deviceID: string(rec, 'deviceID', 256),
    containerID: string(rec, 'containerID', 256),
    ifname: ifname(rec, 'ifname'),
  };
  const problem = deviceIdProblem(key.deviceID) ?? containerIdProblem(key.containerID);
  if (problem) throw new RecordProblem(`${deviceIdProblem(key.deviceID) ? 'deviceID' : 'containerID'} ${problem}`);
  if (fileName !== undefined && fileName !== attachmentName(key))
    throw new RecordProblem('its device, container and interface do not match the file name');
  const netns = string(rec, 'netns');
  if (!netns.startsWith('/') || netns.includes('\0')) throw new RecordProblem(`netns ${JSON.stringify(netns)} is not an absolute path`);
  const hostName = ifname(rec, 'hostName');
  // A device's host link is named after the device: the deviceID itself (an operator's macvtap) or the device
  // plugin's hash name. Any other name would let a record rename links at will.
  if (hostName !== key.deviceID && hostName !== hostLinkName(key.deviceID))
    throw new RecordProblem(`hostName ${JSON.stringify(hostName)} is neither the deviceID nor a device plugin name`);
  return {
    version: 2,
    ...key,
    network: string(rec, 'network', 253),
    netns,
    hostName,
    ifindex: integer(rec, 'ifindex', 1, 0x7fffffff),
    lowerIndex: integer(rec, 'lowerIndex', 1, 0x7fffffff),
    original: settings(rec.original),
    ...(rec.pod !== undefined && { pod: pod(rec.pod) }),
    attachedAt: isoTime(rec, 'attachedAt'),
  };
}

export class AttachmentStore extends RecordStore<AttachmentRecord> {
  protected parse(value: unknown, name: string): AttachmentRecord {
    return parseAttachment(value, name);
  }

  read(key: AttachmentKey): AttachmentRecord | undefined {
    return this.readRecord(attachmentName(key));
  }

  /** Writes the record durably. The caller holds the device's lock. */
  write(record: AttachmentRecord): void {
    this.writeRecord(attachmentName(record), parseAttachment(record));
  }

  /**
   * write() with fsync → rename → fsync dir on the thread pool. The temp file (the whole record) is written before
   * this returns, and its failures throw here; the promise settles once the record is durable. ADD starts it before
   * moving the link and awaits it after, so the fsyncs overlap the kernel's namespace move instead of adding to it.
   */
  beginWrite(record: AttachmentRecord): Promise<void> {
    return this.beginWriteRecord(attachmentName(record), parseAttachment(record));
  }

  remove(key: AttachmentKey): boolean {
    return this.removeRecord(attachmentName(key));
  }

  /** Every trustworthy record (the others are reported). */
  list(): AttachmentRecord[] {
    const dir = this.dir(false);
    if (!dir) return [];
    const out: AttachmentRecord[] = [];
    for (const name of dir.list()) {
      if (!name.endsWith('.json')) continue;
      const rec = this.readRecord(name, dir);
      if (rec) out.push(rec);
    }
    return out;
  }

  /** The records of one device (normally none or one). */
  ofDevice(deviceID: string): AttachmentRecord[] {
    const dir = this.dir(false);
    if (!dir) return [];
    const prefix = `${deviceID}+`;
    const out: AttachmentRecord[] = [];
    for (const name of dir.list()) {
      if (!name.startsWith(prefix) || !name.endsWith('.json')) continue;
      const rec = this.readRecord(name, dir);
      if (rec) out.push(rec);
    }
    return out;
  }

  /** Devices that have temp files (for GC, which recovers each under its lock). */
  devicesWithTemp(): string[] {
    const ids = new Set<string>();
    for (const name of this.names()) {
      if (!parseTempName(name)) continue;
      const id = deviceOfAttachmentName(name);
      if (id) ids.add(id);
    }
    return [...ids];
  }

  /**
   * Finishes the writes of dead writers of `deviceID`'s records: a complete temp file whose record is missing
   * becomes the record; any other temp file is dropped. The caller holds the device's lock (so no writer is at
   * work). Returns the records adopted.
   */
  recover(deviceID: string): AttachmentRecord[] {
    const dir = this.dir(false);
    if (!dir) return [];
    const adopted: AttachmentRecord[] = [];
    const prefix = `${deviceID}+`;
    const names = dir.list();
    for (const name of names) {
      const temp = parseTempName(name);
      if (!temp || !name.startsWith(prefix)) continue;
      const data = (() => {
        try {
          return dir.read(name);
        } catch {
          return undefined;
        }
      })();
      const rec = data && !names.includes(temp.target) ? this.parseData(temp.target, data) : undefined;
      if (rec) {
        dir.adopt(name, temp.target);
        names.push(temp.target);
        adopted.push(rec);
        this.log.warn('adopted the record of a writer that died before renaming it', { path: this.pathOf(temp.target) });
      } else if (dir.discard(name)) {
        this.log.info('removed the temp file of a writer that died', { path: this.pathOf(name) });
      }
    }
    return adopted;
  }
}
