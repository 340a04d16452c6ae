/**
 * ADD's undo list: each step that changes something registers how to undo it as soon as it succeeded; on failure
 * the same list runs backwards, so rollback is the steps undone by the code that owns them (returning the link
 * to the host is DEL's own release), never a second implementation.
 */
import { describeError } from './errors';
import { log } from './log';

interface Undo {
  what: string;
  run: () => void | Promise<void>;
}

export class Rollback {
  private readonly undos: Undo[] = [];
  /** The step being attempted, for the error message. */
  step = 'start';

  /** Names the step about to run. */
  begin(step: string): void {
    this.step = step;
  }

  /** Registers how to undo what just succeeded. */
  onFailure(what: string, run: () => void | Promise<void>): void {
    this.undos.push({ what, run });
  }

  get empty(): boolean {
    return this.undos.length === 0;
  }

  /** Forgets every undo (the operation succeeded). */
  commit(): void {
    this.undos.length = 0;
  }

  /** Runs the undos, last first, each even if an earlier one failed. Returns what could not be undone. */
  async run(): Promise<string[]> {
    const problems: string[] = [];
    for (const undo of this.undos.splice(0).reverse()) {
      try {
        await undo.run();
      } catch (err) {
        problems.push(`${undo.what}: ${describeError(err)}`);
        log.error('rollback step failed', { step: undo.what, err });
      }
    }
    return problems;
  }
}
