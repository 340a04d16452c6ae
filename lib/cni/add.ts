/**
 * ADD: give the container the device's macvtap.
 *
 * Order: (all input validated by the caller) → lock the device → check CNI_IFNAME is free in the container
 * namespace → resolve (or recreate) the host link, validating MAC/MTU against its lower device → check its
 * ifindex is free in the container namespace → move it in, renamed to CNI_IFNAME and keeping its ifindex (one
 * request) → MAC, MTU, promisc and up (one request) → read its char device where it now is (a namespace change
 * re-registers it, possibly with another minor) → /dev/tap<ifindex>: exactly that device, owner/group →
 * re-read → record the attachment → result.
 *
 * Invariant: if any step after the checks fails, the link is put back in the host namespace under its original
 * name with its original MAC, MTU, promisc and up state (and the tap node's original owner and mode), and the
 * container namespace holds nothing of it, so the runtime's retry can succeed. (The kernel applies a rename
 * on arrival after the move itself, so even a failed move may leave the link in the container under its host
 * name: rollback looks for it there by ifindex.)
 */
import { performance } from 'node:perf_hooks';
import type { Link } from '../netlink/link';
import { Netns, TapDevice } from '../netlink/netns';
import { charDeviceOf, ensureTapNode } from '../netlink/tap';
import { AttachmentRecord, AttachmentStore, isAttachment, LinkSettings } from './attachments';
import type { Environment, NetConf } from './config';
import { nodeState, NodeState, openPodNetns, resolveHostDevice, settingsOf, stillAttached } from './device';
import { CniError, describeError, ErrorCode } from './errors';
import { DeviceLock } from './lock';
import { log } from './log';
import { addResult } from './version';

/** Milliseconds spent per phase, logged at debug level. */
class Phases {
  private last = performance.now();
  private readonly parts: string[] = [];
  mark(name: string): void {
    const now = performance.now();
    this.parts.push(`${name} ${(now - this.last).toFixed(2)}`);
    this.last = now;
  }
  toString(): string {
    return this.parts.join(', ');
  }
}

export async function cmdAdd(env: Environment, conf: NetConf): Promise<unknown> {
  const deviceID = conf.deviceID as string;
  const phases = new Phases();
  const pod = openPodNetns(env.netns);
  const host = Netns.current();
  let lock: DeviceLock | undefined;
  try {
    lock = DeviceLock.acquire(conf.stateDir, deviceID);
    phases.mark('open+lock');
    const clash = pod.getLinkSync(env.ifname);
    if (clash) {
      throw new CniError(
        ErrorCode.InterfaceExists,
        `interface ${env.ifname} already exists in ${env.netns}`,
        `existing link: ifindex ${clash.index}, kind ${clash.kind ?? 'none'}; it was left alone`,
      );
    }
    const attachments = new AttachmentStore(conf.stateDir);
    const device = await resolveHostDevice(host, {
      stateDir: conf.stateDir,
      deviceID,
      mtu: conf.mtu,
      mac: conf.mac,
      beforeRecreate: () => {
        const att = attachments.read(deviceID);
        if (att && !isAttachment(att, conf.name, env.containerId, env.ifname) && stillAttached(att)) {
          throw new CniError(
            ErrorCode.TryAgainLater,
            `device ${JSON.stringify(deviceID)} is still attached to container ${att.containerID}`,
            `its macvtap is ${att.ifname} (ifindex ${att.ifindex}) in ${att.netns}; DEL that attachment first`,
          );
        }
      },
    });
    const link = device.link;
    phases.mark('resolve');
    const taken = pod.getLinkSync(link.index);
    if (taken) {
      throw new CniError(
        ErrorCode.InterfaceExists,
        `ifindex ${link.index} of ${link.name} is already taken in ${env.netns} (by ${taken.name})`,
        `the container must see the macvtap under its own ifindex, which names its /dev/tap${link.index}`,
      );
    }
    phases.mark('checks');
    const attached = attach(host, pod, link, env, conf, phases);
    const record: AttachmentRecord = {
      version: 1,
      deviceID,
      network: conf.name,
      containerID: env.containerId,
      ifname: env.ifname,
      netns: env.netns,
      hostName: link.name,
      ifindex: link.index,
      original: settingsOf(link),
      tap: { major: attached.tap.major, minor: attached.tap.minor },
      attachedAt: new Date().toISOString(),
    };
    try {
      attachments.write(record);
    } catch (err) {
      undo(host, pod, link, env.ifname, settingsOf(link), attached.node, 'record the attachment', err);
    }
    phases.mark('record');
    if (log.enabled('debug')) log.debug(`ADD phases (ms): ${phases}`);
    log.info(
      `attached ${link.name} (ifindex ${link.index}${device.recreated ? ', recreated' : ''}) as ${env.ifname} in ${env.netns}, mac ${attached.link.mac}, mtu ${attached.link.mtu}`,
    );
    return addResult(
      conf.cniVersion,
      { name: env.ifname, mac: attached.link.mac, mtu: attached.link.mtu, sandbox: env.netns },
      conf.prevResult,
    );
  } finally {
    lock?.release();
    host.close();
    pod.close();
  }
}

/** The kernel steps of ADD; on any failure, undoes them and throws. */
function attach(
  host: Netns,
  pod: Netns,
  link: Link,
  env: Environment,
  conf: NetConf,
  phases: Phases,
): { link: Link; tap: TapDevice; node: NodeState | undefined } {
  const original = settingsOf(link);
  const node = nodeState(`/dev/tap${link.index}`);
  let step = 'move the link into the container namespace';
  try {
    host.moveLinkSync(link.index, pod, { name: env.ifname, index: link.index });
    phases.mark('move');
    step = 'set MAC, MTU, promisc and up';
    pod.setLinkSync(link.index, { mac: conf.mac, mtu: conf.mtu, promisc: conf.promiscMode, up: true });
    phases.mark('set');
    step = 'read the configured link';
    const done = pod.getLinkSync(link.index);
    if (!done || done.name !== env.ifname)
      throw new Error(`link ${env.ifname} (ifindex ${link.index}) is not in the container namespace after ADD`);
    // The kernel re-registers the char device on a namespace change, possibly with another minor (and
    // devtmpfs recreates the node, owned by root): read the device where the link is now, then fix the node.
    step = 'read its char device';
    const tap = pod.tapDeviceSync(done);
    phases.mark('read tap');
    step = `make ${tap.path} this macvtap's device`;
    ensureTapNode(tap, { uid: conf.owner, gid: conf.group });
    phases.mark('tap node');
    return { link: done, tap, node };
  } catch (err) {
    return undo(host, pod, link, env.ifname, original, node, step, err);
  }
}

/** Puts everything back and throws the step's error (code 104), or code 105 if putting back failed too. */
function undo(
  host: Netns,
  pod: Netns,
  link: Link,
  ifname: string,
  original: LinkSettings,
  node: NodeState | undefined,
  step: string,
  err: unknown,
): never {
  const cause = describeError(err);
  log.warn(`ADD failed to ${step}: ${cause}; rolling back`);
  const problems = rollback(host, pod, link, ifname, original, node);
  if (problems.length) {
    for (const p of problems) log.error(`rollback: ${p}`);
    throw new CniError(
      ErrorCode.RollbackFailed,
      `ADD failed to ${step}, and rolling back failed`,
      `${cause}; rollback: ${problems.join('; ')}`,
    );
  }
  throw new CniError(
    ErrorCode.AddFailed,
    `ADD failed to ${step}: ${cause}`,
    `${link.name} is back in the host namespace with its original settings; nothing was left in the container namespace`,
  );
}

/** Returns the link to the host namespace as it was before ADD. Returns what could not be restored. */
function rollback(host: Netns, pod: Netns, link: Link, ifname: string, original: LinkSettings, node: NodeState | undefined): string[] {
  const problems: string[] = [];
  const attempt = (what: string, fn: () => void): void => {
    try {
      fn();
    } catch (err) {
      problems.push(`${what}: ${describeError(err)}`);
    }
  };
  // The move keeps the ifindex (it is requested explicitly), so the index finds the link wherever it is; the
  // kernel renames after moving, so in the container it is named either CNI_IFNAME or still its host name.
  attempt('return the link from the container namespace', () => {
    const inPod = pod.getLinkSync(link.index);
    if (inPod && inPod.kind === 'macvtap' && (inPod.name === ifname || inPod.name === link.name)) {
      pod.moveLinkSync(link.index, host, { name: link.name, index: link.index });
    }
  });
  attempt('restore the link in the host namespace', () => {
    const inHost = host.getLinkSync(link.index);
    if (!inHost) throw new Error(`ifindex ${link.index} is in neither namespace`);
    if (inHost.name !== link.name) host.setLinkSync(link.index, { name: link.name, up: false });
    host.setLinkSync(link.index, { mac: original.mac, mtu: original.mtu, promisc: original.promisc, up: original.up });
  });
  if (node) {
    // There was a char device node before ADD: make it the host link's device again, with its old owner and mode.
    attempt('restore the tap node', () => {
      const dev = host.tapDeviceSync(link.index);
      const now = nodeState(dev.path);
      const current = charDeviceOf(dev.path);
      const same = now !== undefined && current?.major === dev.major && current?.minor === dev.minor;
      if (!same || now.uid !== node.uid || now.gid !== node.gid || now.mode !== node.mode) {
        ensureTapNode(dev, { uid: node.uid, gid: node.gid, mode: node.mode });
      }
    });
  }
  return problems;
}
