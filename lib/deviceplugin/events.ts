/**
 * What the daemon reports to whoever watches it (metrics, the status log lines, reclamation): one typed event
 * emitter per daemon. The core only emits; with no listener (metrics and reclamation off) an emit costs a
 * property lookup, and nothing is kept.
 */
import { EventEmitter } from 'node:events';
import type { Link } from '../netlink';
import type { ResourceConfig } from './config';

/** How an Allocate ended: `ok`, or the AllocateError kind (gRPC INVALID_ARGUMENT, FAILED_PRECONDITION, INTERNAL). */
export type AllocateResult = 'ok' | 'invalid' | 'precondition' | 'internal';
export const ALLOCATE_RESULTS: readonly AllocateResult[] = ['ok', 'invalid', 'precondition', 'internal'];

export type ConfigReloadResult = 'applied' | 'rejected' | 'unreadable';

export interface DaemonEventMap {
  /** One Allocate request answered (`devices`: IDs requested), with its time inside the daemon. */
  allocate: [{ resource: string; devices: number; result: AllocateResult; seconds: number }];
  /** Register with the kubelet succeeded. */
  registered: [{ resource: string }];
  registrationFailed: [{ resource: string }];
  /** A changed configuration file was read. */
  configReload: [{ result: ConfigReloadResult }];
  /** Entries of a configuration (at start or on reload) that were skipped as invalid. */
  configEntriesRejected: [{ count: number }];
  /** A link event from the kernel (RTNLGRP_LINK). */
  linkEvent: [{ type: 'new' | 'del' }];
  /** All links re-read (start, overrun, re-subscription). */
  linkResync: [{ reason: string }];
  /** A reconcile pass finished: the set of resources, their sockets and registrations may have changed. */
  reconciled: [];
  /** Reclamation removed (or, in a dry run, would have removed) a device's macvtap and record. */
  reclaimed: [{ resource: string; deviceID: string; dryRun: boolean }];
  /** A reclamation pass ended; `none`: the assignments could not be read, so nothing was reclaimed. */
  reclaimRun: [{ source: 'pod-resources' | 'checkpoint' | 'none' }];
}

export class DaemonEvents extends EventEmitter<DaemonEventMap> {}

/** One resource as the daemon holds it right now. */
export interface ResourceStatus {
  /** `macvtap.network.kubevirt.io/<name>`. */
  resource: string;
  config: ResourceConfig;
  healthy: boolean;
  /** Registered with the kubelet whose kubelet.sock is there now. */
  registered: boolean;
  /** Open ListAndWatch streams (the kubelet keeps one open while it uses the plugin). */
  streams: number;
  /** The lower device as the last link event showed it; undefined when it does not exist. */
  lower: Link | undefined;
}

export interface DaemonStatus {
  resources: ResourceStatus[];
  /** Whether a kubelet.sock is in the device-plugin directory. */
  kubeletSocket: boolean;
  /** Whether the link-event subscription is open (health follows the kernel only while it is). */
  linkEvents: boolean;
  /** Since when (ms since the epoch) the reconcile in progress has been running; undefined when idle. */
  reconcilingSince: number | undefined;
}

/** How many of a resource's device IDs (`<name>Mvp<i>`, i < capacity) are in `allocated`. */
export function countAllocated(allocated: ReadonlySet<string>, config: ResourceConfig): number {
  let n = 0;
  for (let i = 0; i < config.capacity; i++) if (allocated.has(`${config.name}Mvp${i}`)) n++;
  return n;
}
