/**
 * The CNI plugin's log: the project's one logger (JSON lines), on stderr or appended to the host configuration's
 * log file. stdout is reserved for the CNI result. A log file that cannot be opened, or is not a regular file (a
 * FIFO would block every invocation), falls back to stderr: logging never fails or hangs an operation.
 */
import { closeSync, constants, fstatSync, openSync } from 'node:fs';
import { fdSink, Logger, LogLevel } from '../util/log';

export { isLogLevel, LOG_LEVELS } from '../util/log';
export type { LogLevel } from '../util/log';

/** Default level: a successful invocation logs nothing. */
export const DEFAULT_LOG_LEVEL: LogLevel = 'warn';

export const log = new Logger({ level: DEFAULT_LOG_LEVEL, sink: fdSink(2), context: { program: 'macvtap', pid: process.pid } });

let logFd: number | undefined;

/** Sets the level and, when given, appends to `file` instead of stderr. */
export function configureLog(opts: { level?: LogLevel; file?: string }): void {
  if (opts.level) log.setLevel(opts.level);
  if (opts.file && logFd === undefined) {
    let fd: number | undefined;
    try {
      const O = constants;
      fd = openSync(opts.file, O.O_WRONLY | O.O_APPEND | O.O_CREAT | O.O_NONBLOCK | O.O_NOCTTY, 0o640);
      if (!fstatSync(fd).isFile()) throw new Error('not a regular file');
      logFd = fd;
      log.setSink(fdSink(logFd));
    } catch (err) {
      if (fd !== undefined) closeSync(fd);
      log.warn('cannot use the log file; logging to stderr', { file: opts.file, err });
    }
  }
}

/** Closes the log file (the invocation is over). */
export function closeLog(): void {
  if (logFd === undefined) return;
  log.setSink(fdSink(2));
  try {
    closeSync(logFd);
  } catch {
    /* already closed */
  }
  logFd = undefined;
}
