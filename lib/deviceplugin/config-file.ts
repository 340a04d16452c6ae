/**
 * Reads `--config FILE` without ever blocking: the daemon reads it at start and on every change, on the same
 * thread that answers the kubelet, so a FIFO (which would block open or read until a writer came), a device
 * node or an endless file must fail at once with a message naming the file, not freeze start-up or gRPC.
 * Symlinks are followed: a mounted ConfigMap is a chain of them.
 */
import { readBounded } from '../util/bounded-read';
import { ConfigError } from './config';

/** Larger than any sensible configuration, small enough to read in one go. */
export const MAX_CONFIG_BYTES = 4 * 1024 * 1024;

/** The file's text (UTF-8); throws ConfigError naming the file and the problem. */
export function readConfigFile(file: string): string {
  const r = readBounded(file, { maxBytes: MAX_CONFIG_BYTES });
  if (r.ok) return r.bytes.toString('utf8');
  switch (r.reason) {
    case 'missing':
      throw new ConfigError(file, 'cannot read the file: ENOENT');
    case 'open':
    case 'read':
      throw new ConfigError(file, `cannot read the file: ${r.error.code ?? String(r.error)}`);
    case 'not-file':
      throw new ConfigError(file, `cannot read the file: it is ${r.kind}, not a regular file`);
    case 'size':
      throw new ConfigError(file, `the file is ${r.size} bytes, more than the ${MAX_CONFIG_BYTES} a configuration may have`);
    case 'grew':
      throw new ConfigError(file, `the file grew beyond the ${MAX_CONFIG_BYTES} bytes a configuration may have`);
    default:
      // 'symlink' and 'owner': refusals this reader does not ask for (a ConfigMap is a chain of symlinks).
      throw new ConfigError(file, `cannot read the file: ${r.reason}`);
  }
}
