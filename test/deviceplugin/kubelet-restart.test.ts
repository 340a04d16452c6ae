/**
 * Kubelet restarts as the kubelet does them (every socket in the directory deleted, a new kubelet.sock), our
 * own socket deleted alone, a kubelet that starts after the daemon, and a kubelet that refuses at first.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import t from 'tap';
import { makeLowerNetns, rootOnly } from '../support/kernel';
import type { KubeletStandIn } from '../support/kubelet';
import { fdCount, PREFIX, sleep, startDaemon } from './helpers';

const RES = `${PREFIX}/dataplane`;
const env = JSON.stringify([{ name: 'dataplane', lowerDevice: 'lower0', capacity: 3 }]);
const SOCKET = 'macvtap.network.kubevirt.io_dataplane';

/** Waits until the stand-in holds a registration and a 3-device list, and our socket exists. */
async function settled(kubelet: KubeletStandIn, pluginDir: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = kubelet.registrations.some((r) => r.resourceName === RES) && kubelet.devices(RES)?.length === 3 && !kubelet.streamEnded(RES);
    if (ok && fs.existsSync(path.join(pluginDir, SOCKET))) return;
    if (Date.now() > deadline) throw new Error('the daemon did not serve and register again in time');
    await sleep(5);
  }
}

t.test('a kubelet restart is noticed within a second: serve and register again', { skip: rootOnly }, async (t) => {
  const { ns } = makeLowerNetns(t);
  const { daemon, kubelet, pluginDir } = await startDaemon(t, { ns, env });
  await kubelet.waitForDevices(RES, (l) => l.length === 3);

  const fds: number[] = [];
  for (let round = 0; round < 6; round++) {
    const restarted = Date.now();
    await kubelet.restart();
    // The daemon may serve more than once while the restart's events arrive; wait for it to settle.
    await settled(kubelet, pluginDir, 1000);
    t.ok(Date.now() - restarted < 1000, `round ${round}: served and registered again within a second (${Date.now() - restarted} ms)`);
    const reg = await kubelet.waitForRegistration(RES, 1000);
    t.equal(reg.endpoint, SOCKET);
    t.ok(
      kubelet.devices(RES)?.every((d) => d.health === 'Healthy'),
      'the new kubelet gets the device list',
    );
    await sleep(50);
    fds.push(fdCount(daemon.pid));
  }
  t.equal(fds[fds.length - 1], fds[1], `open fds do not grow across restarts (${fds.join(', ')})`);
  t.ok(
    daemon.logs.some((l) => /kubelet restarted|our socket was removed/.test(l.msg)),
    'the restart is logged',
  );
  const streams = daemon.logs.filter((l) => l.msg === 'ListAndWatch opened').map((l) => l.streams);
  t.equal(streams[streams.length - 1], 1, 'only the current kubelet has a stream open');
});

t.test('a restart that only re-creates kubelet.sock ends the old streams and registers again', { skip: rootOnly }, async (t) => {
  const { ns } = makeLowerNetns(t);
  const { kubelet, pluginDir } = await startDaemon(t, { ns, env });
  await kubelet.waitForDevices(RES, (l) => l.length === 3);
  await kubelet.restart({ onlyKubeletSocket: true });
  await kubelet.waitForStreamEnd(RES, 1000);
  t.pass('the stream of the old kubelet was ended');
  await settled(kubelet, pluginDir, 1000);
  t.equal(kubelet.registrations.length, 1, 'registered with the new kubelet');
});

t.test('our socket deleted alone: serve and register again', { skip: rootOnly }, async (t) => {
  const { ns } = makeLowerNetns(t);
  const { kubelet, pluginDir } = await startDaemon(t, { ns, env });
  await kubelet.waitForDevices(RES, (l) => l.length === 3);
  const before = kubelet.registrations.length;
  const removed = Date.now();
  fs.rmSync(path.join(pluginDir, SOCKET));
  await kubelet.waitFor('registration', () => (kubelet.registrations.length > before ? true : undefined), 1000, 'second registration');
  await settled(kubelet, pluginDir, 1000);
  t.ok(Date.now() - removed < 1000, 'within a second');
  t.ok(fs.lstatSync(path.join(pluginDir, SOCKET)).isSocket(), 'socket re-created');
});

t.test('a kubelet that starts after the daemon, and refuses the first registration', { skip: rootOnly }, async (t) => {
  const { ns } = makeLowerNetns(t);
  const { daemon, kubelet, pluginDir } = await startDaemon(t, { ns, env, kubelet: false });
  t.ok(fs.existsSync(path.join(pluginDir, SOCKET)), 'served before any kubelet exists');
  await kubelet.waitForRegistration(RES, 2000);
  t.pass('registered once kubelet.sock appeared');

  kubelet.rejectRegistrations = 'kubelet is not ready';
  await kubelet.restart();
  await daemon.waitForLog((l) => l.msg === 'registration with the kubelet failed; will retry' && /not ready/.test(String(l.err)), 2000);
  kubelet.rejectRegistrations = undefined;
  await kubelet.waitForRegistration(RES, 3000);
  t.pass('registration retried until accepted');
  await kubelet.waitForDevices(RES, (l) => l.length === 3, 1000);
});
