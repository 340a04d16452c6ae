/**
 * One generator, two drivers. Every link operation is written once, as a generator that yields the netlink
 * requests it needs (a `Step`) and receives each reply; it never touches a socket. Two drivers run it:
 * `runSync` (blocking requests, for short-lived CLIs such as the CNI plugin) and `runAsync` (replies read on
 * the main loop, for daemons). A reply that is an error is thrown into the generator, which may catch it.
 */
import type { NativeNetlinkSocket } from './native';

/** A namespace other than the handle's own, by fd or by pid (IFLA_NET_NS_FD / IFLA_NET_NS_PID). */
export interface NsTarget {
  fd?: number;
  pid?: number;
}

/** One request and how to name it in errors. */
export interface Step {
  request: Buffer;
  operation: string;
  link: string;
  /** Send it to the kernel in this namespace instead of the handle's (e.g. to undo a move). */
  in?: NsTarget;
}

export type Operation<T> = Generator<Step, T, Buffer[]>;

/** Where the drivers get their sockets: the handle's own, or a short-lived one in another namespace. */
export interface SocketSource {
  /** The handle's socket of that kind (created on first use). */
  own(kind: 'sync' | 'async'): NativeNetlinkSocket;
  /** A new socket in another namespace; the driver closes it after the step. */
  foreign(target: NsTarget): NativeNetlinkSocket;
}

/** How long a synchronous request waits for the kernel's reply before failing with ETIMEDOUT. */
export const SYNC_REPLY_TIMEOUT_MS = 30000;

/** Drives `op` with blocking requests. */
export function runSync<T>(op: Operation<T>, sockets: SocketSource, timeoutMs = SYNC_REPLY_TIMEOUT_MS): T {
  let step = op.next();
  while (!step.done) {
    const { request, operation, link } = step.value;
    let messages: Buffer[];
    try {
      const sock = step.value.in ? sockets.foreign(step.value.in) : sockets.own('sync');
      try {
        messages = sock.requestSync(request, operation, link, timeoutMs);
      } finally {
        if (step.value.in) sock.close();
      }
    } catch (err) {
      step = op.throw(err);
      continue;
    }
    step = op.next(messages);
  }
  return step.value;
}

/** Drives `op` asynchronously: every reply is read on the main loop, nothing blocks. */
export async function runAsync<T>(op: Operation<T>, sockets: SocketSource): Promise<T> {
  let step = op.next();
  while (!step.done) {
    const { request, operation, link } = step.value;
    let messages: Buffer[];
    try {
      const sock = step.value.in ? sockets.foreign(step.value.in) : sockets.own('async');
      try {
        messages = await new Promise<Buffer[]>((resolve, reject) => {
          sock.request(request, operation, link, (err, reply) => (err ? reject(err) : resolve(reply ?? [])));
        });
      } finally {
        if (step.value.in) sock.close();
      }
    } catch (err) {
      step = op.throw(err);
      continue;
    }
    step = op.next(messages);
  }
  return step.value;
}
