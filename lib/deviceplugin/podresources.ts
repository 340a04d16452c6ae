/**
 * A client of the kubelet's pod-resources API (proto/podresources/v1/api.proto, `v1.PodResourcesLister/List`
 * on `<kubelet root>/pod-resources/kubelet.sock`): which devices the kubelet assigned to which pod's container.
 * Loaded only when reclamation is on; the proto is parsed once per process.
 *
 * Two kinds of failure are told apart, because the caller treats them differently:
 * - PodResourcesUnavailable: no socket, nobody listening, no answer in time, the API not served. The kubelet
 *   may be restarting or too old; another source (its checkpoint) may still be read.
 * - PodResourcesMalformed: an answer came but is not a valid ListPodResourcesResponse (undecodable bytes, or
 *   fields the kubelet never sends empty). Something is wrong on the node; nothing should be concluded from it.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { protoPath } from './api';

/** `<kubelet root>/pod-resources/kubelet.sock`. */
export function podResourcesSocket(kubeletRoot: string): string {
  return path.join(kubeletRoot, 'pod-resources', 'kubelet.sock');
}

/** One container's devices of one resource, as the kubelet reports them. */
export interface ContainerDevices {
  /** `<namespace>/<name>` of the pod. */
  pod: string;
  container: string;
  resource: string;
  deviceIDs: string[];
}

export class PodResourcesUnavailable extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PodResourcesUnavailable';
  }
}

export class PodResourcesMalformed extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PodResourcesMalformed';
  }
}

const PROTO = path.join('proto', 'podresources', 'v1', 'api.proto');
const DEFAULT_TIMEOUT_MS = 5000;
/** A node's full answer is tens of kB; this bounds what a broken or hostile server can make us hold. */
const MAX_RESPONSE_BYTES = 16 * 1024 * 1024;

let lister: grpc.ServiceClientConstructor | undefined;

function loadLister(): grpc.ServiceClientConstructor {
  if (lister) return lister;
  const definition = protoLoader.loadSync(protoPath(PROTO), { keepCase: true, longs: Number, enums: String, defaults: true, oneofs: true });
  const pkg = grpc.loadPackageDefinition(definition).v1 as grpc.GrpcObject;
  lister = pkg.PodResourcesLister as grpc.ServiceClientConstructor;
  return lister;
}

/** The decoded message as proto-loader gives it (keepCase, defaults: every repeated field is an array). */
interface RawResponse {
  pod_resources?: unknown;
}

/**
 * Asks the kubelet for every pod's devices. Each call opens its own channel and closes it, so nothing is kept
 * between the minutes-apart calls of the reclaimer.
 */
export async function listPodResources(socket: string, timeoutMs = DEFAULT_TIMEOUT_MS): Promise<ContainerDevices[]> {
  let st: fs.Stats;
  try {
    st = fs.lstatSync(socket);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new PodResourcesUnavailable(`no pod-resources socket at ${socket} (${code ?? 'error'})`);
  }
  if (!st.isSocket()) throw new PodResourcesUnavailable(`${socket} is not a socket`);
  const Lister = loadLister();
  const client = new Lister(`unix:${socket}`, grpc.credentials.createInsecure(), {
    'grpc.max_receive_message_length': MAX_RESPONSE_BYTES,
  }) as unknown as grpc.Client & {
    List: (req: object, opts: grpc.CallOptions, cb: (err: grpc.ServiceError | null, res: RawResponse) => void) => void;
  };
  let raw: RawResponse;
  try {
    raw = await new Promise<RawResponse>((resolve, reject) => {
      client.List({}, { deadline: Date.now() + timeoutMs }, (err, res) => (err ? reject(err) : resolve(res)));
    });
  } catch (err) {
    throw classify(err as grpc.ServiceError, socket);
  } finally {
    client.close();
  }
  return validate(raw);
}

function classify(err: grpc.ServiceError, socket: string): Error {
  // grpc-js reports an undecodable answer as INTERNAL with this wording (client-side deserialization).
  if (err.code === grpc.status.INTERNAL && /pars|deserializ/i.test(err.details))
    return new PodResourcesMalformed(`the kubelet's pod-resources answer on ${socket} cannot be decoded: ${err.details}`);
  const name = (grpc.status[err.code] as string | undefined) ?? String(err.code);
  return new PodResourcesUnavailable(`pod-resources List on ${socket} failed: ${name}: ${err.details}`);
}

/** Checks the decoded answer field by field; throws PodResourcesMalformed naming the first bad one. */
export function validate(raw: RawResponse | null | undefined): ContainerDevices[] {
  const bad = (what: string): PodResourcesMalformed => new PodResourcesMalformed(`malformed pod-resources answer: ${what}`);
  if (typeof raw !== 'object' || raw === null) throw bad('not a message');
  const pods = raw.pod_resources;
  if (!Array.isArray(pods)) throw bad('pod_resources is not a list');
  const out: ContainerDevices[] = [];
  pods.forEach((p: unknown, i) => {
    const where = `pod_resources[${i}]`;
    if (typeof p !== 'object' || p === null) throw bad(`${where} is not a message`);
    const pod = p as { name?: unknown; namespace?: unknown; containers?: unknown };
    if (typeof pod.name !== 'string' || pod.name === '') throw bad(`${where}.name is empty`);
    if (typeof pod.namespace !== 'string') throw bad(`${where}.namespace is not a string`);
    if (!Array.isArray(pod.containers)) throw bad(`${where}.containers is not a list`);
    pod.containers.forEach((c: unknown, j) => {
      const cwhere = `${where}.containers[${j}]`;
      const container = c as { name?: unknown; devices?: unknown } | null;
      if (typeof container !== 'object' || container === null) throw bad(`${cwhere} is not a message`);
      if (typeof container.name !== 'string') throw bad(`${cwhere}.name is not a string`);
      if (!Array.isArray(container.devices)) throw bad(`${cwhere}.devices is not a list`);
      container.devices.forEach((d: unknown, k) => {
        const dwhere = `${cwhere}.devices[${k}]`;
        const devices = d as { resource_name?: unknown; device_ids?: unknown } | null;
        if (typeof devices !== 'object' || devices === null) throw bad(`${dwhere} is not a message`);
        if (typeof devices.resource_name !== 'string' || devices.resource_name === '') throw bad(`${dwhere}.resource_name is empty`);
        const ids = devices.device_ids;
        if (!Array.isArray(ids) || ids.some((id) => typeof id !== 'string' || id === ''))
          throw bad(`${dwhere}.device_ids holds an empty or non-string ID`);
        out.push({
          pod: `${pod.namespace as string}/${pod.name as string}`,
          container: container.name as string,
          resource: devices.resource_name,
          deviceIDs: ids as string[],
        });
      });
    });
  });
  return out;
}
