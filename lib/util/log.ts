/**
 * The one logger of both programs: one event = one JSON object on one line,
 * `{"time", "level", "msg", ...context, ...fields}`. JSON escapes every control character, so no input (a
 * deviceID with a newline, a name with a NUL) can split an event or forge another line.
 *
 * Levels in ascending severity: debug < info < warn < error. A logger keeps events at or above its level.
 * The CNI plugin writes to stderr (or the host's log file), the device plugin to stdout; both through a sink.
 */
import { writeSync } from 'node:fs';

export const LOG_LEVELS = ['debug', 'info', 'warn', 'error'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];
export type LogFields = Record<string, unknown>;

/** Where lines go. Must not throw: logging never fails an operation. */
export type LogSink = (line: string) => void;

/** A sink writing synchronously to a file descriptor (stderr for the CNI: it exits right after). */
export function fdSink(fd: number): LogSink {
  return (line) => {
    const data = Buffer.from(line);
    let offset = 0;
    while (offset < data.length) {
      try {
        offset += writeSync(fd, data, offset);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'EAGAIN') continue;
        return; // nowhere left to report it
      }
    }
  };
}

/** A sink writing to stdout through Node's stream (the daemon's, which never blocks the event loop). */
export const stdoutSink: LogSink = (line) => {
  process.stdout.write(line);
};

export function isLogLevel(value: unknown): value is LogLevel {
  return typeof value === 'string' && (LOG_LEVELS as readonly string[]).includes(value);
}

/** Renders values JSON cannot: errors as their message (never a stack), bigints as decimal strings. */
function replacer(_key: string, value: unknown): unknown {
  if (value instanceof Error) return value.message;
  if (typeof value === 'bigint') return value.toString();
  return value;
}

export class Logger {
  /** Level and sink, shared by a logger and its children: changing them changes them all. */
  private readonly shared: { threshold: number; sink: LogSink };
  private readonly context: LogFields;

  constructor(opts: { level?: LogLevel; sink?: LogSink; context?: LogFields } = {}, shared?: Logger['shared']) {
    this.shared = shared ?? { threshold: LOG_LEVELS.indexOf(opts.level ?? 'info'), sink: opts.sink ?? stdoutSink };
    this.context = { ...opts.context };
  }

  /** A logger whose events also carry `fields` (e.g. the resource, or the CNI's container and device). */
  child(fields: LogFields): Logger {
    return new Logger({ context: { ...this.context, ...fields } }, this.shared);
  }

  get level(): LogLevel {
    return LOG_LEVELS[this.shared.threshold];
  }

  setLevel(level: LogLevel): void {
    this.shared.threshold = LOG_LEVELS.indexOf(level);
  }

  setSink(sink: LogSink): void {
    this.shared.sink = sink;
  }

  /** Adds fields to every later event of this logger. */
  bind(fields: LogFields): void {
    Object.assign(this.context, fields);
  }

  enabled(level: LogLevel): boolean {
    return LOG_LEVELS.indexOf(level) >= this.shared.threshold;
  }

  debug(msg: string, fields?: LogFields): void {
    this.log('debug', msg, fields);
  }
  info(msg: string, fields?: LogFields): void {
    this.log('info', msg, fields);
  }
  warn(msg: string, fields?: LogFields): void {
    this.log('warn', msg, fields);
  }
  error(msg: string, fields?: LogFields): void {
    this.log('error', msg, fields);
  }

  log(level: LogLevel, msg: string, fields?: LogFields): void {
    if (!this.enabled(level)) return;
    const event = { time: new Date().toISOString(), level, msg, ...this.context, ...fields };
    let line: string;
    try {
      line = JSON.stringify(event, replacer);
    } catch (err) {
      line = JSON.stringify({ time: event.time, level, msg, logError: errorMessage(err) });
    }
    // JSON leaves U+2028/U+2029 raw; some readers take them for line breaks, so they are escaped too.
    this.shared.sink(`${line.replace(/[\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16)}`)}\n`);
  }
}

/** An error's message without its stack, for logs and error answers. */
export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
