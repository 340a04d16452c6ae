// Concurrency of the CNI plugin (root only): 50 ADD/DEL pairs on distinct devices at once leave nothing behind,
// and racing ADDs for one device are serialized by its lock: exactly one wins, the others fail cleanly.
import * as fs from 'node:fs';
import * as path from 'node:path';
import t from 'tap';
import { claimIfindexes, ipLinkNames, makeNetns, rootOnly } from '../support/kernel';
import { addMacvtap, cni, cniAsync, conf, ipLink, makeScene, nodeDev, snapshot, sysfsDev, writeAllocation } from './harness';

t.test('50 parallel ADD/DEL pairs on distinct devices, nothing leaked', { skip: rootOnly }, async (t) => {
  const s = makeScene(t, { indexes: 16 });
  const indexes = [...s.indexes, ...claimIfindexes(t, 16), ...claimIfindexes(t, 16), ...claimIfindexes(t, 2)];
  const devices = indexes.map((index, i) => {
    const name = `mvtpar${i}`;
    // Half by link name, half through the device plugin's allocation record.
    if (i % 2) {
      const linkName = writeAllocation(s, { deviceID: `parallelMvp${i}`, ifindex: index }).linkName;
      addMacvtap(s, linkName, index);
      return { deviceID: `parallelMvp${i}`, name: linkName, index };
    }
    addMacvtap(s, name, index);
    return { deviceID: name, name, index };
  });
  const pods = devices.map(() => makeNetns(t, 'mvcq'));
  const hostBefore = snapshot(s.host);

  const pair = async (i: number): Promise<void> => {
    const d = devices[i];
    const call = {
      config: conf(s, { deviceID: d.deviceID, mac: `02:00:00:00:06:${i.toString(16).padStart(2, '0')}`, mtu: 1400 }),
      containerId: `par${i}`,
      netns: `/var/run/netns/${pods[i]}`,
    };
    const add = await cniAsync(s, { command: 'ADD', ...call });
    t.equal(add.status, 0, `pair ${i}: ADD (${add.stdout}${add.stderr})`);
    t.equal(add.json?.interfaces?.[0]?.mac, call.config.mac, `pair ${i}: result`);
    const o = ipLink(pods[i], 'net1');
    t.equal(o?.ifindex, d.index, `pair ${i}: its own device in its own pod`);
    t.equal(nodeDev(d.index), sysfsDev(pods[i], 'net1', d.index), `pair ${i}: /dev/tap${d.index} is its device`);
    const del = await cniAsync(s, { command: 'DEL', ...call });
    t.equal(del.status, 0, `pair ${i}: DEL`);
  };
  await Promise.all(devices.map((_, i) => pair(i)));

  t.equal(snapshot(s.host), hostBefore, 'every device back in the host exactly as before');
  t.same(
    pods.filter((p) => ipLinkNames(p).join() !== 'lo'),
    [],
    'every pod namespace is empty again',
  );
  const leftovers = ['attachments', 'locks'].flatMap((d) =>
    fs.existsSync(path.join(s.stateDir, d)) ? fs.readdirSync(path.join(s.stateDir, d)) : [],
  );
  t.same(leftovers, [], 'no attachment record, lock, marker or temp file left');
});

t.test('racing ADDs for one device: one wins, the rest fail cleanly (code 11)', { skip: rootOnly }, async (t) => {
  const s = makeScene(t, { indexes: 1 });
  const idx = s.indexes[0];
  const linkName = writeAllocation(s, { deviceID: 'raceMvp0', ifindex: idx }).linkName;
  addMacvtap(s, linkName, idx);
  const pods = Array.from({ length: 6 }, () => makeNetns(t, 'mvcr'));
  const config = conf(s, { deviceID: 'raceMvp0' });
  const results = await Promise.all(
    pods.map((p, i) => cniAsync(s, { command: 'ADD', config, containerId: `race${i}`, netns: `/var/run/netns/${p}` })),
  );
  const winners = results.map((r, i) => (r.status === 0 ? i : -1)).filter((i) => i >= 0);
  t.equal(winners.length, 1, 'exactly one ADD got the device');
  for (const [i, r] of results.entries()) {
    if (r.status !== 0) t.equal(r.json?.code, 11, `loser ${i}: code 11 (${r.json?.msg})`);
  }
  const w = winners[0];
  t.same(
    pods.map((p) => ipLinkNames(p).join()),
    pods.map((_, i) => (i === w ? 'lo,net1' : 'lo')),
    'only the winner has the interface',
  );
  t.notOk(ipLink(s.host, linkName), 'not in the host');
  t.equal(cni(s, { command: 'DEL', config, containerId: `race${w}`, netns: `/var/run/netns/${pods[w]}` }).status, 0);
  t.equal(ipLink(s.host, linkName)?.ifindex, idx, 'back in the host after the DEL');
});
