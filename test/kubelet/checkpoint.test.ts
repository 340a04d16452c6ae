// The kubelet's device-manager checkpoint: reading it (lib/kubelet) and writing it as the kubelet does
// (test/support/checkpoint.ts), checked against checkpoints published from real nodes.
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import t from 'tap';
import {
  assignedDevices,
  CheckpointError,
  checkpointPath,
  holdersOf,
  parseCheckpoint,
  readCheckpoint,
  type CheckpointProblem,
} from '../../lib/kubelet';
import {
  CheckpointData,
  encodeContainerAllocateResponse,
  KubeletCheckpoint,
  kubeletChecksum,
  renderCheckpoint,
  writeLikeKubelet,
} from '../support/checkpoint';
import { isRoot } from '../support/kernel';

/**
 * `cat /var/lib/kubelet/device-plugins/kubelet_internal_checkpoint` as published from real nodes (NVIDIA device
 * plugin: one with no pods, one with a device without topology, one with two pods on NUMA nodes 0 and 1).
 */
const REAL = [
  '{"Data":{"PodDeviceEntries":null,"RegisteredDevices":{"nvidia.com/gpu":["GPU-0650a168-e770-3ea8-8ac3-8a1d419763e0"]}},"Checksum":3952659280}',
  '{"Data":{"PodDeviceEntries":[{"PodUID":"bf52b2cd-b611-4e79-86b1-280b283185c3","ContainerName":"check","ResourceName":"nvidia.com/gpu","DeviceIDs":{"-1":["tegra"]},"AllocResp":"Ch8KFk5WSURJQV9WSVNJQkxFX0RFVklDRVMSBXRlZ3Jh"}],"RegisteredDevices":{"nvidia.com/gpu":["tegra"]}},"Checksum":3660592824}',
  '{"Data":{"PodDeviceEntries":[{"PodUID":"513cb897-0262-4868-826f-aa943ee45a38","ContainerName":"app","ResourceName":"nvidia.com/gpu","DeviceIDs":{"0":["GPU-77a702db-e37f-3a74-d46d-c5713f66058c"]},"AllocResp":"CkIKFk5WSURJQV9WSVNJQkxFX0RFVklDRVMSKEdQVS03N2E3MDJkYi1lMzdmLTNhNzQtZDQ2ZC1jNTcxM2Y2NjA1OGMaJAoOL2Rldi9udmlkaWFjdGwSDi9kZXYvbnZpZGlhY3RsGgJydxomCg8vZGV2L252aWRpYS11dm0SDy9kZXYvbnZpZGlhLXV2bRoCcncaMgoVL2Rldi9udmlkaWEtdXZtLXRvb2xzEhUvZGV2L252aWRpYS11dm0tdG9vbHMaAnJ3Gi4KEy9kZXYvbnZpZGlhLW1vZGVzZXQSEy9kZXYvbnZpZGlhLW1vZGVzZXQaAnJ3GiAKDC9kZXYvbnZpZGlhMBIML2Rldi9udmlkaWEwGgJydw=="},{"PodUID":"94283d1b-ce5a-4797-bff8-0cf0c7143b2b","ContainerName":"app","ResourceName":"nvidia.com/gpu","DeviceIDs":{"1":["GPU-c1e9f249-b37b-81c2-a8d9-ba5ca0294841","GPU-9b341c59-f96b-ba85-c137-78c3652fea65"]},"AllocResp":"CmsKFk5WSURJQV9WSVNJQkxFX0RFVklDRVMSUUdQVS1jMWU5ZjI0OS1iMzdiLTgxYzItYThkOS1iYTVjYTAyOTQ4NDEsR1BVLTliMzQxYzU5LWY5NmItYmE4NS1jMTM3LTc4YzM2NTJmZWE2NRokCg4vZGV2L252aWRpYWN0bBIOL2Rldi9udmlkaWFjdGwaAnJ3GiYKDy9kZXYvbnZpZGlhLXV2bRIPL2Rldi9udmlkaWEtdXZtGgJydxoyChUvZGV2L252aWRpYS11dm0tdG9vbHMSFS9kZXYvbnZpZGlhLXV2bS10b29scxoCcncaLgoTL2Rldi9udmlkaWEtbW9kZXNldBITL2Rldi9udmlkaWEtbW9kZXNldBoCcncaIAoML2Rldi9udmlkaWExEgwvZGV2L252aWRpYTEaAnJ3GiAKDC9kZXYvbnZpZGlhMhIML2Rldi9udmlkaWEyGgJydw=="}],"RegisteredDevices":{"nvidia.com/gpu":["GPU-77a702db-e37f-3a74-d46d-c5713f66058c","GPU-9b341c59-f96b-ba85-c137-78c3652fea65","GPU-c1e9f249-b37b-81c2-a8d9-ba5ca0294841"]}},"Checksum":2442330366}',
];

interface RawEntry {
  PodUID: string;
  ContainerName: string;
  ResourceName: string;
  DeviceIDs: Record<string, string[]>;
  AllocResp: string | null;
}
interface RawCheckpoint {
  Data: { PodDeviceEntries: RawEntry[] | null; RegisteredDevices: Record<string, string[]> | null };
  Checksum: number;
}

/** The real file as the stand-in's data model, read independently of lib/kubelet. */
function asData(text: string): CheckpointData {
  const doc = JSON.parse(text) as RawCheckpoint;
  return {
    entries: doc.Data.PodDeviceEntries?.map((e) => ({
      podUID: e.PodUID,
      containerName: e.ContainerName,
      resourceName: e.ResourceName,
      deviceIDs: new Map(Object.entries(e.DeviceIDs).map(([k, v]) => [Number(k), v])),
      allocResp: e.AllocResp === null ? undefined : Buffer.from(e.AllocResp, 'base64'),
    })),
    registered: doc.Data.RegisteredDevices ? new Map(Object.entries(doc.Data.RegisteredDevices)) : undefined,
  };
}

function scratch(t: { teardown(fn: () => void): void }): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mvt-kubelet-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  fs.mkdirSync(path.join(dir, 'device-plugins'), { mode: 0o755 });
  return dir;
}

function problemOf(fn: () => unknown): { problem: CheckpointProblem; message: string } | undefined {
  try {
    fn();
  } catch (err) {
    if (err instanceof CheckpointError) return { problem: err.problem, message: err.message };
    throw err;
  }
  return undefined;
}

t.test("the stand-in computes the kubelet's checksum and bytes of real checkpoints", (t) => {
  for (const text of REAL) {
    const data = asData(text);
    t.equal(kubeletChecksum(data), (JSON.parse(text) as RawCheckpoint).Checksum, 'checksum as the kubelet computed it');
    t.equal(renderCheckpoint(data), text, 'byte for byte what the kubelet wrote');
  }
  t.end();
});

t.test('the stand-in encodes AllocResp as the kubelet stores it', (t) => {
  // The real response in REAL[1]: envs {NVIDIA_VISIBLE_DEVICES: tegra}.
  const bytes = encodeContainerAllocateResponse({
    envs: { NVIDIA_VISIBLE_DEVICES: 'tegra' },
    mounts: [],
    devices: [],
    annotations: {},
    cdiDevices: [],
  });
  t.equal(bytes.toString('base64'), 'Ch8KFk5WSURJQV9WSVNJQkxFX0RFVklDRVMSBXRlZ3Jh');
  // DeviceSpec /dev/tap7 (field 3 {1: container path, 2: host path, 3: permissions}).
  const tap = encodeContainerAllocateResponse({
    envs: {},
    mounts: [],
    devices: [{ containerPath: '/dev/tap7', hostPath: '/dev/tap7', permissions: 'rw' }],
    annotations: {},
    cdiDevices: [],
  });
  t.equal(tap.toString('hex'), Buffer.from('1a1a0a092f6465762f746170371209' + '2f6465762f74617037' + '1a027277', 'hex').toString('hex'));
  t.end();
});

t.test('real checkpoints parse', (t) => {
  const empty = parseCheckpoint(REAL[0]);
  t.same(empty.entries, []);
  t.same([...empty.registeredDevices], [['nvidia.com/gpu', ['GPU-0650a168-e770-3ea8-8ac3-8a1d419763e0']]]);
  t.equal(empty.checksum, 3952659280);
  t.equal(empty.format, 'v2');
  const two = parseCheckpoint(REAL[2]);
  t.same(
    two.entries.map((e) => [e.podUID, e.containerName, e.resourceName, e.deviceIDs]),
    [
      ['513cb897-0262-4868-826f-aa943ee45a38', 'app', 'nvidia.com/gpu', ['GPU-77a702db-e37f-3a74-d46d-c5713f66058c']],
      [
        '94283d1b-ce5a-4797-bff8-0cf0c7143b2b',
        'app',
        'nvidia.com/gpu',
        ['GPU-c1e9f249-b37b-81c2-a8d9-ba5ca0294841', 'GPU-9b341c59-f96b-ba85-c137-78c3652fea65'],
      ],
    ],
  );
  t.same(holdersOf(two, 'GPU-77a702db-e37f-3a74-d46d-c5713f66058c'), [], 'only macvtap resources count by default');
  t.equal(holdersOf(two, 'GPU-77a702db-e37f-3a74-d46d-c5713f66058c', 'nvidia.com/').length, 1);
  t.end();
});

t.test('the 1.19 format (DeviceIDs a plain list) and BootID', (t) => {
  const cp = new KubeletCheckpoint('/nonexistent', { format: 'v1' });
  cp.assign('pod-a', 'compute', 'macvtap.network.kubevirt.io/dataplane', ['dataplaneMvp0', 'dataplaneMvp1']);
  const text = cp.render();
  t.match(text, /"DeviceIDs":\["dataplaneMvp0","dataplaneMvp1"\]/);
  const parsed = parseCheckpoint(text);
  t.equal(parsed.format, 'v1');
  t.same(parsed.entries[0].deviceIDs, ['dataplaneMvp0', 'dataplaneMvp1']);
  t.equal(holdersOf(parsed, 'dataplaneMvp1')[0]?.podUID, 'pod-a');
  const withBoot = parseCheckpoint(renderCheckpoint({ entries: [], registered: new Map() }, { bootID: 'b00t' }));
  t.equal(withBoot.bootID, 'b00t');
  t.end();
});

t.test('holdersOf and assignedDevices', (t) => {
  const cp = new KubeletCheckpoint('/nonexistent');
  cp.assign('pod-a', 'compute', 'macvtap.network.kubevirt.io/dataplane', ['dataplaneMvp0']);
  cp.assign('pod-b', 'compute', 'macvtap.network.kubevirt.io/dataplane', ['dataplaneMvp1', 'dataplaneMvp2']);
  cp.assign('pod-b', 'sidecar', 'macvtap.network.kubevirt.io/dataplane', ['dataplaneMvp2']);
  cp.assign('pod-c', 'compute', 'example.com/macvtap.network.kubevirt.io/x', ['dataplaneMvp3']);
  cp.assign('pod-d', 'compute', 'macvtap.network.kubevirt.io/', ['dataplaneMvp4']);
  const parsed = parseCheckpoint(cp.render());
  t.same(
    holdersOf(parsed, 'dataplaneMvp2').map((e) => `${e.podUID}/${e.containerName}`),
    ['pod-b/compute', 'pod-b/sidecar'],
  );
  t.same(holdersOf(parsed, 'dataplaneMvp3'), [], 'a resource merely containing the prefix does not count');
  t.same(holdersOf(parsed, 'dataplaneMvp4'), [], 'the bare prefix is not a resource');
  t.same(
    [...assignedDevices(parsed, 'macvtap.network.kubevirt.io/dataplane')],
    [
      ['dataplaneMvp0', ['pod-a']],
      ['dataplaneMvp1', ['pod-b']],
      ['dataplaneMvp2', ['pod-b']],
    ],
  );
  cp.removePod('pod-b');
  t.same(
    parseCheckpoint(cp.render()).entries.map((e) => e.podUID),
    ['pod-a', 'pod-c', 'pod-d'],
  );
  t.end();
});

/** Documents that are JSON but not a checkpoint, and the field the message must name. */
const CORRUPT: [string, string, RegExp][] = [
  ['not JSON', '{"Data":', /not JSON/],
  ['empty', '', /not JSON/],
  ['an array', '[]', /document is an array/],
  ['Data missing', '{"Checksum":1}', /Data is missing/],
  ['Data a string', '{"Data":"x","Checksum":1}', /Data is string "x"/],
  ['Checksum missing', '{"Data":{}}', /Checksum is missing/],
  ['Checksum a string', '{"Data":{},"Checksum":"1"}', /Checksum is string "1"/],
  ['Checksum negative', '{"Data":{},"Checksum":-1}', /Checksum is number -1/],
  ['Checksum fractional', '{"Data":{},"Checksum":1.5}', /Checksum is number 1.5/],
  ['BootID a number', '{"Data":{},"Checksum":1,"BootID":3}', /BootID is number 3/],
  ['entries an object', '{"Data":{"PodDeviceEntries":{}},"Checksum":1}', /Data.PodDeviceEntries is an object/],
  ['entry a string', '{"Data":{"PodDeviceEntries":["x"]},"Checksum":1}', /PodDeviceEntries\[0\] is string "x"/],
  [
    'PodUID missing',
    '{"Data":{"PodDeviceEntries":[{"ContainerName":"c","ResourceName":"r","DeviceIDs":{}}]},"Checksum":1}',
    /PodDeviceEntries\[0\].PodUID is missing/,
  ],
  [
    'PodUID empty',
    '{"Data":{"PodDeviceEntries":[{"PodUID":"","ContainerName":"c","ResourceName":"r","DeviceIDs":{}}]},"Checksum":1}',
    /PodUID is empty/,
  ],
  [
    'PodUID a number',
    '{"Data":{"PodDeviceEntries":[{"PodUID":7,"ContainerName":"c","ResourceName":"r","DeviceIDs":{}}]},"Checksum":1}',
    /PodUID is number 7/,
  ],
  [
    'ResourceName missing',
    '{"Data":{"PodDeviceEntries":[{"PodUID":"p","ContainerName":"c","DeviceIDs":{}}]},"Checksum":1}',
    /ResourceName is missing/,
  ],
  [
    'DeviceIDs missing',
    '{"Data":{"PodDeviceEntries":[{"PodUID":"p","ContainerName":"c","ResourceName":"r"}]},"Checksum":1}',
    /DeviceIDs is missing/,
  ],
  [
    'DeviceIDs a string',
    '{"Data":{"PodDeviceEntries":[{"PodUID":"p","ContainerName":"c","ResourceName":"r","DeviceIDs":"d"}]},"Checksum":1}',
    /DeviceIDs is string "d"/,
  ],
  [
    'NUMA key not a number',
    '{"Data":{"PodDeviceEntries":[{"PodUID":"p","ContainerName":"c","ResourceName":"r","DeviceIDs":{"x":["d"]}}]},"Checksum":1}',
    /DeviceIDs has key "x"/,
  ],
  [
    'device ID a number',
    '{"Data":{"PodDeviceEntries":[{"PodUID":"p","ContainerName":"c","ResourceName":"r","DeviceIDs":{"-1":[5]}}]},"Checksum":1}',
    /DeviceIDs\["-1"\]\[0\] is number 5/,
  ],
  [
    'NUMA list an object',
    '{"Data":{"PodDeviceEntries":[{"PodUID":"p","ContainerName":"c","ResourceName":"r","DeviceIDs":{"-1":{}}}]},"Checksum":1}',
    /DeviceIDs\["-1"\] is an object/,
  ],
  [
    'v1 device ID a number',
    '{"Data":{"PodDeviceEntries":[{"PodUID":"p","ContainerName":"c","ResourceName":"r","DeviceIDs":[1]}]},"Checksum":1}',
    /DeviceIDs\[0\] is number 1/,
  ],
  [
    'mixed formats',
    '{"Data":{"PodDeviceEntries":[{"PodUID":"p","ContainerName":"c","ResourceName":"r","DeviceIDs":["a"]},{"PodUID":"q","ContainerName":"c","ResourceName":"r","DeviceIDs":{"-1":["b"]}}]},"Checksum":1}',
    /mix/,
  ],
  [
    'AllocResp a number',
    '{"Data":{"PodDeviceEntries":[{"PodUID":"p","ContainerName":"c","ResourceName":"r","DeviceIDs":{},"AllocResp":1}]},"Checksum":1}',
    /AllocResp is number 1/,
  ],
  ['RegisteredDevices a list', '{"Data":{"RegisteredDevices":[]},"Checksum":1}', /RegisteredDevices is an array/],
  ['registered list a string', '{"Data":{"RegisteredDevices":{"r":"d"}},"Checksum":1}', /RegisteredDevices\["r"\] is string "d"/],
];

t.test('corrupt checkpoints: each names the bad field', (t) => {
  for (const [name, text, message] of CORRUPT) {
    const got = problemOf(() => parseCheckpoint(text, '/k/cp'));
    t.equal(got?.problem, 'corrupt', `${name}: corrupt`);
    t.match(got?.message, /^kubelet checkpoint \/k\/cp is corrupt: /, `${name}: names the file`);
    t.match(got?.message, message, `${name}: ${String(message)}`);
  }
  t.end();
});

t.test('a checkpoint written as the kubelet writes it reads back', (t) => {
  const root = scratch(t);
  const cp = new KubeletCheckpoint(path.join(root, 'device-plugins'));
  cp.assign('uid-1', 'compute', 'macvtap.network.kubevirt.io/dataplane', ['dataplaneMvp0'], Buffer.from('x'));
  cp.registered.set('macvtap.network.kubevirt.io/dataplane', ['dataplaneMvp0', 'dataplaneMvp1']);
  cp.write();
  const file = checkpointPath(root);
  t.equal(cp.path, file);
  t.equal(fs.statSync(file).mode & 0o777, 0o600, 'mode 0600, as os.CreateTemp makes it');
  t.same(fs.readdirSync(path.dirname(file)), ['kubelet_internal_checkpoint'], 'no temp file left');
  const read = readCheckpoint(file);
  t.same(read.entries, [
    { podUID: 'uid-1', containerName: 'compute', resourceName: 'macvtap.network.kubevirt.io/dataplane', deviceIDs: ['dataplaneMvp0'] },
  ]);
  t.same(read.registeredDevices.get('macvtap.network.kubevirt.io/dataplane'), ['dataplaneMvp0', 'dataplaneMvp1']);
  t.match(fs.readFileSync(file, 'utf8'), /"DeviceIDs":\{"-1":\["dataplaneMvp0"\]\}/, 'the -1 NUMA key');
  t.end();
});

t.test('reading refuses missing, unsafe and oversized files', (t) => {
  const root = scratch(t);
  const dir = path.join(root, 'device-plugins');
  const file = checkpointPath(root);
  const valid = renderCheckpoint({ entries: [], registered: new Map() });

  t.equal(problemOf(() => readCheckpoint(file))?.problem, 'missing', 'no file');
  t.match(problemOf(() => readCheckpoint(file))?.message, `kubelet checkpoint ${file} does not exist`);
  t.equal(problemOf(() => readCheckpoint(checkpointPath(path.join(root, 'nope'))))?.problem, 'missing', 'no directory');

  fs.symlinkSync(path.join(root, 'elsewhere'), file);
  fs.writeFileSync(path.join(root, 'elsewhere'), valid);
  t.match(
    problemOf(() => readCheckpoint(file)),
    { problem: 'unsafe', message: /is a symlink/ },
    'a symlink is not followed',
  );
  fs.rmSync(file);

  execFileSync('mkfifo', [file]);
  t.match(
    problemOf(() => readCheckpoint(file)),
    { problem: 'unsafe', message: /is a FIFO/ },
    'a FIFO: refused without blocking',
  );
  fs.rmSync(file);

  fs.mkdirSync(file);
  t.match(
    problemOf(() => readCheckpoint(file)),
    { problem: 'unsafe', message: /is a directory/ },
  );
  fs.rmdirSync(file);

  writeLikeKubelet(dir, 'kubelet_internal_checkpoint', valid);
  t.equal(readCheckpoint(file).entries.length, 0, 'the same file, written properly, reads');
  fs.chmodSync(file, 0o666);
  t.match(
    problemOf(() => readCheckpoint(file)),
    { problem: 'unsafe', message: /writable by everyone \(mode 666\)/ },
  );
  fs.chmodSync(file, 0o620);
  t.match(
    problemOf(() => readCheckpoint(file)),
    { problem: 'unsafe', message: /writable by its group/ },
  );
  fs.chmodSync(file, 0o600);
  fs.chmodSync(dir, 0o777);
  t.match(
    problemOf(() => readCheckpoint(file)),
    { problem: 'unsafe', message: /directory .* writable by everyone/ },
  );
  fs.chmodSync(dir, 0o755);
  if (isRoot) {
    fs.chownSync(file, 65534, 65534);
    t.match(
      problemOf(() => readCheckpoint(file)),
      { problem: 'unsafe', message: /owned by uid 65534, not root/ },
    );
    fs.chownSync(file, 0, 0);
  }

  writeLikeKubelet(dir, 'kubelet_internal_checkpoint', Buffer.from([0x7b, 0xff, 0x7d]));
  t.match(
    problemOf(() => readCheckpoint(file)),
    { problem: 'corrupt', message: /not UTF-8/ },
  );
  writeLikeKubelet(dir, 'kubelet_internal_checkpoint', `${valid}${' '.repeat(100)}`);
  t.match(
    problemOf(() => readCheckpoint(file, 64)),
    { problem: 'corrupt', message: /above the 64-byte limit/ },
  );
  t.equal(readCheckpoint(file).entries.length, 0, 'trailing whitespace is still JSON');
  t.end();
});
