/**
 * Transitional adapter: the device plugin's original allocation-store interface (constructed from a path),
 * backed by lib/state, which owns the state directory (durable writes, strict parsing, no symlink followed).
 * The device plugin switches to `NodeState` (and its per-device locks for Allocate) directly; then this goes.
 */
import { AllocationRecord, DEFAULT_STATE_DIR, NodeState } from '../state';
import { Logger } from '../util/log';

export { DEFAULT_STATE_DIR };
export type { AllocationRecord };

export class AllocationStore {
  private state: NodeState | undefined;

  constructor(private readonly stateDir: string = DEFAULT_STATE_DIR) {}

  private open(): NodeState {
    this.state ??= NodeState.open(this.stateDir, { log: new Logger({ level: 'warn', context: { component: 'state' } }) });
    return this.state;
  }

  write(record: AllocationRecord): void {
    this.open().allocations.write(record);
  }

  read(deviceID: string): AllocationRecord | undefined {
    return this.open().allocations.read(deviceID);
  }

  remove(deviceID: string): void {
    this.open().allocations.remove(deviceID);
  }

  list(): string[] {
    return this.open().allocations.list();
  }
}
