// Retired links racing answered devices (root only). A stale link of a device's name is retired (renamed
// `mvr<ifindex>`) and deleted in the background. That deletion must never hit an answered device: a retired link can
// vanish behind the daemon's back (deleting its lower device takes its macvtaps with it) and, with --ifindex-range,
// the next Allocate then gets its ifindex as the lowest free one. And it must make progress while Allocates keep
// coming: under a storm the allocator is never idle.
import t from 'tap';
import { hostLinkName } from '../../lib/naming';
import { ip, ipLink, rootOnly, sysfsTapDev } from '../support/kernel';
import { sleep } from './helpers';
import {
  assertConsistent,
  makeNode,
  nodeDev,
  pluginLinks,
  records,
  RES,
  startServing,
  waitForFault,
  waitNoRetired,
} from './faults-harness';

// Daemon starts and a storm on a loaded 2-vCPU machine: longer than .taprc's per-file default.
t.setTimeout(900_000);

t.test('a retired link that vanished: the device that reuses its ifindex is never deleted', { skip: rootOnly }, async (t) => {
  const node = await makeNode(t);
  const reused = node.indexes[0];
  const [first, second] = ['dataplaneMvp1', 'dataplaneMvp2'];
  // The first device's previous link, on another lower device that is about to go away.
  ip('-n', node.ns, 'link', 'add', 'old0', 'type', 'veth', 'peer', 'name', 'oldpeer');
  ip('-n', node.ns, 'link', 'add', 'link', 'old0', 'name', hostLinkName(first), 'index', String(reused), 'type', 'macvtap');
  const daemon = await startServing(t, node, { fault: 'Allocate:retired:pause' });
  const answers = [node.kubelet.allocate(RES, [[first]])];
  await waitForFault(daemon, 1);
  t.ok(ipLink(node.ns, `mvr${reused}`), 'the previous link is retired, queued for deletion');
  // The next pod's Allocate queues behind; the retired link vanishes with its lower device, freeing its ifindex.
  answers.push(node.kubelet.allocate(RES, [[second]]));
  await sleep(100);
  ip('-n', node.ns, 'link', 'del', 'old0');
  t.notOk(ipLink(node.ns, `mvr${reused}`), 'the retired link vanished with its lower device');
  daemon.child.kill('SIGCONT');
  const taps = (await Promise.all(answers)).map((a) => a.containerResponses[0].devices[0].hostPath);
  t.equal(taps[1], `/dev/tap${reused}`, 'the second device got the freed ifindex (the lowest free in the range)');
  // Give the background deletion every chance to do the wrong thing.
  await sleep(1500);
  const link = ipLink(node.ns, hostLinkName(second));
  t.equal(link?.ifindex, reused, 'the answered device is still there');
  t.equal(records(node).get(second)?.ifindex, reused, 'and recorded');
  t.equal(nodeDev(taps[1]), link ? sysfsTapDev(node.ns, link.ifname, reused) : 'none', "the kubelet's /dev/tapN opens this device");
  t.same(assertConsistent(t, node, 'after the reaper ran'), [first, second]);
});

const LOOPS = 4;
const ROUNDS = 30;

t.test(`retired links are deleted during a storm of ${LOOPS} Allocates in flight`, { skip: rootOnly }, async (t) => {
  // Room for every device and the retired links waiting for deletion.
  const node = await makeNode(t, { capacity: 8, indexes: 48 });
  await startServing(t, node);
  let retired = 0;
  let storming = true;
  const samples: number[] = [];
  const sampler = (async () => {
    while (storming) {
      samples.push(pluginLinks(node).filter((l) => l.ifname.startsWith('mvr')).length);
      await sleep(100);
    }
  })();
  const errors: string[] = [];
  // Each loop re-allocates its own two devices back to back, as kubelets of pods that come and go would: every
  // Allocate after the first retires the two links of the previous one.
  const loops = Array.from({ length: LOOPS }, async (_, l) => {
    const ids = [`dataplaneMvp${2 * l}`, `dataplaneMvp${2 * l + 1}`];
    for (let r = 0; r < ROUNDS; r++) {
      try {
        await node.kubelet.allocate(RES, [ids]);
        if (r > 0) retired += 2;
      } catch (err) {
        errors.push(`loop ${l} round ${r}: ${(err as Error).message}`);
      }
    }
  });
  await Promise.all(loops);
  const left = pluginLinks(node).filter((l) => l.ifname.startsWith('mvr')).length;
  storming = false;
  await sampler;
  t.same(errors, [], 'every Allocate answered');
  t.comment(`retired ${retired}, still waiting at the storm's end ${left}, most waiting at once ${Math.max(...samples)}`);
  t.ok(retired - left >= retired / 2, `most retired links were deleted during the storm (${retired - left} of ${retired})`);
  t.ok(Math.max(...samples) < retired / 2, 'they never piled up');
  await waitNoRetired(node);
  t.equal(assertConsistent(t, node, 'after the storm').length, 2 * LOOPS, 'every device recorded once');
});
