/**
 * Structured logs: one JSON object per line, `{"time", "level", "resource"?, "msg", ...fields}`, on stdout.
 */
export const LOG_LEVELS = ['debug', 'info', 'warn', 'error'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export type LogFields = Record<string, unknown>;

export class Logger {
  private readonly threshold: number;
  private readonly write: (line: string) => void;
  private readonly base: LogFields;

  constructor(level: LogLevel = 'info', write: (line: string) => void = (line) => process.stdout.write(line), base: LogFields = {}) {
    this.threshold = LOG_LEVELS.indexOf(level);
    this.write = write;
    this.base = base;
  }

  /** A logger whose lines all carry `resource`. */
  forResource(resource: string): Logger {
    return new Logger(LOG_LEVELS[this.threshold], this.write, { ...this.base, resource });
  }

  enabled(level: LogLevel): boolean {
    return LOG_LEVELS.indexOf(level) >= this.threshold;
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
    const line = { time: new Date().toISOString(), level, ...this.base, msg, ...fields };
    this.write(
      `${JSON.stringify(line, (_k, v: unknown) => (v instanceof Error ? v.message : typeof v === 'bigint' ? v.toString() : v))}\n`,
    );
  }
}

/** An error's message without its stack, for logs and gRPC statuses. */
export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
