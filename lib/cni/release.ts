/**
 * Returning a device's macvtap to the host namespace: DEL's job, GC's, ADD's rollback's and ADD's when it finds a
 * crashed operation's record. One implementation for all of them.
 *
 * With an attachment record (the redo log), the link goes back under its recorded host name with its recorded
 * pre-ADD settings, wherever a crash left it: still in the pod (moved back), already in the host under either
 * name (renamed and restored), or gone (its namespace died with it). The link is identified by what the kernel
 * says, never by the record alone: the recorded ifindex, kind macvtap, the recorded lower device and one of the
 * two recorded names. Only once the restore is done may the caller drop the record.
 *
 * Without a record (kubevirt's CNI attached it), the link named CNI_IFNAME in CNI_NETNS goes back as the device
 * plugin's name for the device, `mvt` + hash, reset to what a new macvtap has (down, promisc off, the lower
 * device's MTU, a fresh random MAC), so the next pod inherits nothing of this one.
 */
import { closeSync, openSync, readSync } from 'node:fs';
import { hostLinkName } from '../naming';
import { formatMac, type Link, type Netns } from '../netlink';
import type { AttachmentRecord } from '../state';
import { faultPoint } from '../util/faults';
import { log } from './log';
import { openIfAlive } from './netns';

export type ReleaseOutcome = 'returned' | 'restored' | 'deleted' | 'gone' | 'left';

/** The recorded link in `ns`, if the kernel there has it as recorded. */
function recordedLink(ns: Netns, rec: AttachmentRecord): Link | undefined {
  const link = ns.getLinkSync(rec.ifindex);
  if (!link || link.kind !== 'macvtap' || link.parentIndex !== rec.lowerIndex) return undefined;
  return link.name === rec.ifname || link.name === rec.hostName ? link : undefined;
}

/**
 * Finishes putting the recorded attachment's link back on the host, looking in each of `podPaths` (the record's
 * namespace and, for DEL, CNI_NETNS) and then in the host. Throws when a kernel step fails (keep the record).
 */
export function finishRelease(host: Netns, rec: AttachmentRecord, verb: string, podPaths: string[] = [rec.netns]): ReleaseOutcome {
  for (const nsPath of [...new Set(podPaths.filter(Boolean))]) {
    const pod = openIfAlive(nsPath);
    if (!pod) continue;
    try {
      const link = recordedLink(pod, rec);
      if (!link) continue;
      if (moveToHost(host, pod, link, rec.hostName) === 'deleted') return 'deleted';
      faultPoint(verb, 'moved');
      restore(host, rec);
      faultPoint(verb, 'restored');
      return 'returned';
    } finally {
      pod.close();
    }
  }
  const inHost = recordedLink(host, rec);
  if (!inHost || newerDevice(inHost, rec)) {
    log.info('the recorded link is gone (its namespace died with it, or it was deleted)', {
      ifindex: rec.ifindex,
      netns: rec.netns,
      ...(inHost && { newer: `${inHost.name} is a newer device at that ifindex: left as it is` }),
    });
    return 'gone';
  }
  restore(host, rec);
  faultPoint(verb, 'restored');
  return 'restored';
}

/**
 * Whether a host link that matches the record (ifindex, kind, lower device, name) is in fact a newer device. Every
 * path that brings the recorded link back to the host leaves it down (moving a link between namespaces closes it)
 * until restore() applies the recorded settings, MAC included, in one request. So a match that is up with another
 * MAC than the recorded one was made since: another CNI deleted the recorded link (kubevirt's DEL does) and a
 * device plugin re-allocated the device, at the same ifindex (ours picks the lowest free one of its range). Its
 * settings are that device's own; applying the stale record's would hand the next pod the previous link's MAC.
 */
function newerDevice(link: Link, rec: AttachmentRecord): boolean {
  return link.flags.up && link.mac !== rec.original.mac;
}

/**
 * Moves `link` from `pod` to the host as `hostName`, keeping its ifindex (its /dev/tap<ifindex> stays valid). If
 * the host already has a link of that name or ifindex (the device was recreated meanwhile), the pod's copy is
 * deleted instead, as kubevirt's DEL always does.
 */
function moveToHost(host: Netns, pod: Netns, link: Link, hostName: string): 'moved' | 'deleted' {
  const byName = host.getLinkSync(hostName);
  if (byName || host.getLinkSync(link.index)) {
    log.warn('the host already has the device; deleting the copy in the pod', { link: link.name, ifindex: link.index, hostName });
    pod.deleteLinkSync(link.index);
    return 'deleted';
  }
  pod.moveLinkSync(link.index, host, { name: hostName, index: link.index });
  return 'moved';
}

/** The recorded link, now in the host: its host name and its settings from before ADD. */
function restore(host: Netns, rec: AttachmentRecord): void {
  const link = recordedLink(host, rec);
  if (!link) throw new Error(`ifindex ${rec.ifindex} is not the recorded macvtap in the host namespace`);
  if (link.name !== rec.hostName) host.setLinkSync(rec.ifindex, { name: rec.hostName, up: false });
  const o = rec.original;
  host.setLinkSync(rec.ifindex, { mac: o.mac, mtu: o.mtu, promisc: o.promisc, up: o.up });
}

/**
 * DEL without an attachment record: the macvtap named `ifname` in `nsPath` returns to the host as the device
 * plugin's name for `deviceID`, reset. Anything else under that name is left alone.
 */
export function releaseUnrecorded(
  host: Netns,
  nsPath: string,
  ifname: string,
  deviceID: string,
  verb: string,
  refuse?: (link: Link) => string | undefined,
): ReleaseOutcome {
  const pod = openIfAlive(nsPath);
  if (!pod) return 'gone';
  try {
    const link = pod.getLinkSync(ifname);
    if (!link || link.kind !== 'macvtap') {
      if (link) log.warn('not a macvtap: leaving it', { link: ifname, kind: link.kind ?? 'none', netns: nsPath });
      return 'gone';
    }
    // The caller's evidence that this link is not the device (its namespace dies with the pod, and the link with it).
    const refusal = refuse?.(link);
    if (refusal) {
      log.warn('not returning the link under the device name', { link: ifname, netns: nsPath, reason: refusal });
      return 'left';
    }
    const hostName = hostLinkName(deviceID);
    if (moveToHost(host, pod, link, hostName) === 'deleted') return 'deleted';
    faultPoint(verb, 'moved');
    const lower = link.parentIndex !== undefined ? host.getLinkSync(link.parentIndex) : null;
    host.setLinkSync(link.index, { mac: randomMac(), promisc: false, up: false, ...(lower && { mtu: lower.mtu }) });
    log.info('returned a device attached without a record, reset', { link: hostName, ifindex: link.index });
    return 'returned';
  } finally {
    pod.close();
  }
}

/**
 * A random locally administered unicast MAC, as the kernel gives a new macvtap. Six bytes of the kernel's
 * random source read directly: node:crypto's randomBytes would load some twenty built-in modules (crypto and
 * streams) into every CNI process, ADD included, for these six bytes.
 */
function randomMac(): string {
  const b = Buffer.alloc(6);
  const fd = openSync('/dev/urandom', 'r');
  try {
    for (let n = 0; n < b.length;) n += readSync(fd, b, n, b.length - n, null);
  } finally {
    closeSync(fd);
  }
  b[0] = (b[0] & 0xfe) | 0x02;
  return formatMac(b);
}
