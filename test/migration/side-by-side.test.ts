/**
 * Ours next to kubevirt's macvtap-cni, run the same way on two identical nodes (root; upstream's binaries from
 * $MACVTAP_UPSTREAM_DIR or ../shared/upstream, skipped with a message when absent): what the kubelet, Multus and
 * pods see must be the same. Where this project deliberately differs, the test pins both behaviours and the
 * README's migration section lists the difference with its reason.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import t from 'tap';
import { hostLinkName } from '../../lib/naming';
import { PLUGIN } from '../cni/harness';
import { ip, ipLink } from '../support/kernel';
import type { Device } from '../support/kubelet';
import { lockKernelChosenIfindexes, UPSTREAM_CNI, upstreamTempNames } from '../support/upstream';
import { CAPACITY, makeNode, Node, RES, Side, skip, startDevicePlugin } from './node';

const IDS = Array.from({ length: CAPACITY }, (_, i) => `dataplaneMvp${i}`);

interface Observed {
  registration: { version: string; endpoint: string; resourceName: string; options: unknown };
  socketFile: boolean;
  ids: string[];
  /** Link names after allocating every device. */
  linkNames: string[];
  /** The answer to one Allocate of two devices, with each path's ifindex replaced by whether it is the link's. */
  response: unknown;
  /** The allocated link: up, txqueuelen as the lower device's, mode. */
  link: { up: boolean; txqlenOfLower: boolean; mode: string | undefined };
  /** The device list (health per device, or 'empty'/'unchanged') while the lower device exists, is down, is gone. */
  health: { exists: string; down: string; gone: string };
}

function summary(list: Device[] | undefined): string {
  if (!list || list.length === 0) return 'empty';
  const ids = list.map((d) => d.ID).join(',') === IDS.join(',') ? 'every ID' : list.map((d) => d.ID).join(',');
  return `${ids}: ${[...new Set(list.map((d) => d.health))].join('/')}`;
}

/** The device list once it changes after `change()` (or 'unchanged: <the list>' when no new list came in `waitMs`). */
async function after(node: Node, change: () => void, waitMs: number): Promise<string> {
  const before = node.kubelet.updates(RES).length;
  change();
  try {
    await node.kubelet.waitFor(
      'devices',
      () => (node.kubelet.updates(RES).length > before ? true : undefined),
      waitMs,
      'a new device list',
    );
  } catch {
    return `unchanged: ${summary(node.kubelet.devices(RES))}`;
  }
  // Let a burst of lists settle, then take the latest.
  await new Promise((r) => setTimeout(r, 300));
  return summary(node.kubelet.devices(RES));
}

async function observe(t: Parameters<typeof makeNode>[0], side: Side): Promise<Observed> {
  const node = await makeNode(t, { locked: true });
  await startDevicePlugin(t, node, side);
  const registration = node.kubelet.registrations.find((r) => r.resourceName === RES);
  if (!registration) throw new Error(`${side}: no registration`);
  const res = await node.kubelet.allocate(RES, [[IDS[0], IDS[1]]]);
  for (const id of IDS.slice(2)) await node.kubelet.allocate(RES, [[id]]);
  const links = IDS.map((id) => ipLink(node.host, hostLinkName(id)));
  const lower = ipLink(node.host, 'lower0');
  const byIndex = (p: string): string =>
    p.replace(/\d+$/, (n) => (links.some((l) => l?.ifindex === Number(n)) ? '<ifindex of the link>' : n));
  const response = res.containerResponses.map((c) => ({
    ...c,
    devices: c.devices.map((d) => ({ ...d, containerPath: byIndex(d.containerPath), hostPath: byIndex(d.hostPath) })),
  }));
  const health = { exists: summary(node.kubelet.devices(RES)), down: '', gone: '' };
  health.down = await after(node, () => void ip('-n', node.host, 'link', 'set', 'lower0', 'down'), 15000);
  health.gone = await after(node, () => void ip('-n', node.host, 'link', 'del', 'lower0'), 15000);
  return {
    registration: {
      version: registration.version,
      endpoint: registration.endpoint,
      resourceName: registration.resourceName,
      options: registration.options,
    },
    socketFile: fs.existsSync(path.join(node.pluginDir, registration.endpoint)),
    ids: (node.kubelet.updates(RES)[0]?.devices ?? []).map((d) => d.ID),
    linkNames: links.map((l) => l?.ifname ?? 'missing'),
    response,
    link: {
      up: links[0]?.flags.includes('UP') ?? false,
      txqlenOfLower: links[0]?.txqlen === lower?.txqlen,
      mode: links[0]?.linkinfo?.info_data?.mode,
    },
    health,
  };
}

t.test('device plugin: what the kubelet and pods see, ours next to upstream', { skip }, async (t) => {
  await lockKernelChosenIfindexes(t);
  const theirs = await observe(t, 'upstream');
  const ours = await observe(t, 'ours');
  t.same(ours.registration, theirs.registration, 'Register: version, endpoint (socket name), resource name, options');
  t.equal(ours.registration.endpoint, 'macvtap.network.kubevirt.io_dataplane', 'socket name');
  t.ok(ours.socketFile && theirs.socketFile, 'the socket is in the device-plugin directory');
  t.same(ours.ids, theirs.ids, 'device IDs');
  t.same(ours.ids, IDS, '<name>Mvp<i>');
  t.same(ours.linkNames, theirs.linkNames, 'temporary (host) link names');
  t.same(ours.linkNames, upstreamTempNames(IDS), "upstream's TemporaryInterfaceName, computed by its own code");
  t.same(ours.response, theirs.response, 'Allocate answer: DeviceSpec paths and permissions, envs, mounts, annotations');
  t.same(ours.link, theirs.link, 'the allocated macvtap: up, txqueuelen copied from the lower device, mode');
  t.same(ours.health.exists, theirs.health.exists, 'ListAndWatch while the lower device is up');
  t.equal(ours.health.exists, 'every ID: Healthy');
  // Differences kept on purpose (README, migration section): each side pinned.
  t.same(
    { down: ours.health.down, gone: ours.health.gone },
    { down: 'every ID: Unhealthy', gone: 'unchanged: every ID: Unhealthy' },
    'ours: down or gone, every device stays listed, Unhealthy, from link events',
  );
  t.comment(`upstream: lower device down -> ${theirs.health.down}; gone -> ${theirs.health.gone}`);
  t.same({ down: theirs.health.down, gone: theirs.health.gone }, UPSTREAM_HEALTH, "upstream's behaviour, as the README lists it");
});

/** What upstream's ListAndWatch does when the lower device goes down and when it disappears (see the README). */
const UPSTREAM_HEALTH = { down: 'unchanged: every ID: Healthy', gone: 'empty' };

function version(exe: string[], stdin: string): { status: number | null; out: unknown } {
  const r = spawnSync(exe[0], exe.slice(1), { input: stdin, encoding: 'utf8', env: { PATH: process.env.PATH, CNI_COMMAND: 'VERSION' } });
  return { status: r.status, out: JSON.parse(r.stdout) as unknown };
}

t.test('CNI VERSION: ours next to upstream', { skip }, (t) => {
  for (const asked of ['0.3.1', '0.4.0']) {
    const stdin = JSON.stringify({ cniVersion: asked });
    const theirs = version([UPSTREAM_CNI], stdin);
    const ours = version([process.execPath, PLUGIN], stdin);
    t.equal(ours.status, 0, `ours answers VERSION (asked ${asked})`);
    t.equal(theirs.status, 0, `upstream answers VERSION (asked ${asked})`);
    const o = ours.out as { cniVersion: string; supportedVersions: string[] };
    const u = theirs.out as { cniVersion: string; supportedVersions: string[] };
    // Intentional: upstream always answers 0.4.0, ours the version asked (the spec's rule for every answer).
    t.equal(u.cniVersion, '0.4.0', `upstream's answer is always cniVersion 0.4.0 (asked ${asked})`);
    t.equal(o.cniVersion, asked, `ours answers in the version asked (${asked})`);
    // Intentional: ours adds 1.0.0 and 1.1.0 and drops 0.1.0/0.2.0 (README, migration section).
    t.same(
      u.supportedVersions.filter((v) => !o.supportedVersions.includes(v)),
      ['0.1.0', '0.2.0'],
      "of upstream's versions, ours lacks only the pre-0.3.0 ones",
    );
    t.same(
      o.supportedVersions.filter((v) => !u.supportedVersions.includes(v)),
      ['1.0.0', '1.1.0'],
      'and adds 1.0.0 and 1.1.0',
    );
  }
  // Without CNI_COMMAND: upstream prints an "about" line and exits 0; ours answers the spec's error (code 4).
  const bare = (exe: string[]): { status: number | null; stdout: string; stderr: string } =>
    spawnSync(exe[0], exe.slice(1), { input: '', encoding: 'utf8', env: { PATH: process.env.PATH } });
  const theirs = bare([UPSTREAM_CNI]);
  t.same(
    { status: theirs.status, out: theirs.stdout + theirs.stderr.trim() },
    { status: 0, out: 'CNI macvtap plugin version unknown' },
    'upstream, no command: an about line on stderr, exit 0',
  );
  const ours = bare([process.execPath, PLUGIN]);
  t.equal(ours.status, 1, 'ours, no command: exit 1');
  t.match(JSON.parse(ours.stdout), { code: 4, msg: 'CNI_COMMAND is not set' }, 'with the JSON error, code 4');
  t.end();
});
