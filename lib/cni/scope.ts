/**
 * What a verb opened (the state directory, namespace handles, the device's lock), closed in reverse order when the
 * verb ends, whichever way it ends: one `finally` per verb instead of one per resource.
 */
export class Scope {
  private readonly closers: (() => void)[] = [];

  /** Remembers `resource` to be closed (or released) at the end; returns it. */
  own<T extends { close(): void } | { release(): void }>(resource: T): T {
    this.closers.push('close' in resource ? () => resource.close() : () => resource.release());
    return resource;
  }

  close(): void {
    for (const close of this.closers.splice(0).reverse()) close();
  }
}
