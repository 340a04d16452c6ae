/** The kubelet device plugin for macvtap resources (the `macvtap-deviceplugin` daemon's library). */
export { AllocateError, Allocator, isRetired, parseIfindexRange, retiredName } from './allocator';
export type { AllocatedDevice, IfindexRange } from './allocator';
export * from './api';
export * from './config';
export { MAX_CONFIG_BYTES, readConfigFile } from './config-file';
export { checkDeviceIds } from './resource';
export { Daemon } from './daemon';
export { readConfig } from './config-watch';
export type { DaemonOptions } from './daemon';
export type { ConfigSource } from './config-watch';
export { LinkTable } from './links';
export { errorMessage, Logger, LOG_LEVELS } from '../util/log';
export type { LogLevel } from '../util/log';
export { lowerHealthy, PLUGIN_OPTIONS, ResourcePlugin } from './resource';
