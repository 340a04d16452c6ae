/**
 * The plugin's log: one line per event, to stderr or appended to `logFile`. stdout is reserved for the CNI
 * result. A log file that cannot be opened falls back to stderr (logging never fails an operation).
 */
import { closeSync, openSync, writeSync } from 'node:fs';

export const LOG_LEVELS = ['error', 'warn', 'info', 'debug'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export class Logger {
  private level = 1; // warn
  private fd = 2;
  private prefix = '';

  /** Where lines go and which are kept. */
  configure(opts: { level?: LogLevel; file?: string; prefix?: string }): void {
    if (opts.level) this.level = LOG_LEVELS.indexOf(opts.level);
    if (opts.prefix !== undefined) this.prefix = opts.prefix;
    if (opts.file && this.fd === 2) {
      try {
        this.fd = openSync(opts.file, 'a', 0o640);
      } catch (err) {
        this.write('warn', `cannot open log file ${opts.file}: ${(err as Error).message}; logging to stderr`);
      }
    }
  }

  error(msg: string): void {
    this.write('error', msg);
  }
  warn(msg: string): void {
    this.write('warn', msg);
  }
  info(msg: string): void {
    this.write('info', msg);
  }
  debug(msg: string): void {
    this.write('debug', msg);
  }
  get debugEnabled(): boolean {
    return this.level >= 3;
  }

  private write(level: LogLevel, msg: string): void {
    if (LOG_LEVELS.indexOf(level) > this.level) return;
    const line = `${new Date().toISOString()} ${level.toUpperCase()} macvtap[${process.pid}]${this.prefix}: ${msg}\n`;
    try {
      writeSync(this.fd, line);
    } catch {
      /* nowhere left to report it */
    }
  }

  close(): void {
    if (this.fd > 2) {
      try {
        closeSync(this.fd);
      } catch {
        /* already closed */
      }
      this.fd = 2;
    }
  }
}

export const log = new Logger();
