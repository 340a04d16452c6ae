/**
 * `npm start`: the whole path on one machine, with real packets and no cluster.
 *
 * A throwaway "node" namespace gets a veth NIC (`nic0`) whose other end (`wire0`) sits in a "lan" namespace.
 * The real device plugin runs in the node namespace against the kubelet stand-in the tests use; the stand-in
 * receives the device list and allocates one device for a "pod"; the real CNI executable then moves that
 * macvtap into a "pod" namespace exactly as Multus would call it, under a host configuration with
 * `"ownership": "enforce"`: the stand-in writes the kubelet's device-manager checkpoint as the kubelet does, the
 * CNI checks the pod's device against it, and a device of no pod is refused. Finally the data path is proven as QEMU
 * would use it: a frame written to the pod's /dev/tapN leaves through the NIC, and a frame sent from the LAN
 * to the pod's MAC is read back from /dev/tapN. Everything is torn down at the end, on failure and on Ctrl-C.
 */
import { ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Netns } from '../lib/netlink';
import { hostLinkName } from '../lib/naming';
import { claimIfindexes, ip } from '../test/support/kernel';
import { KubeletCheckpoint } from '../test/support/checkpoint';
import { KubeletStandIn } from '../test/support/kubelet';
import { describeFrame, makeFrame, readFrame } from '../test/support/tap-io';

const ROOT = path.resolve(__dirname, '..', '..');
const CNI_ENTRY = path.join(ROOT, 'dist', 'bin', 'macvtap.js');
const DP_ENTRY = path.join(ROOT, 'dist', 'bin', 'macvtap-deviceplugin.js');
const RESOURCE = 'macvtap.network.kubevirt.io/dataplane';
const POD_MAC = '02:6d:76:74:00:01';
const LAN_MAC = '02:6c:61:6e:00:01';

type Cleanup = () => void | Promise<void>;

/** Undo actions, run last-in first-out; each runs once even if teardown is triggered twice. */
class Teardown {
  private readonly actions: { what: string; fn: Cleanup }[] = [];
  private running: Promise<void> | undefined;

  /** Registers an undo action; once teardown has begun, a late registration runs at once instead. */
  teardown(fn: Cleanup, what = 'cleanup'): void {
    this.actions.push({ what, fn });
    if (this.running) this.running = this.running.then(() => this.drain());
  }

  run(): Promise<void> {
    this.running ??= this.drain();
    return this.running;
  }

  /** Resolves once every registered action, including late ones, has run. */
  async settled(): Promise<void> {
    let seen: Promise<void> | undefined;
    do {
      seen = this.running;
      await seen;
    } while (seen !== this.running);
  }

  private async drain(): Promise<void> {
    while (this.actions.length) {
      const { what, fn } = this.actions.pop() as { what: string; fn: Cleanup };
      try {
        await fn();
      } catch (err) {
        console.error(`  ! cleanup (${what}) failed: ${(err as Error).message}`);
      }
    }
  }
}

let stepNo = 0;
async function step<T>(title: string, fn: () => Promise<T> | T, detail?: (r: T) => string | string[]): Promise<T> {
  stepNo += 1;
  const t0 = process.hrtime.bigint();
  const result = await fn();
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  console.log(`${String(stepNo).padStart(2)}. ${title.padEnd(76)} ${ms.toFixed(1).padStart(8)} ms`);
  const lines = detail ? detail(result) : [];
  for (const line of Array.isArray(lines) ? lines : [lines]) console.log(`      ${line}`);
  return result;
}

interface CniRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

function runCni(nodeNs: string, env: Record<string, string>, config: object): Promise<CniRun> {
  return new Promise((resolve, reject) => {
    const child = spawn('ip', ['netns', 'exec', nodeNs, process.execPath, CNI_ENTRY], {
      env: { PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin', ...env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
    child.stdin.end(JSON.stringify(config));
  });
}

function waitExit(child: ChildProcess, timeoutMs: number): Promise<number | null> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve(child.exitCode);
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
    }, timeoutMs);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve(code);
    });
  });
}

async function main(): Promise<number> {
  if (process.getuid?.() !== 0) {
    console.error('npm start needs root: it creates network namespaces, macvtap links and /dev/tap nodes.');
    return 1;
  }
  for (const entry of [CNI_ENTRY, DP_ENTRY]) {
    if (!fs.existsSync(entry)) {
      console.error(`npm start: ${path.relative(ROOT, entry)} is missing; run \`npm ci\` (or \`npm run build\`) first.`);
      return 1;
    }
  }
  const td = new Teardown();
  let interrupted = false;
  const onSignal = (signal: NodeJS.Signals): void => {
    if (interrupted) return;
    interrupted = true;
    console.error(`\n${signal}: tearing everything down...`);
    void td
      .run()
      .then(() => td.settled())
      .then(() => process.exit(130));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  const id = `${process.pid}`;
  const nodeNs = `mvtdemo-node-${id}`;
  const lanNs = `mvtdemo-lan-${id}`;
  const podNs = `mvtdemo-pod-${id}`;
  const t0 = Date.now();
  console.log('macvtap-cni end-to-end demo: device plugin -> kubelet stand-in -> CNI -> /dev/tapN packets\n');
  try {
    const work = await step(
      'create scratch directories (kubelet plugin dir, state dir)',
      () => {
        const dir = fs.mkdtempSync(path.join(os.tmpdir(), `macvtap-demo-${process.pid}-`));
        td.teardown(() => fs.rmSync(dir, { recursive: true, force: true }), 'scratch dir');
        const pluginDir = path.join(dir, 'device-plugins');
        const stateDir = path.join(dir, 'state');
        fs.mkdirSync(pluginDir);
        return { dir, pluginDir, stateDir };
      },
      (w) => w.dir,
    );

    const indexes = claimIfindexes(td, 8);
    await step(
      `build the "node" (${nodeNs}) with NIC nic0, wired to a "lan" namespace`,
      () => {
        for (const ns of [nodeNs, lanNs]) {
          Netns.create(ns).close();
          td.teardown(() => Netns.remove(ns), `namespace ${ns}`);
        }
        ip('-n', nodeNs, 'link', 'add', 'nic0', 'type', 'veth', 'peer', 'name', 'wire0', 'netns', lanNs);
        ip('-n', nodeNs, 'link', 'set', 'nic0', 'up');
        ip('-n', lanNs, 'link', 'set', 'wire0', 'up');
      },
      () => 'nic0 (node) <-> wire0 (lan), both up',
    );

    const kubelet = await step(
      'start the kubelet stand-in (Registration on kubelet.sock, device-manager checkpoint)',
      async () => {
        const k = await KubeletStandIn.start(work.pluginDir);
        td.teardown(() => k.stop(), 'kubelet stand-in');
        k.checkpoint = new KubeletCheckpoint(work.pluginDir);
        return k;
      },
      (k) => [path.join(work.pluginDir, 'kubelet.sock'), (k.checkpoint as KubeletCheckpoint).path],
    );

    // The node admin's settings for the CNI (the DaemonSet's install step writes the same file next to the
    // executable); the network configuration below carries none of them.
    const hostConfig = { stateDir: work.stateDir, kubeletRoot: work.dir, ownership: 'enforce' };
    const hostConfigFile = await step(
      'write the host configuration (ownership enforced against the checkpoint)',
      () => {
        const file = path.join(work.dir, 'macvtap.conf.json');
        fs.writeFileSync(file, `${JSON.stringify(hostConfig)}\n`, { mode: 0o644 });
        return file;
      },
      (file) => `${file}: ${JSON.stringify(hostConfig)}`,
    );

    const conf = [{ name: 'dataplane', lowerDevice: 'nic0', mode: 'bridge', capacity: 4 }];
    await step(
      'start macvtap-deviceplugin in the node namespace',
      () => {
        const child = spawn(
          'ip',
          [
            'netns',
            'exec',
            nodeNs,
            process.execPath,
            DP_ENTRY,
            '--device-plugin-path',
            work.pluginDir,
            '--state-dir',
            work.stateDir,
            '--ifindex-range',
            `${indexes[0]}-${indexes[indexes.length - 2]}`,
            '--log-level',
            'warn',
          ],
          { env: { ...process.env, DP_MACVTAP_CONF: JSON.stringify(conf) }, stdio: ['ignore', 'inherit', 'inherit'] },
        );
        td.teardown(async () => {
          child.kill('SIGTERM');
          await waitExit(child, 5000);
        }, 'device plugin');
        return child;
      },
      () => `DP_MACVTAP_CONF=${JSON.stringify(conf)}`,
    );

    const registration = await step(
      'kubelet stand-in receives Register',
      () => kubelet.waitForRegistration(RESOURCE, 10000),
      (r) => `resource ${r.resourceName}, endpoint ${r.endpoint}, version ${r.version}`,
    );
    void registration;

    const devices = await step(
      'ListAndWatch delivers the device list',
      () => kubelet.waitForDevices(RESOURCE, (list) => list.length === 4 && list.every((d) => d.health === 'Healthy'), 10000),
      (list) => list.map((d) => `${d.ID}: ${d.health}`).join(', '),
    );

    const deviceID = devices[0].ID;
    const podUID = `0d1e2m3o-${id}`;
    const allocation = await step(
      `Allocate ${deviceID} for the pod`,
      () => kubelet.allocate(RESOURCE, [[deviceID]], { podUID }),
      (r) => [
        ...r.containerResponses[0].devices.map((d) => `DeviceSpec ${d.hostPath} -> ${d.containerPath} (${d.permissions})`),
        `checkpoint: pod ${podUID} holds ${deviceID}`,
      ],
    );
    const tapPath = allocation.containerResponses[0].devices[0].hostPath;
    const hostName = hostLinkName(deviceID);

    await step(`create the pod's network namespace (${podNs})`, () => {
      Netns.create(podNs).close();
      td.teardown(() => Netns.remove(podNs), `namespace ${podNs}`);
    });

    const containerId = `demo${id}`.padEnd(16, '0');
    const cniEnv = {
      CNI_COMMAND: 'ADD',
      CNI_CONTAINERID: containerId,
      CNI_NETNS: `/var/run/netns/${podNs}`,
      CNI_IFNAME: 'net1',
      CNI_PATH: '/opt/cni/bin',
      CNI_ARGS: `IgnoreUnknown=true;K8S_POD_NAMESPACE=default;K8S_POD_NAME=vm-demo;K8S_POD_INFRA_CONTAINER_ID=${containerId};K8S_POD_UID=${podUID};MAC=${POD_MAC}`,
      MACVTAP_CNI_HOST_CONFIG: hostConfigFile,
    };
    const netConf = { cniVersion: '1.0.0', name: 'dataplane', type: 'macvtap', mtu: 1500, deviceID };

    const otherDevice = devices[1].ID;
    await step(
      `CNI ADD of ${otherDevice} (no pod holds it) is refused before anything changes`,
      async () => {
        const r = await runCni(nodeNs, cniEnv, { ...netConf, deviceID: otherDevice });
        const answer = JSON.parse(r.stdout || '{}') as { code?: number; msg?: string };
        if (r.code === 0 || answer.code !== 109) throw new Error(`expected code 109, got exit ${r.code}: ${r.stdout.trim()}`);
        return answer;
      },
      (a) => `code ${a.code}: ${a.msg}`,
    );
    const added = await step(
      'CNI ADD as Multus calls it (deviceID + MAC from the network annotation)',
      async () => {
        const r = await runCni(nodeNs, cniEnv, netConf);
        if (r.code !== 0) throw new Error(`CNI ADD failed (exit ${r.code}): ${r.stdout.trim()} ${r.stderr.trim()}`);
        td.teardown(async () => {
          await runCni(nodeNs, { ...cniEnv, CNI_COMMAND: 'DEL' }, netConf);
        }, 'CNI DEL');
        return JSON.parse(r.stdout) as { interfaces: { name: string; mac: string; sandbox: string }[] };
      },
      (r) => r.interfaces.map((i) => `interface ${i.name} mac ${i.mac} in ${i.sandbox}`),
    );
    void added;

    const podLink = await step(
      'check the pod side with iproute2',
      () => {
        type PodLink = {
          ifindex: number;
          address: string;
          mtu: number;
          flags: string[];
          linkinfo?: { info_kind?: string; info_data: { mode: string } };
        };
        const [link] = JSON.parse(ip('-n', podNs, '-j', '-d', 'link', 'show', 'dev', 'net1')) as PodLink[];
        if (link.address !== POD_MAC || !link.flags.includes('UP') || link.linkinfo?.info_kind !== 'macvtap') {
          throw new Error(`unexpected pod link: ${JSON.stringify(link)}`);
        }
        return link as PodLink & { linkinfo: { info_data: { mode: string } } };
      },
      (l) => `net1 (host name was ${hostName}): ifindex ${l.ifindex}, ${l.address}, mtu ${l.mtu}, mode ${l.linkinfo.info_data.mode}, UP`,
    );

    const probe = await step(
      'attach a probe to the LAN side (passthru macvtap on wire0)',
      () => {
        const lan = Netns.open(`/var/run/netns/${lanNs}`);
        try {
          const link = lan.createMacvtapSync({
            name: 'probe0',
            lower: 'wire0',
            mode: 'passthru',
            index: indexes[indexes.length - 1],
            mac: LAN_MAC,
            up: true,
          });
          td.teardown(() => void ip('-n', lanNs, 'link', 'del', 'probe0'), 'probe link');
          return lan.tapDeviceSync(link.index);
        } finally {
          lan.close();
        }
      },
      (p) => p.path,
    );

    const O = fs.constants;
    const podFd = fs.openSync(tapPath, O.O_RDWR | O.O_NONBLOCK);
    td.teardown(() => fs.closeSync(podFd), 'pod tap fd');
    const lanFd = fs.openSync(probe.path, O.O_RDWR | O.O_NONBLOCK);
    td.teardown(() => fs.closeSync(lanFd), 'probe tap fd');

    await step(
      `pod -> LAN: write a frame to ${tapPath}, see it on wire0`,
      async () => {
        fs.writeSync(podFd, makeFrame(LAN_MAC, POD_MAC, `hello from ${containerId}`));
        const frame = await readFrame(lanFd, `hello from ${containerId}`, 3000);
        if (!frame) throw new Error('the frame written to the pod tap never reached the NIC peer');
        return frame;
      },
      describeFrame,
    );

    await step(
      `LAN -> pod: send a frame to ${POD_MAC}, read it from ${tapPath}`,
      async () => {
        fs.writeSync(lanFd, makeFrame(POD_MAC, LAN_MAC, 'hello pod'));
        const frame = await readFrame(podFd, 'hello pod', 3000);
        if (!frame) throw new Error('the frame sent to the pod MAC never came out of the pod tap');
        return frame;
      },
      describeFrame,
    );
    void podLink;

    await step('CNI DEL, stop the device plugin, tear down namespaces', () => td.run());
    console.log(`\nAll steps passed in ${((Date.now() - t0) / 1000).toFixed(2)} s; nothing left behind.`);
    return 0;
  } catch (err) {
    if (interrupted) return 130;
    console.error(`\nFAILED: ${(err as Error).message}`);
    await td.run();
    return 1;
  }
}

main().then(
  (code) => process.exit(code),
  (err) => {
    console.error(`npm start: ${(err as Error).message}`);
    process.exit(1);
  },
);
