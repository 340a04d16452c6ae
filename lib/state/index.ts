/**
 * The node's state: the only module that touches the state directory. Versioned records (the device plugin's
 * allocations, the CNI's attachments), atomic durable writes, and per-device kernel locks, shared by the CNI
 * plugin and the device plugin. See node-state.ts for the layout.
 */
export { NodeState, DEFAULT_STATE_DIR, STATE_DIR_ENV } from './node-state';
export { DeviceLock, DEFAULT_LOCK_TIMEOUT_MS } from './lock';
export type { LockHolder, LockOptions } from './lock';
export { AllocationStore, parseAllocation, ALLOCATION_VERSION } from './allocations';
export type { AllocationRecord, AllocationRequest } from './allocations';
export { AttachmentStore, parseAttachment, ATTACHMENT_VERSION } from './attachments';
export type { AttachmentRecord, LinkSettings, PodRef } from './attachments';
export { StateError, UnsafeStateDir, LockTimeout, InvalidStateName } from './errors';
export { deviceIdProblem, containerIdProblem, ifnameProblem, DEVICE_ID_MAX, CONTAINER_ID_MAX } from './names';
export type { AttachmentKey } from './names';
export { RecordProblem } from './schema';
