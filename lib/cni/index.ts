/** The macvtap CNI plugin, as a library: run one invocation in-process. The executable is bin/macvtap.ts. */
export { runPlugin } from './plugin';
export type { PluginOutput } from './plugin';
export { CniError, ErrorCode } from './errors';
export { SUPPORTED_VERSIONS } from './version';
export { DEFAULT_STATE_DIR, STATE_DIR_ENV, DEFAULT_OWNER, DEFAULT_GROUP } from './config';
