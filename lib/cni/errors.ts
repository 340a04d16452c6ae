/**
 * The CNI plugin's one error type. Every failure the plugin reports is a CniError: it becomes the spec's error
 * result `{cniVersion, code, msg, details}` on stdout and a non-zero exit code. Codes 0-99 are the spec's
 * well-known ones; 100 and up are this plugin's own (documented in the README's error table).
 */

/** Well-known codes (CNI SPEC 1.1.0, "Error codes") and this plugin's own. */
export const ErrorCode = {
  /** Incompatible CNI version (including 0.1.0/0.2.0, whose results need an IP this plugin never has). */
  IncompatibleVersion: 1,
  /** Container unknown or does not exist: CNI_NETNS names no file. */
  ContainerUnknown: 3,
  /** Invalid necessary environment variables (CNI_COMMAND, CNI_CONTAINERID, CNI_NETNS, CNI_IFNAME, CNI_ARGS). */
  InvalidEnvironment: 4,
  /** I/O failure (state directory, log file). */
  IoFailure: 5,
  /** Failed to decode content: stdin is not a JSON object, or CNI_ARGS is not `K=V;K=V`. */
  DecodeFailure: 6,
  /** Invalid network configuration (a key's value, or a value the lower device cannot take). */
  InvalidConfig: 7,
  /** Try again later: the device is locked by another operation, or still attached to another sandbox. */
  TryAgainLater: 11,
  /** STATUS: the plugin cannot service ADD. */
  NotAvailable: 50,
  /** STATUS: the plugin cannot service ADD and existing attachments may have limited connectivity. */
  NotAvailableDegraded: 51,
  /** No macvtap for the deviceID: not a host link, no allocation record, no link under the derived name. */
  DeviceNotFound: 100,
  /** The deviceID names a host link that is not a macvtap. */
  NotMacvtap: 101,
  /** CNI_IFNAME (or the device's ifindex) is already taken in the container's namespace. */
  InterfaceExists: 102,
  /** The recorded lower device of the deviceID is missing, so its macvtap cannot be recreated. */
  LowerDeviceMissing: 103,
  /** The kernel refused a step of ADD (move, rename, MAC, MTU, up, tap node); everything was rolled back. */
  AddFailed: 104,
  /** ADD failed and putting the link back failed too: the details say what state is left. */
  RollbackFailed: 105,
  /** DEL could not return the interface to the host namespace. */
  DelFailed: 106,
  /** CHECK found the interface missing or different from the configuration / prevResult. */
  CheckFailed: 107,
  /** GC could not release some stale attachments (the others were released). */
  GcFailed: 108,
  /** ADD: the kubelet's device-manager checkpoint does not give this pod (K8S_POD_UID) the deviceID. */
  NotPodsDevice: 109,
  /** ADD under `ownership: enforce`: the kubelet's checkpoint is missing, unreadable, unsafe or corrupt. */
  OwnershipUnverifiable: 110,
  /** The host configuration file is unusable (unsafe to trust, not JSON, an unknown key or a bad value). */
  HostConfigInvalid: 111,
  /** An unexpected internal failure (a bug); the message says what was being done. */
  Internal: 199,
} as const;

export type ErrorCodeValue = (typeof ErrorCode)[keyof typeof ErrorCode];

export class CniError extends Error {
  readonly code: number;
  readonly details: string;

  constructor(code: number, msg: string, details = '') {
    super(msg);
    this.name = 'CniError';
    this.code = code;
    this.details = details;
  }
}

/** The spec's error result. */
export interface ErrorResult {
  cniVersion: string;
  code: number;
  msg: string;
  details: string;
}

export function errorResult(err: CniError, cniVersion: string): ErrorResult {
  return { cniVersion, code: err.code, msg: err.message, details: err.details };
}

/** A one-line description of any thrown value, for messages and logs (never a stack trace). */
export function describeError(err: unknown): string {
  if (err instanceof Error) {
    const extack = (err as { extack?: string }).extack;
    return extack && !err.message.includes(extack) ? `${err.message} (${extack})` : err.message;
  }
  return String(err);
}
