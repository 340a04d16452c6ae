/**
 * Worker of worker.test.ts: opens every kind of handle the library has and leaves them all open — the current
 * namespace and a named one with sync and async sockets, a request in flight, a watcher (which keeps the worker
 * alive), a sysfs mount from tapDevice, and a namespace fd — then tells the parent and waits to be ended.
 * workerData: { nsPath, macvtap, exit: 'terminate' | 'process.exit' }
 */
import { parentPort, workerData } from 'node:worker_threads';
import { Netns } from '../../lib/netlink';

const { nsPath, macvtap, exit } = workerData as { nsPath: string; macvtap: string; exit: 'terminate' | 'process.exit' };

async function main(): Promise<void> {
  const here = Netns.current();
  here.listLinksSync();
  await here.listLinks();
  const there = Netns.open(nsPath);
  there.getLinkSync('lo');
  await there.getLink('lo');
  there.tapDeviceSync(macvtap); // mounts that namespace's sysfs, kept by the handle
  const watcher = there.watchLinks();
  watcher.on('link', () => undefined);
  void there.listLinks().catch(() => undefined); // in flight when the worker ends
  Netns.open(nsPath); // a handle nobody will ever close
  parentPort?.postMessage('ready');
  if (exit === 'process.exit') setImmediate(() => process.exit(0));
}

void main();
