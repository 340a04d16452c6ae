/**
 * Child process of leak.test.ts, run inside a scratch namespace by `ip netns exec` with --expose-gc. Uses the
 * current-namespace handle (as the CNI plugin does), performs OPS operations (a mix of get/list/set/create/
 * delete, sync and async, failures included, plus handles and watchers opened and closed) after a warm-up of
 * 2,000, and prints one JSON line: fds, rss, heap and external memory before and after.
 * argv: LOWER INDEX... (claimed ifindexes for the macvtaps it creates)
 */
import * as fs from 'node:fs';
import { NetlinkError, Netns, TapDevice } from '../../lib/netlink';

const OPS = 10000;
const [lower, ...indexArgs] = process.argv.slice(2);
const indexes = indexArgs.map(Number);
const gc = (globalThis as { gc?: () => void }).gc;

export interface Snapshot {
  fds: number;
  rss: number;
  heap: number;
  external: number;
}

/** The one JSON line this child prints, read by leak.test.ts. */
export interface LeakReport {
  ops: number;
  gc: boolean;
  before: Snapshot;
  after: Snapshot;
  tap: TapDevice;
  probeIndex: number;
}

function snapshot(): Snapshot {
  gc?.();
  gc?.();
  const m = process.memoryUsage();
  return { fds: fs.readdirSync('/proc/self/fd').length, rss: m.rss, heap: m.heapUsed, external: m.external + m.arrayBuffers };
}

const settle = async (): Promise<void> => {
  for (let i = 0; i < 3; i++) await new Promise((resolve) => setImmediate(resolve));
};

async function run(ops: number, h: Netns): Promise<number> {
  let done = 0;
  let created = 0;
  for (let i = 0; done < ops; i++) {
    const step = i % 25;
    const name = `lk${created % indexes.length}`;
    const index = indexes[created % indexes.length];
    switch (step) {
      case 0:
        if (i % 50 === 0) h.createMacvtapSync({ name, lower, index, mode: 'bridge' });
        else await h.createMacvtap({ name, lower, index, mode: 'vepa' });
        break;
      case 1:
        h.setLinkSync(index, { mtu: 1400 + (i % 7), up: i % 100 === 1, promisc: i % 2 === 0 });
        break;
      case 2:
        await h.setLink(name, { alias: `alias ${i}`, mac: `02:00:00:00:00:${(i % 200).toString(16).padStart(2, '0')}` });
        break;
      case 3:
        h.tapDeviceSync(index);
        break;
      case 4:
        if (i % 50 === 4) h.deleteLinkSync(name);
        else await h.deleteLink(index);
        created += 1;
        break;
      case 5:
        try {
          h.deleteLinkSync('lk-missing');
        } catch (err) {
          if (!(err instanceof NetlinkError) || err.code !== 'ENODEV') throw err;
        }
        break;
      case 6:
        await h.getLink('lk-missing');
        break;
      case 7:
        h.listLinksSync();
        break;
      case 8:
        await h.listLinks();
        break;
      case 9: {
        const other = Netns.current();
        other.getLinkSync(lower);
        await other.getLink(1);
        other.close();
        break;
      }
      case 10: {
        const w = h.watchLinks();
        w.close();
        break;
      }
      default:
        if (step % 2) h.getLinkSync(step % 4 ? lower : 1);
        else await h.getLink(lower);
    }
    done += 1;
  }
  return done;
}

async function main(): Promise<void> {
  const h = Netns.current();
  await run(2000, h);
  await settle();
  const before = snapshot();
  const ops = await run(OPS, h);
  await settle();
  const after = snapshot();
  // The current-namespace path of tapDeviceSync (plain sysfs read), for the parent to check against sysfs.
  const probe = h.createMacvtapSync({ name: 'lkprobe', lower, index: indexes[0] });
  const tap = h.tapDeviceSync('lkprobe');
  h.close();
  const report: LeakReport = { ops, gc: gc !== undefined, before, after, tap, probeIndex: probe.index };
  process.stdout.write(`${JSON.stringify(report)}\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(`leak-child: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exitCode = 1;
});
