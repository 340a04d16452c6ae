/**
 * Rendering and checking deploy/ for the manifest tests: kustomize (kubectl's, the real one), the example
 * files, the shapes the tests read, and two independent oracles for an object: kubernetes-models' API schema
 * validators and a TypeScript check against the API types.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as ts from 'typescript';
import { parseAllDocuments } from 'yaml';

export const ROOT = path.resolve(__dirname, '..', '..');
export const DEPLOY = path.join(ROOT, 'deploy');
export const EXAMPLES = path.join(DEPLOY, 'examples');
export const VERSION = (JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;

// kubernetes-models is ESM-only and exports its subpaths only to `import`. Compiled to CommonJS, `import()`
// becomes require(), which loads an ES module (one without top-level await) on the pinned Node when given
// the file itself, past the package's exports map.
async function importEsm(specifier: string): Promise<Record<string, unknown>> {
  return (await import(path.join(ROOT, 'node_modules', `${specifier}.js`))) as Record<string, unknown>;
}

/**
 * The shapes of the rendered objects, as far as these tests read them. Parsed YAML is unknown to TypeScript;
 * each object is given its shape here and then checked against the real API schema and API types below
 * (schemaProblems, typeProblems), so a shape that lies fails a test.
 */
export interface Meta {
  name: string;
  namespace?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}
export interface Manifest {
  apiVersion: string;
  kind: string;
  metadata: Meta;
  [field: string]: unknown;
}
export interface Mount {
  name: string;
  mountPath: string;
  readOnly?: boolean;
}
export interface Container {
  name: string;
  image?: string;
  imagePullPolicy?: string;
  command: string[];
  securityContext?: { privileged?: boolean };
  resources?: { requests?: Record<string, string>; limits?: Record<string, number> };
  volumeMounts?: Mount[];
  ports?: unknown;
  readinessProbe?: { httpGet?: unknown };
  livenessProbe?: { httpGet?: unknown };
  env?: { name: string; value?: string }[];
}
export interface Volume {
  name: string;
  hostPath?: { path: string; type?: string };
  configMap?: { name: string };
}
export interface PodSpec {
  hostNetwork?: boolean;
  hostPID?: boolean;
  priorityClassName?: string;
  initContainers: Container[];
  containers: Container[];
  volumes: Volume[];
}
export interface Kinds {
  Namespace: Manifest;
  ConfigMap: Manifest & { data: Record<string, string> };
  DaemonSet: Manifest & {
    spec: { selector: { matchLabels: Record<string, string> }; template: { metadata: Meta; spec: PodSpec } };
  };
  Pod: Manifest & { spec: PodSpec };
  NetworkAttachmentDefinition: Manifest & { spec: { config: string } };
}

/** kubernetes-models module and interface of each kind the manifests use. */
const MODELS: Record<string, { module: string; iface: string }> = {
  'v1/Namespace': { module: 'kubernetes-models/v1/Namespace', iface: 'INamespace' },
  'v1/ConfigMap': { module: 'kubernetes-models/v1/ConfigMap', iface: 'IConfigMap' },
  'v1/Pod': { module: 'kubernetes-models/v1/Pod', iface: 'IPod' },
  'apps/v1/DaemonSet': { module: 'kubernetes-models/apps/v1/DaemonSet', iface: 'IDaemonSet' },
};
export const NAD_KEY = 'k8s.cni.cncf.io/v1/NetworkAttachmentDefinition';

const kubectl = spawnSync('kubectl', ['version', '--client'], { encoding: 'utf8' });
export const noKubectl =
  kubectl.error || kubectl.status !== 0
    ? 'kubectl is not installed: the kustomizations can only be rendered by real kustomize (this project does not imitate it)'
    : false;

export function kustomize(dir: string): Manifest[] {
  const out = spawnSync('kubectl', ['kustomize', dir], { encoding: 'utf8' });
  if (out.status !== 0) throw new Error(`kubectl kustomize ${dir} failed: ${out.stderr}`);
  return parseYaml(out.stdout, dir);
}

function parseYaml(text: string, what: string): Manifest[] {
  return parseAllDocuments(text).map((doc) => {
    if (doc.errors.length) throw new Error(`${what}: ${doc.errors[0].message}`);
    return doc.toJS() as Manifest;
  });
}

export function readExample<K extends keyof Kinds>(file: string, kind: K): Kinds[K] {
  const docs = parseYaml(fs.readFileSync(path.join(EXAMPLES, file), 'utf8'), file);
  if (docs.length !== 1) throw new Error(`${file}: expected one object, found ${docs.length}`);
  return asKind(docs[0], kind);
}

/** The object as its kind's shape, after checking it is of that kind (the schema tests check the rest). */
function asKind<K extends keyof Kinds>(obj: Manifest, kind: K): Kinds[K] {
  if (obj.kind !== kind) throw new Error(`expected a ${kind}, found ${obj.kind}`);
  return obj as Kinds[K];
}

export const keyOf = (obj: Manifest): string => `${obj.apiVersion}/${obj.kind}`;

/** Problems kubernetes-models' validator finds in one object ('' if none). */
export async function schemaProblems(obj: Manifest): Promise<string> {
  const model = MODELS[keyOf(obj)];
  if (!model) return `no schema for ${keyOf(obj)}`;
  const mod = await importEsm(model.module);
  const Model = mod[obj.kind] as new (data: Manifest) => { validate(): void };
  try {
    new Model(obj).validate();
    return '';
  } catch (err) {
    return (err as Error).message;
  }
}

/**
 * TypeScript's verdict on each object as a literal of its kubernetes-models API type: excess-property
 * checks reject unknown (misspelt) fields at any depth, which the schema validators accept.
 */
export function typeProblems(objects: Manifest[]): string[] {
  const virtual = path.join(ROOT, 'test', 'deploy', '__manifest_types__.ts');
  const lines: string[] = [];
  objects.forEach((obj, i) => {
    const model = MODELS[keyOf(obj)];
    lines.push(`import type { ${model.iface} as T${i} } from '${model.module}';`);
    lines.push(`export const o${i}: T${i} = ${JSON.stringify(obj)};`);
  });
  const text = lines.join('\n');
  const options: ts.CompilerOptions = {
    strict: true,
    noEmit: true,
    skipLibCheck: true,
    target: ts.ScriptTarget.ES2022,
    module: ts.ModuleKind.ESNext,
    moduleResolution: ts.ModuleResolutionKind.Bundler,
    types: [],
  };
  const host = ts.createCompilerHost(options);
  const getSourceFile = host.getSourceFile.bind(host);
  const fileExists = host.fileExists.bind(host);
  const readFile = host.readFile.bind(host);
  host.getSourceFile = (file, lang, ...rest) =>
    file === virtual ? ts.createSourceFile(file, text, lang) : getSourceFile(file, lang, ...rest);
  host.fileExists = (file) => file === virtual || fileExists(file);
  host.readFile = (file) => (file === virtual ? text : readFile(file));
  const program = ts.createProgram([virtual], options, host);
  return ts.getPreEmitDiagnostics(program).map((d) => ts.flattenDiagnosticMessageText(d.messageText, '\n'));
}

export function findKind<K extends keyof Kinds>(objects: Manifest[], kind: K): Kinds[K] {
  const found = objects.filter((o) => o.kind === kind);
  if (found.length !== 1) throw new Error(`expected one ${kind}, found ${found.length}`);
  return asKind(found[0], kind);
}

/** A pod's Multus network selection annotation in its JSON form (the list of networks, each with a name). */
export function networkSelection(pod: Manifest): { name: string; mac?: string }[] {
  const text = pod.metadata.annotations?.['k8s.v1.cni.cncf.io/networks'];
  if (text === undefined) throw new Error(`${pod.metadata.name} has no network selection annotation`);
  return JSON.parse(text) as { name: string; mac?: string }[];
}

export const byName = <T extends { name: string }>(list: T[] | undefined, name: string): T | undefined =>
  list?.find((x) => x.name === name);
