/**
 * deploy/: the kustomize base and the example overlay render with kustomize (kubectl's), every object is a
 * valid Kubernetes object (kubernetes-models' schema validators, plus a TypeScript check of each object
 * against the API types so that a misspelt field is an error too, as the API server's strict field
 * validation makes it), the DaemonSet has what the device plugin and the CNI plugin need, and the examples
 * agree with each other and with the programs' own configuration parsers.
 */
import t from 'tap';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parseConfig, socketName } from '../../lib/deviceplugin/config';
import { RESOURCE_PREFIX, resourceName } from '../../lib/naming';
import { DEFAULT_STATE_DIR } from '../../lib/state';
import { parseUnicastMac } from '../../lib/netlink';
import { decodeConfig, readConfig, readEnvironment } from '../../lib/cni/config';
import {
  byName,
  type Container,
  DEPLOY,
  findKind,
  kustomize,
  keyOf,
  type Mount,
  NAD_KEY,
  networkSelection,
  noKubectl,
  readExample,
  schemaProblems,
  typeProblems,
  VERSION,
  type Volume,
  EXAMPLES,
} from './manifests';

t.test('the base renders to a namespace, the default ConfigMap and the DaemonSet, all valid', { skip: noKubectl }, async (t) => {
  const objects = kustomize(DEPLOY);
  t.same(objects.map(keyOf).sort(), ['apps/v1/DaemonSet', 'v1/ConfigMap', 'v1/Namespace']);
  for (const obj of objects) t.equal(await schemaProblems(obj), '', `${obj.kind} ${obj.metadata.name} passes the API schema`);
  t.same(typeProblems(objects), [], 'no unknown or mistyped field in any object');

  const ns = findKind(objects, 'Namespace').metadata.name;
  t.equal(ns, 'macvtap-cni');
  t.equal(
    findKind(objects, 'Namespace').metadata.labels?.['pod-security.kubernetes.io/enforce'],
    'privileged',
    'Pod Security Admission lets the privileged pods in',
  );
  for (const obj of objects.filter((o) => o.kind !== 'Namespace')) t.equal(obj.metadata.namespace, ns, `${obj.kind} is in ${ns}`);

  const cm = findKind(objects, 'ConfigMap');
  t.same(Object.keys(cm.data), ['DP_MACVTAP_CONF']);
  t.equal(cm.data.DP_MACVTAP_CONF, '[]');
  t.same(
    parseConfig(cm.data.DP_MACVTAP_CONF, 'DP_MACVTAP_CONF'),
    { discover: true, resources: [] },
    'the device plugin reads it as discovery',
  );
});

t.test('the DaemonSet runs the device plugin and installs the CNI plugin as issue 5 asks', { skip: noKubectl }, (t) => {
  const objects = kustomize(DEPLOY);
  const ds = findKind(objects, 'DaemonSet');
  const cm = findKind(objects, 'ConfigMap');
  const pod = ds.spec.template.spec;
  t.equal(pod.hostNetwork, true);
  t.equal(pod.hostPID, true);
  t.equal(pod.priorityClassName, 'system-node-critical');
  t.same(
    ds.spec.selector.matchLabels,
    pick(ds.spec.template.metadata.labels ?? {}, Object.keys(ds.spec.selector.matchLabels)),
    'selector matches the template',
  );

  t.equal(pod.initContainers.length, 1);
  t.equal(pod.containers.length, 1);
  const init = pod.initContainers[0];
  const main = pod.containers[0];
  for (const c of [init, main]) {
    t.equal(c.securityContext?.privileged, true, `${c.name} is privileged`);
    t.equal(c.image, `macvtap-cni:${VERSION}`, `${c.name} runs the project image of this version`);
    t.equal(c.imagePullPolicy, 'IfNotPresent');
    t.ok(c.resources?.requests?.cpu && c.resources?.requests?.memory, `${c.name} requests cpu and memory`);
  }

  const volume = (name: string): Volume => {
    const v = byName(pod.volumes, name);
    if (!v) throw new Error(`no volume ${name}`);
    return v;
  };
  const mountOf = (c: Container, name: string | undefined): Mount | undefined =>
    name === undefined ? undefined : byName(c.volumeMounts, name);
  const hostPathMountedAt = (c: Container, hostPath: string): string | undefined => {
    const v = pod.volumes.find((vol) => vol.hostPath?.path === hostPath);
    return v && mountOf(c, v.name)?.mountPath;
  };

  // The init container: deploy/install-cni.sh (test/deploy/install.test.ts runs it) checks the executable
  // against the node's root, mounted read-only, then writes it into the host's /opt/cni/bin by rename.
  const cniMount = hostPathMountedAt(init, '/opt/cni/bin');
  t.ok(cniMount, 'the host CNI bin directory is mounted in the init container');
  t.same(init.command, ['/usr/local/bin/install-cni', '/usr/local/bin/macvtap', cniMount], 'install-cni SOURCE BIN_DIR');
  t.ok(mountOf(init, 'cni-bin'), 'the init container mounts cni-bin');
  t.equal(volume('cni-bin').hostPath?.type, 'DirectoryOrCreate');
  const hostRoot = mountOf(init, pod.volumes.find((v) => v.hostPath?.path === '/')?.name);
  const installScript = fs.readFileSync(path.join(DEPLOY, 'install-cni.sh'), 'utf8');
  t.equal(
    hostRoot?.mountPath,
    /host_root=\$\{MACVTAP_HOST_ROOT:-(\S+)\}/.exec(installScript)?.[1],
    "the node's root is where install-cni looks",
  );
  t.equal(hostRoot?.readOnly, true, 'and only read');
  t.notOk(byName(main.volumeMounts, 'host-root'), "the device plugin does not see the node's root");

  // The device plugin.
  t.equal(main.command[0], '/usr/local/bin/macvtap-deviceplugin');
  const configArg = main.command[main.command.indexOf('--config') + 1];
  const configVolume = volume(pod.volumes.find((v) => v.configMap)?.name ?? 'a configMap volume');
  t.equal(configVolume.configMap?.name, cm.metadata.name, 'the config volume is the ConfigMap');
  t.equal(
    configArg,
    path.posix.join(mountOf(main, configVolume.name)?.mountPath ?? '(config volume not mounted)', 'DP_MACVTAP_CONF'),
    '--config names its DP_MACVTAP_CONF key',
  );
  t.equal(hostPathMountedAt(main, '/var/lib/kubelet/device-plugins'), '/var/lib/kubelet/device-plugins');
  t.equal(
    hostPathMountedAt(main, DEFAULT_STATE_DIR),
    DEFAULT_STATE_DIR,
    'allocation records land where the CNI plugin on the host reads them',
  );
  t.equal(hostPathMountedAt(main, '/dev'), '/dev', "tap nodes are made in the host's /dev");

  // Probes: the device plugin's own /readyz and /healthz on the port it serves metrics on.
  const dp = main as {
    command: string[];
    ports?: unknown;
    readinessProbe?: { httpGet?: unknown };
    livenessProbe?: { httpGet?: unknown };
    env?: { name: string; value?: string }[];
  };
  t.ok(dp.command.includes('--metrics-listen=:9735'), 'metrics and health on the host network');
  t.ok(dp.command.includes('--metrics-on-error=exit'), 'a taken port fails the pod instead of leaving probes that cannot pass');
  t.same(dp.ports, [{ name: 'metrics', containerPort: 9735, protocol: 'TCP' }]);
  t.same(dp.readinessProbe?.httpGet, { path: '/readyz', port: 'metrics' });
  t.same(dp.livenessProbe?.httpGet, { path: '/healthz', port: 'metrics' });
  t.equal(hostPathMountedAt(main, '/var/lib/kubelet/pod-resources'), '/var/lib/kubelet/pod-resources', 'the pod-resources API is mounted');
  t.match(byName(dp.env, 'NODE_OPTIONS')?.value, /--max-old-space-size=\d+/, 'a heap limit is set');
  t.ok(socketName('dataplane').startsWith(`${RESOURCE_PREFIX}`), 'socket names start with the resource prefix');
  t.end();
});

t.test('the example overlay turns every knob', { skip: noKubectl }, async (t) => {
  const objects = kustomize(path.join(EXAMPLES, 'overlay'));
  for (const obj of objects) t.equal(await schemaProblems(obj), '', `${obj.kind} ${obj.metadata.name} passes the API schema`);
  t.same(typeProblems(objects), []);
  t.equal(findKind(objects, 'Namespace').metadata.name, 'network-addons', 'namespace: the Namespace is renamed');
  for (const obj of objects.filter((o) => o.kind !== 'Namespace')) t.equal(obj.metadata.namespace, 'network-addons');
  const ds = findKind(objects, 'DaemonSet');
  const pod = ds.spec.template.spec;
  for (const c of [...pod.initContainers, ...pod.containers]) {
    t.equal(c.image, 'registry.example.com/macvtap-cni:0.1.0', `image of ${c.name}`);
    t.equal(c.imagePullPolicy, 'Always', `pull policy of ${c.name}`);
  }
  const cm = findKind(objects, 'ConfigMap');
  t.equal(cm.metadata.name, 'dataplane-macvtap-config', 'ConfigMap name');
  t.equal(pod.volumes.find((v) => v.configMap)?.configMap?.name, cm.metadata.name, 'the DaemonSet follows the rename');
  t.equal(byName(pod.volumes, 'cni-bin')?.hostPath?.path, '/var/lib/cni/bin', 'host CNI bin directory');
  const config = parseConfig(cm.data.DP_MACVTAP_CONF, 'DP_MACVTAP_CONF');
  t.equal(config.discover, false);
  t.same(
    config.resources.map((r) => r.name),
    ['dataplane'],
  );
});

t.test('the examples are valid objects that fit together', async (t) => {
  const cm = readExample('macvtap-deviceplugin-config.yaml', 'ConfigMap');
  const nad = readExample('dataplane-network.yaml', 'NetworkAttachmentDefinition');
  const pods = ['pod.yaml', 'pod-with-mac.yaml', 'pod-tap-only.yaml'].map((file) => readExample(file, 'Pod'));
  for (const obj of [cm, ...pods]) t.equal(await schemaProblems(obj), '', `${obj.kind} ${obj.metadata.name} passes the API schema`);
  t.same(typeProblems([cm, ...pods]), [], 'no unknown or mistyped field');

  // The ConfigMap replaces the base's default one.
  if (!noKubectl) {
    const base = findKind(kustomize(DEPLOY), 'ConfigMap');
    t.same(
      [cm.metadata.name, cm.metadata.namespace],
      [base.metadata.name, base.metadata.namespace],
      'same name and namespace as the default',
    );
  }
  const config = parseConfig(cm.data.DP_MACVTAP_CONF, 'DP_MACVTAP_CONF', '/var/lib/kubelet/device-plugins');
  if (config.discover) throw new Error('the explicit example must not be discovery');
  t.same(
    config.resources.map((r) => [r.name, r.lowerDevice, r.mode, r.capacity]),
    [['dataplane', 'eth0', 'bridge', 50]],
  );
  const resource = resourceName(config.resources[0].name);

  // The NetworkAttachmentDefinition (a CRD: its shape is checked here, its CNI config by the plugin).
  t.equal(keyOf(nad), NAD_KEY);
  t.same(Object.keys(nad).sort(), ['apiVersion', 'kind', 'metadata', 'spec']);
  t.same(Object.keys(nad.spec), ['config']);
  t.equal(nad.metadata.annotations?.['k8s.v1.cni.cncf.io/resourceName'], resource, 'backed by the example resource');
  const cniConfig = JSON.parse(nad.spec.config) as { type?: unknown; name?: unknown; cniVersion?: unknown };
  t.equal(cniConfig.type, 'macvtap');
  t.equal(cniConfig.name, nad.metadata.name);

  // Pods: each asks for one device of that resource; the attached ones name the network.
  for (const pod of pods) {
    const limits = pod.spec.containers.map((c) => c.resources?.limits ?? {});
    t.same(limits, [{ [resource]: 1 }], `${pod.metadata.name} requests one ${resource}`);
  }
  const [attached, withMac, tapOnly] = pods;
  t.equal(attached.metadata.annotations?.['k8s.v1.cni.cncf.io/networks'], nad.metadata.name);
  const selection = networkSelection(withMac);
  t.equal(selection.length, 1);
  t.equal(selection[0]?.name, nad.metadata.name);
  t.doesNotThrow(() => parseUnicastMac(selection[0]?.mac ?? ''), 'the annotation carries a unicast MAC');
  t.notOk(tapOnly.metadata.annotations?.['k8s.v1.cni.cncf.io/networks'], 'the tap-only pod is attached to no network');
});

t.test("the example network's CNI config is accepted by the plugin's own parser, as Multus delivers it", (t) => {
  const nad = readExample('dataplane-network.yaml', 'NetworkAttachmentDefinition');
  const withMac = readExample('pod-with-mac.yaml', 'Pod');
  const annotationMac = networkSelection(withMac)[0]?.mac;
  // Multus adds the allocated device as "deviceID" and passes the annotation's MAC in CNI_ARGS.
  const delivered = { ...decodeConfig(nad.spec.config), deviceID: 'dataplaneMvp0' };
  const multusArgs =
    'IgnoreUnknown=true;K8S_POD_NAMESPACE=default;K8S_POD_NAME=macvtap-pod-with-mac;K8S_POD_INFRA_CONTAINER_ID=0123abcd;K8S_POD_UID=5f0c';
  const env = readEnvironment('ADD', {
    CNI_COMMAND: 'ADD',
    CNI_CONTAINERID: '0123abcd',
    CNI_NETNS: '/var/run/netns/pod',
    CNI_IFNAME: 'net1',
    CNI_ARGS: `${multusArgs};MAC=${annotationMac}`,
  });
  const conf = readConfig('ADD', delivered, env, {});
  t.match(conf, {
    cniVersion: (JSON.parse(nad.spec.config) as { cniVersion?: unknown }).cniVersion,
    name: 'dataplane',
    type: 'macvtap',
    deviceID: 'dataplaneMvp0',
    mtu: 1500,
  });
  t.same([conf.mac, conf.macSource], [annotationMac, 'CNI_ARGS MAC'], "the annotation's MAC reaches the interface");
  const plain = readConfig(
    'ADD',
    delivered,
    readEnvironment('ADD', { CNI_CONTAINERID: '0123abcd', CNI_NETNS: '/var/run/netns/pod', CNI_IFNAME: 'net1', CNI_ARGS: multusArgs }),
    {},
  );
  t.equal(plain.mac, undefined, 'without a MAC in the annotation the macvtap keeps its own');
  t.end();
});

t.test('the oracles reject what they should (a misspelt field, a bad enum value)', async (t) => {
  const ds = {
    apiVersion: 'apps/v1',
    kind: 'DaemonSet',
    metadata: { name: 'x' },
    spec: { selector: {}, template: { spec: { containers: [{ name: 'c', image: 'i' }] } } },
  };
  t.equal(await schemaProblems(ds), '');
  t.same(typeProblems([ds]), []);
  // A field the Container type does not have: added through a plain record, as a typo in YAML would be.
  const misspelt = structuredClone(ds);
  Object.assign(misspelt.spec.template.spec.containers[0] as Record<string, unknown>, { imagePullPolcy: 'Always' });
  t.match(typeProblems([misspelt]).join('\n'), /imagePullPolcy/);
  const badEnum = structuredClone(ds);
  Object.assign(badEnum.spec.template.spec.containers[0] as Record<string, unknown>, { imagePullPolicy: 'Sometimes' });
  t.match(await schemaProblems(badEnum), /imagePullPolicy must be equal to one of the allowed values/);
});

function pick(obj: Record<string, string>, keys: string[]): Record<string, string> {
  return Object.fromEntries(keys.map((k) => [k, obj[k]]));
}
