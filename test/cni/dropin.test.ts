// Drop-in with kubevirt's CNI (root only; the upstream binary from ../shared/upstream when present): a device that
// kubevirt's CNI attached has no attachment record, and our DEL returns it to the host under the device plugin's
// name for it (`mvt` + hash), reset, never as `<name>Mvp<i>`; our ADD then takes it again.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import t from 'tap';
import { hostLinkName } from '../../lib/naming';
import { rootOnly } from '../support/kernel';
import { UPSTREAM_CNI } from '../support/upstream';
import { addMacvtap, cni, conf, ipLink, linkOf, makeScene, stateEntries } from './harness';

const upstreamCni = UPSTREAM_CNI;
const skip = rootOnly || (fs.existsSync(upstreamCni) ? false : `no ${upstreamCni}: upstream binaries absent`);

t.test("DEL of a device kubevirt's CNI attached: back as mvt<hash>, reset; ADD takes it again", { skip }, (t) => {
  const s = makeScene(t, { indexes: 1 });
  const idx = s.indexes[0];
  const deviceID = 'dataplaneMvp1';
  const hostName = hostLinkName(deviceID);
  addMacvtap(s, hostName, idx, 'bridge', ['address', '02:00:00:00:0f:01']);
  const lowerMtu = linkOf(s.host, s.lower).mtu;
  const config = { cniVersion: '0.3.1', name: 'dataplane', type: 'macvtap', deviceID, mtu: 1400 };
  const up = spawnSync('ip', ['netns', 'exec', s.host, upstreamCni], {
    input: JSON.stringify(config),
    encoding: 'utf8',
    env: {
      PATH: process.env.PATH,
      CNI_COMMAND: 'ADD',
      CNI_CONTAINERID: 'c0ffee01',
      CNI_NETNS: s.netns,
      CNI_IFNAME: 'net1',
      CNI_PATH: '/usr/lib/cni',
      CNI_ARGS: 'MAC=02:00:00:00:0f:99',
    },
  });
  t.equal(up.status, 0, `kubevirt's ADD (${up.stdout}${up.stderr})`);
  t.equal(linkOf(s.pod, 'net1').ifindex, idx, 'attached by kubevirt');
  t.equal(linkOf(s.pod, 'net1').address, '02:00:00:00:0f:99', 'with the pod MAC');

  const del = cni(s, { command: 'DEL', config: conf(s, { deviceID }) });
  t.equal(del.status, 0, `our DEL (${del.json?.msg ?? 'ok'})`);
  const back = linkOf(s.host, hostName);
  t.equal(back.ifindex, idx, `back on the host as ${hostName}`);
  t.notOk(ipLink(s.host, deviceID), `never as ${deviceID}`);
  t.not(back.address, '02:00:00:00:0f:99', "reset: not the pod's MAC");
  t.match(back.address, /^[0-9a-f][26ae](:[0-9a-f]{2}){5}$/, 'reset: a random locally administered unicast MAC');
  t.equal(back.mtu, lowerMtu, "reset: the lower device's MTU");
  t.notOk(back.flags.includes('UP'), 'reset: down');
  t.notOk(ipLink(s.pod, 'net1'), 'gone from the pod');
  t.same(stateEntries(s, 'attachments'), [], 'no record was invented');

  const add = cni(s, { command: 'ADD', config: conf(s, { deviceID }) });
  t.equal(add.status, 0, `our ADD takes it again (${add.json?.msg ?? 'ok'})`);
  t.equal(cni(s, { command: 'DEL', config: conf(s, { deviceID }) }).status, 0, 'and our DEL returns it');
  t.equal(ipLink(s.host, hostName)?.ifindex, idx, `on the host as ${hostName}`);
  t.end();
});
