/**
 * What Allocate's callers see of it: its errors, and its answer per device
 * (kept apart from allocator.ts, which is the request's work).
 */

/** Why an Allocate failed; `kind` maps to a gRPC status code. */
export class AllocateError extends Error {
  readonly kind: 'invalid' | 'precondition' | 'internal';
  constructor(kind: AllocateError['kind'], message: string) {
    super(message);
    this.name = 'AllocateError';
    this.kind = kind;
  }
}

/** What Allocate made for one device. */
export interface AllocatedDevice {
  deviceID: string;
  linkName: string;
  ifindex: number;
  tapPath: string;
}
