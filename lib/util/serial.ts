/**
 * Runs asynchronous tasks one at a time, in the order they were queued, whatever each one's outcome. The one
 * serial queue of the project: a namespace handle's socket serves one request at a time, the device plugin's
 * Allocates must never race for a link name or an ifindex.
 */
export class SerialQueue {
  private tail: Promise<unknown> = Promise.resolve();
  private waiting = 0;
  private idleWaiters: (() => void)[] = [];

  /** Queued or running tasks. */
  get pending(): number {
    return this.waiting;
  }

  /** Queues `task`; its result (or failure) is returned, and the next task starts when it settles. */
  run<T>(task: () => Promise<T>): Promise<T> {
    this.waiting++;
    const result = this.tail.then(task, task);
    this.tail = result.then(
      () => this.settled(),
      () => this.settled(),
    );
    return result;
  }

  /** Resolves once nothing is queued or running. */
  idle(): Promise<void> {
    if (this.waiting === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  private settled(): void {
    if (--this.waiting === 0) for (const wake of this.idleWaiters.splice(0)) wake();
  }
}
