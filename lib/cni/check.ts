/**
 * CHECK (0.4.0+): the interface is in CNI_NETNS, is a macvtap, is up, and its MAC, MTU and promisc match the
 * configuration and prevResult; its /dev/tap<ifindex> is its char device with the configured owner and group;
 * and, when the device plugin recorded the device, it still has the allocated ifindex. Any drift is code 107,
 * every mismatch listed in `details`.
 */
import { statSync } from 'node:fs';
import { charDeviceOf } from '../netlink';
import type { Environment, NetConf } from './config';
import { CniError, describeError, ErrorCode } from './errors';
import { log } from './log';
import type { JsonObject } from './version';
import { openPodNetns } from './netns';
import { Scope } from './scope';
import { lockDevice, openState } from './state';
import { faultPoint } from '../util/faults';

export function cmdCheck(env: Environment, conf: NetConf): void {
  if (!conf.prevResult)
    throw new CniError(ErrorCode.InvalidConfig, 'CHECK needs prevResult', 'the runtime must pass the ADD result as prevResult');
  const scope = new Scope();
  try {
    const pod = scope.own(openPodNetns(env.netns));
    const state = scope.own(openState(conf.stateDir));
    scope.own(lockDevice(state, conf.deviceID as string, 'CHECK', env, conf.lockTimeoutMs));
    faultPoint('CHECK', 'locked');
    const interfaces: unknown[] = Array.isArray(conf.prevResult.interfaces) ? (conf.prevResult.interfaces as unknown[]) : [];
    const entry = interfaces.find(
      (i): i is JsonObject =>
        typeof i === 'object' &&
        i !== null &&
        (i as JsonObject).name === env.ifname &&
        ((i as JsonObject).sandbox === undefined || (i as JsonObject).sandbox === env.netns),
    );
    if (!entry) throw new CniError(ErrorCode.CheckFailed, `prevResult lists no interface ${env.ifname} in ${env.netns}`);
    const link = pod.getLinkSync(env.ifname);
    if (!link) throw new CniError(ErrorCode.CheckFailed, `interface ${env.ifname} is missing from ${env.netns}`);
    const problems: string[] = [];
    if (link.kind !== 'macvtap') problems.push(`kind is ${link.kind ?? 'none'}, not macvtap`);
    if (!link.flags.up) problems.push('it is down');
    const wantMac = conf.mac ?? (typeof entry.mac === 'string' ? entry.mac.toLowerCase() : undefined);
    if (wantMac && link.mac !== wantMac) problems.push(`mac is ${link.mac}, expected ${wantMac}`);
    if (typeof entry.mac === 'string' && conf.mac && entry.mac.toLowerCase() !== conf.mac)
      problems.push(`prevResult mac ${entry.mac} differs from the configured ${conf.mac}`);
    if (conf.mtu !== undefined && link.mtu !== conf.mtu) problems.push(`mtu is ${link.mtu}, expected ${conf.mtu}`);
    if (typeof entry.mtu === 'number' && link.mtu !== entry.mtu && entry.mtu !== conf.mtu)
      problems.push(`mtu is ${link.mtu}, prevResult says ${entry.mtu}`);
    if (link.flags.promisc !== conf.promiscMode)
      problems.push(`promisc is ${link.flags.promisc ? 'on' : 'off'}, expected ${conf.promiscMode ? 'on' : 'off'}`);
    if (link.kind === 'macvtap') {
      try {
        const tap = pod.tapDeviceSync(link);
        const node = charDeviceOf(tap.path);
        if (!node) problems.push(`${tap.path} is missing or not a character device`);
        else if (node.major !== tap.major || node.minor !== tap.minor)
          problems.push(`${tap.path} is device ${node.major}:${node.minor}, not this macvtap's ${tap.major}:${tap.minor}`);
        else {
          const st = statSync(tap.path);
          if (st.uid !== conf.owner || st.gid !== conf.group)
            problems.push(`${tap.path} is owned by ${st.uid}:${st.gid}, expected ${conf.owner}:${conf.group}`);
        }
      } catch (err) {
        problems.push(`cannot read its tap device: ${describeError(err)}`);
      }
      const record = state.allocations.read(conf.deviceID as string);
      if (record && record.ifindex !== link.index)
        problems.push(`ifindex is ${link.index}, but device ${record.deviceID} was allocated as /dev/tap${record.ifindex}`);
    }
    if (problems.length) {
      log.warn(`CHECK of ${env.ifname} failed: ${problems.join('; ')}`);
      throw new CniError(ErrorCode.CheckFailed, `interface ${env.ifname} in ${env.netns} is not as configured`, problems.join('; '));
    }
  } finally {
    scope.close();
  }
}
