/**
 * ADD: give the container the device's macvtap. Read top to bottom: find the device, check it, record it, move
 * it, configure it, make its tap node, and answer.
 *
 * Invariant: a failed ADD changes nothing. Every step that changes something registers its undo as soon as it
 * succeeded; on failure they run backwards, so the link is back in the host namespace under its name with its
 * MAC, MTU, promisc and up state, its tap node has its old owner and mode, the record is gone, and the runtime's
 * retry can succeed. A process killed anywhere leaves the attachment record (written before the move) for DEL,
 * or the next ADD of the device, to finish the job.
 */
import { Netns } from '../netlink';
import type { AttachmentRecord } from '../state';
import { faultPoint } from '../util/faults';
import type { Environment, NetConf } from './config';
import { CniError, describeError, ErrorCode } from './errors';
import { settleHolders } from './holders';
import { findHostDevice } from './host-device';
import { log } from './log';
import { openPodNetns } from './netns';
import { checkOwnership } from './ownership';
import { finishRelease } from './release';
import { Rollback } from './rollback';
import { Scope } from './scope';
import { lockDevice, openState, stateFailure } from './state';
import { makeTapNode, restoreTapNode, tapNodeState } from './tap-node';
import { addResult } from './version';

/**
 * Milliseconds spent per phase, logged at debug level. process.hrtime rather than perf_hooks' performance: the
 * latter loads a dozen built-in modules into every ADD for this log line.
 */
class Phases {
  private last = process.hrtime.bigint();
  private readonly parts: string[] = [];
  mark(name: string): void {
    const now = process.hrtime.bigint();
    this.parts.push(`${name} ${(Number(now - this.last) / 1e6).toFixed(2)}`);
    this.last = now;
  }
  toString(): string {
    return this.parts.join(', ');
  }
}

export async function cmdAdd(env: Environment, conf: NetConf): Promise<unknown> {
  // Every input was validated (plugin.ts: readEnvironment, readConfig) before this point; this is the place for
  // further checks that must precede any change (none of the steps below changes anything before `record`).
  const deviceID = conf.deviceID as string;
  const phases = new Phases();
  // The kubelet's word on whose device this is, before the state directory or any namespace is even opened.
  const ownership = checkOwnership(env, deviceID, conf.host);
  phases.mark('ownership');
  const key = { deviceID, containerID: env.containerId, ifname: env.ifname };
  const scope = new Scope();
  const rollback = new Rollback();
  try {
    const pod = scope.own(openPodNetns(env.netns));
    const state = scope.own(openState(conf.stateDir));
    const host = scope.own(Netns.current());
    scope.own(lockDevice(state, deviceID, 'ADD', env, conf.lockTimeoutMs));
    try {
      phases.mark('open+lock');
      faultPoint('ADD', 'locked');

      // Find the device: what its records say (an interrupted ADD or DEL of it is finished first, so a retry
      // starts from the host link as it really was), then the host link.
      settleHolders(state, host, key);
      const clash = pod.getLinkSync(env.ifname);
      if (clash) {
        throw new CniError(
          ErrorCode.InterfaceExists,
          `interface ${env.ifname} already exists in ${env.netns}`,
          `existing link: ifindex ${clash.index}, kind ${clash.kind ?? 'none'}; it was left alone`,
        );
      }
      const device = findHostDevice(host, state, { deviceID, mtu: conf.mtu, mac: conf.mac });
      const link = device.link;
      phases.mark('resolve');

      // Check it fits: its ifindex names its /dev/tap<ifindex>, so the pod must have that index free.
      const taken = pod.getLinkSync(link.index);
      if (taken) {
        throw new CniError(
          ErrorCode.InterfaceExists,
          `ifindex ${link.index} of ${link.name} is already taken in ${env.netns} (by ${taken.name})`,
          `the container must see the macvtap under its own ifindex, which names its /dev/tap${link.index}`,
        );
      }
      phases.mark('checks');

      // Record it first (DEL's redo log); the fsyncs run on the thread pool while the kernel moves the link.
      rollback.begin('record the attachment');
      const record: AttachmentRecord = {
        version: 2,
        ...key,
        network: conf.name,
        netns: env.netns,
        hostName: link.name,
        ifindex: link.index,
        lowerIndex: device.lower.index,
        original: { mac: link.mac, mtu: link.mtu, promisc: link.flags.promisc, up: link.flags.up },
        ...podOf(env),
        attachedAt: new Date().toISOString(),
      };
      const durable = state.attachments.beginWrite(record);
      durable.catch(() => undefined); // awaited below, or by the rollback
      rollback.onFailure('drop the attachment record', async () => {
        await durable.catch(() => undefined);
        state.attachments.remove(record);
      });
      faultPoint('ADD', 'recorded');

      const before = tapNodeState(link.index);
      if (before) rollback.onFailure('restore the tap node', () => restoreTapNode(host, link.index, before));
      // Move it in, renamed to CNI_IFNAME, keeping its ifindex, and configure it: one RTM_SETLINK (the kernel moves
      // first and applies the rest in the pod; test/netlink/batch.test.ts). A refusal half-way is undone by
      // moveLinkSync itself; the rollback then finds the link in the host and restores it.
      rollback.begin('move the link into the container namespace and set MAC, MTU, promisc and up');
      rollback.onFailure('return the link to the host', () => {
        finishRelease(host, record, 'rollback');
      });
      const settings = { mac: conf.mac, mtu: conf.mtu, promisc: conf.promiscMode, up: true };
      host.moveLinkSync(link, pod, { name: env.ifname, index: link.index, ...settings });
      phases.mark('move+set');
      faultPoint('ADD', 'moved');
      rollback.begin('read the configured link');
      const done = pod.getLinkSync(link.index);
      if (!done || done.name !== env.ifname)
        throw new Error(`link ${env.ifname} (ifindex ${link.index}) is not in the container namespace`);
      faultPoint('ADD', 'configured');

      // Its tap node: the device where the link is now, with the configured owner.
      rollback.begin(`make /dev/tap${link.index} this macvtap's device`);
      makeTapNode(pod, done, { uid: conf.owner, gid: conf.group });
      phases.mark('tap node');

      rollback.begin('make the attachment record durable');
      await durable;
      phases.mark('record');
      faultPoint('ADD', 'committed');
      rollback.commit();

      if (log.enabled('debug')) log.debug(`ADD phases (ms): ${phases.toString()}`);
      log.info('attached', { link: link.name, ifindex: link.index, recreated: device.recreated, mac: done.mac, mtu: done.mtu, ownership });
      return addResult(conf.cniVersion, { name: env.ifname, mac: done.mac, mtu: done.mtu, sandbox: env.netns }, conf.prevResult);
    } catch (err) {
      if (rollback.empty) throw err;
      return await undo(rollback, err);
    }
  } finally {
    scope.close();
  }
}

/** The pod the runtime named in CNI_ARGS, for the record (operators, GC). */
function podOf(env: Environment): Pick<AttachmentRecord, 'pod'> {
  const v = env.args.values;
  const namespace = v.get('K8S_POD_NAMESPACE');
  const name = v.get('K8S_POD_NAME');
  const uid = v.get('K8S_POD_UID');
  return namespace !== undefined && name !== undefined && uid !== undefined ? { pod: { namespace, name, uid } } : {};
}

/** Runs the rollback and throws: the step's error (code 104, or 5 for the state directory), or 105. */
async function undo(rollback: Rollback, err: unknown): Promise<never> {
  const step = rollback.step;
  const cause = describeError(err);
  log.warn('ADD failed; rolling back', { step, err: cause });
  const problems = await rollback.run();
  if (problems.length) {
    throw new CniError(
      ErrorCode.RollbackFailed,
      `ADD failed to ${step}, and rolling back failed`,
      `${cause}; rollback: ${problems.join('; ')}`,
    );
  }
  const restored = 'the link is back in the host namespace with its original settings; nothing was left in the container namespace';
  const io = stateFailure(err);
  if (io && io.code === ErrorCode.IoFailure)
    throw new CniError(io.code, `ADD failed to ${step}: ${io.message}`, `${io.details}; ${restored}`);
  throw new CniError(ErrorCode.AddFailed, `ADD failed to ${step}: ${cause}`, restored);
}
