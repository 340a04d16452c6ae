/** The macvtap CNI plugin, as a library: run one invocation in-process. The executable is bin/macvtap.ts. */
export { runPlugin } from './plugin';
export type { PluginOutput } from './plugin';
export { CniError, ErrorCode } from './errors';
export { SUPPORTED_VERSIONS } from './version';
export { DEFAULT_STATE_DIR, STATE_DIR_ENV, DEFAULT_OWNER, DEFAULT_GROUP } from './config';
export { readHostConfig, HOST_CONFIG_NAME, HOST_CONFIG_ENV, HOST_ENV, HOST_ONLY_KEYS, OWNERSHIP_POLICIES } from './host-config';
export type { HostConfig, OwnershipPolicy } from './host-config';
