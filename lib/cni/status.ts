/**
 * STATUS (CNI 1.1.0): ready (exit 0, no output) when ADD could run: netlink answers, the state directory is usable
 * and takes new files, /dev accepts tap nodes. Code 50 otherwise. Code 51 when, in addition, a device attached on
 * this network has lost its lower device (that container has no connectivity, and the device cannot be recreated).
 */
import { accessSync, constants } from 'node:fs';
import { Netns } from '../netlink';
import type { NetConf } from './config';
import { CniError, describeError, ErrorCode } from './errors';
import { Scope } from './scope';
import { openState } from './state';

export function cmdStatus(conf: NetConf): void {
  const scope = new Scope();
  try {
    let host: Netns;
    try {
      host = scope.own(Netns.current());
      host.getLinkSync(1);
    } catch (err) {
      throw new CniError(ErrorCode.NotAvailable, 'netlink is not usable', describeError(err));
    }
    let state: ReturnType<typeof openState>;
    try {
      state = scope.own(openState(conf.stateDir));
      state.checkWritable();
    } catch (err) {
      throw new CniError(ErrorCode.NotAvailable, `state directory ${conf.stateDir} is not writable`, describeError(err));
    }
    try {
      accessSync('/dev', constants.W_OK);
    } catch (err) {
      throw new CniError(ErrorCode.NotAvailable, '/dev is not writable: tap device nodes cannot be made', describeError(err));
    }
    const lost: string[] = [];
    for (const att of state.attachments.list()) {
      if (att.network !== conf.name || host.getLinkSync(att.lowerIndex)) continue;
      const lower = state.allocations.read(att.deviceID)?.lowerDevice ?? `ifindex ${att.lowerIndex}`;
      lost.push(`${att.deviceID} (lower device ${lower}, container ${att.containerID})`);
    }
    if (lost.length)
      throw new CniError(ErrorCode.NotAvailableDegraded, `lower device missing for ${lost.length} attached device(s)`, lost.join('; '));
  } finally {
    scope.close();
  }
}
