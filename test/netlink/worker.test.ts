// Environment teardown (root only): a worker thread that opens every kind of handle and ends without closing
// any — terminated from outside, or by process.exit() inside — leaves no fd behind, and the main thread's
// handles keep working. The addon's cleanup hooks close sockets, stop pollers and close namespace fds.
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import t from 'tap';
import { Netns } from '../../lib/netlink';
import { openFdCount, rootOnly } from '../support/kernel';
import { scratch, settle } from './fixtures';

const child = path.join(__dirname, 'worker-child.ts');
// Each worker loads the TypeScript sources through the test loader: slow on a loaded machine.
t.setTimeout(300000);

for (const exit of ['terminate', 'process.exit'] as const) {
  t.test(`a worker ended by ${exit} with every handle open releases them all`, { skip: rootOnly, timeout: 60000 }, async (t) => {
    const s = scratch(t);
    s.h.createMacvtapSync({ name: 'wk0', lower: s.lower, index: s.idx[0] });
    const main = Netns.current();
    t.teardown(() => main.close());
    await main.listLinks();
    // One worker first, so that whatever Node itself keeps after the first worker is in the baseline.
    for (const round of ['warm-up', 'measured']) {
      await settle();
      const fds = openFdCount();
      const worker = new Worker(child, {
        execArgv: process.execArgv,
        workerData: { nsPath: `/var/run/netns/${s.ns}`, macvtap: 'wk0', exit },
      });
      const exited = new Promise<number>((resolve) => worker.once('exit', resolve));
      await new Promise<void>((resolve, reject) => {
        worker.once('message', () => resolve());
        worker.once('error', reject);
      });
      t.ok(openFdCount() > fds, `${round}: the worker holds fds (${openFdCount() - fds})`);
      if (exit === 'terminate') await worker.terminate();
      await exited;
      await settle();
      if (round === 'measured') t.equal(openFdCount(), fds, 'every fd the worker held is closed');
    }
    t.same(
      main.listLinksSync().map((l) => l.name),
      (await main.listLinks()).map((l) => l.name),
      'the main thread still works, sync and async',
    );
    t.ok(s.h.getLinkSync('wk0'), 'and its handles in other namespaces too');
  });
}
