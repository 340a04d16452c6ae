/**
 * What the record stores share: JSON files in one subdirectory, parsed strictly, reported and treated as absent
 * when torn, of an unknown version, planted (a symlink, a FIFO, another owner) or otherwise not what they claim.
 * I/O failures (EIO, EACCES, ...) are not "absent": they are thrown as StateError for the caller to report.
 */
import type { Logger } from '../util/log';
import type { StateDir, StateSubdir, SubdirName } from './dir';
import { StateError } from './errors';
import { parseTempName } from './names';
import { RecordProblem } from './schema';

export abstract class RecordStore<T> {
  constructor(
    protected readonly state: StateDir,
    private readonly subdirName: SubdirName,
    protected readonly log: Logger,
  ) {}

  /** The subdirectory, created when `create`; undefined if it does not exist (and so holds no record). */
  protected dir(create: boolean): StateSubdir | undefined {
    return this.state.subdir(this.subdirName, create);
  }

  /** Full path of a file of this store (for messages). */
  pathOf(name: string): string {
    return `${this.state.path}/${this.subdirName}/${name}`;
  }

  /** Checks a parsed record against its file name; throws RecordProblem. */
  protected abstract parse(value: unknown, name: string): T;

  /** The record in file `name`, or undefined when there is none or it cannot be trusted (then it is reported). */
  protected readRecord(name: string, dir = this.dir(false)): T | undefined {
    if (!dir) return undefined;
    let data: Buffer | undefined;
    try {
      data = dir.read(name);
    } catch (err) {
      if (err instanceof StateError && err.code === 'ECORRUPT') return this.ignore(name, err.message);
      throw err;
    }
    if (data === undefined) return undefined;
    return this.parseData(name, data);
  }

  protected parseData(name: string, data: Buffer): T | undefined {
    let value: unknown;
    try {
      value = JSON.parse(data.toString('utf8'));
    } catch (err) {
      return this.ignore(name, `not JSON (${data.length} bytes: torn or foreign): ${(err as Error).message}`);
    }
    try {
      return this.parse(value, name);
    } catch (err) {
      if (err instanceof RecordProblem) return this.ignore(name, err.message);
      throw err;
    }
  }

  private ignore(name: string, problem: string): undefined {
    this.log.warn('ignoring a state record that cannot be trusted', { path: this.pathOf(name), problem });
    return undefined;
  }

  /** Writes a record durably. */
  protected writeRecord(name: string, record: T): void {
    (this.dir(true) as StateSubdir).write(name, `${JSON.stringify(record)}\n`);
  }

  /** Writes the temp file now (throwing synchronously), and returns the promise of the durable rename. */
  protected beginWriteRecord(name: string, record: T): Promise<void> {
    return (this.dir(true) as StateSubdir).beginWrite(name, `${JSON.stringify(record)}\n`);
  }

  /** Removes a record durably; false if there was none. */
  protected removeRecord(name: string): boolean {
    return this.dir(false)?.remove(name) ?? false;
  }

  /** Entry names, records and temp files alike ([] without the subdirectory). */
  protected names(): string[] {
    return this.dir(false)?.list() ?? [];
  }

  /**
   * Removes the temp files of writers that are no longer running (a writer killed between its temp file and its
   * rename). Only for stores whose writers do not adopt temp files; returns how many were removed.
   */
  sweepDeadTemp(): number {
    const dir = this.dir(false);
    if (!dir) return 0;
    let removed = 0;
    for (const name of dir.list()) {
      const temp = parseTempName(name);
      if (!temp || pidAlive(temp.pid)) continue;
      if (dir.discard(name)) {
        removed++;
        this.log.info('removed the temp file of a writer that died', { path: this.pathOf(name) });
      }
    }
    return removed;
  }
}

/** True if a process with this pid exists (another process reusing the pid counts: its file is then kept). */
export function pidAlive(pid: number): boolean {
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
