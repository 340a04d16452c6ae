/**
 * Reads `--config FILE` without ever blocking: the daemon reads it at start and on every change, on the same
 * thread that answers the kubelet, so a FIFO (which would block open or read until a writer came), a device
 * node or an endless file must fail at once with a message naming the file, not freeze start-up or gRPC.
 * Symlinks are followed: a mounted ConfigMap is a chain of them.
 */
import * as fs from 'node:fs';
import { ConfigError } from './config';

/** Larger than any sensible configuration, small enough to read in one go. */
export const MAX_CONFIG_BYTES = 4 * 1024 * 1024;

function kindOf(st: fs.Stats): string {
  if (st.isFIFO()) return 'a FIFO';
  if (st.isDirectory()) return 'a directory';
  if (st.isCharacterDevice()) return 'a character device';
  if (st.isBlockDevice()) return 'a block device';
  if (st.isSocket()) return 'a socket';
  return 'not a regular file';
}

/** The file's text (UTF-8); throws ConfigError naming the file and the problem. */
export function readConfigFile(file: string): string {
  let fd: number;
  try {
    // O_NONBLOCK: opening a FIFO for reading returns at once instead of waiting for a writer.
    fd = fs.openSync(file, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
  } catch (err) {
    throw new ConfigError(file, `cannot read the file: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
  }
  try {
    const st = fs.fstatSync(fd);
    if (!st.isFile()) throw new ConfigError(file, `cannot read the file: it is ${kindOf(st)}, not a regular file`);
    if (st.size > MAX_CONFIG_BYTES) {
      throw new ConfigError(file, `the file is ${st.size} bytes, more than the ${MAX_CONFIG_BYTES} a configuration may have`);
    }
    // Read to the end, bounded: the size can change between fstat and read.
    const chunks: Buffer[] = [];
    let length = 0;
    for (;;) {
      const chunk = Buffer.alloc(64 * 1024);
      const n = fs.readSync(fd, chunk, 0, chunk.length, null);
      if (n === 0) break;
      chunks.push(chunk.subarray(0, n));
      length += n;
      if (length > MAX_CONFIG_BYTES)
        throw new ConfigError(file, `the file grew beyond the ${MAX_CONFIG_BYTES} bytes a configuration may have`);
    }
    return Buffer.concat(chunks, length).toString('utf8');
  } catch (err) {
    if (err instanceof ConfigError) throw err;
    throw new ConfigError(file, `cannot read the file: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
  } finally {
    fs.closeSync(fd);
  }
}
