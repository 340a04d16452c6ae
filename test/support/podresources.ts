/**
 * A stand-in for the kubelet's pod-resources API for tests and benchmarks: serves `v1.PodResourcesLister` (the
 * real proto/podresources/v1/api.proto, loaded here independently of the daemon, with proto-loader's default
 * camelCase names) on `<kubelet root>/pod-resources/kubelet.sock`, over a real unix socket.
 *
 * Its answer to List is built from the kubelet stand-in's device-manager checkpoint (support/checkpoint.ts):
 * the same pod -> device assignments the kubelet would report through both channels. A test can instead make
 * it answer with an error, with bytes that are no ListPodResourcesResponse, or with a message of its own.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { protoPath } from '../../lib/deviceplugin/api';
import type { KubeletCheckpoint } from './checkpoint';

/** The messages as this stand-in sends them (camelCase, as proto-loader's defaults name them). */
export interface PodResourcesMessage {
  podResources: {
    name: string;
    namespace: string;
    containers: { name: string; devices: { resourceName: string; deviceIds: string[] }[] }[];
  }[];
}

/**
 * How List answers: `assignments` (from the checkpoint, the default), `{error}` (a gRPC status), `garbage`
 * (bytes that do not decode), `hang` (never answers), or a message / raw bytes of the test's own.
 */
export type ListBehaviour = 'assignments' | 'garbage' | 'hang' | { error: grpc.status; details: string } | PodResourcesMessage | Buffer;

/** A truncated field: field 1, length 5, one byte of payload. No protobuf decoder accepts it. */
export const GARBAGE = Buffer.from([0x0a, 0x05, 0x0a]);

type ServiceDef = grpc.ServiceDefinition & Record<string, grpc.MethodDefinition<object, object>>;

let service: ServiceDef | undefined;
function loadService(): ServiceDef {
  if (!service) {
    const def = protoLoader.loadSync(protoPath(path.join('proto', 'podresources', 'v1', 'api.proto')), {
      longs: Number,
      enums: String,
      defaults: true,
      oneofs: true,
    });
    const pkg = grpc.loadPackageDefinition(def).v1 as grpc.GrpcObject;
    service = (pkg.PodResourcesLister as grpc.ServiceClientConstructor).service;
  }
  return service;
}

export class PodResourcesStandIn {
  readonly socketPath: string;
  /** The assignments List reports (the kubelet stand-in's checkpoint), when `behaviour` is `assignments`. */
  checkpoint: KubeletCheckpoint | undefined;
  /** Pod UID -> the name and namespace List reports (default: the UID, in `default`). */
  readonly pods = new Map<string, { name: string; namespace: string }>();
  behaviour: ListBehaviour = 'assignments';
  /** How many List calls arrived. */
  calls = 0;
  private server: grpc.Server | undefined;

  private constructor(socketPath: string, checkpoint: KubeletCheckpoint | undefined) {
    this.socketPath = socketPath;
    this.checkpoint = checkpoint;
  }

  /** Serves on `<kubeletRoot>/pod-resources/kubelet.sock` (directories created as needed). */
  static async start(kubeletRoot: string, checkpoint?: KubeletCheckpoint): Promise<PodResourcesStandIn> {
    const standIn = new PodResourcesStandIn(path.join(kubeletRoot, 'pod-resources', 'kubelet.sock'), checkpoint);
    await standIn.serve();
    return standIn;
  }

  /** The answer built from the checkpoint: one PodResources per pod UID, its containers and their devices. */
  assignments(): PodResourcesMessage {
    const byPod = new Map<string, Map<string, { resourceName: string; deviceIds: string[] }[]>>();
    for (const e of this.checkpoint?.entries ?? []) {
      const containers = byPod.get(e.podUID) ?? new Map<string, { resourceName: string; deviceIds: string[] }[]>();
      byPod.set(e.podUID, containers);
      const devices = containers.get(e.containerName) ?? [];
      containers.set(e.containerName, devices);
      devices.push({ resourceName: e.resourceName, deviceIds: [...e.deviceIDs.values()].flat() });
    }
    return {
      podResources: [...byPod].map(([uid, containers]) => ({
        name: this.pods.get(uid)?.name ?? uid,
        namespace: this.pods.get(uid)?.namespace ?? 'default',
        containers: [...containers].map(([name, devices]) => ({ name, devices })),
      })),
    };
  }

  private async serve(): Promise<void> {
    fs.mkdirSync(path.dirname(this.socketPath), { recursive: true });
    fs.rmSync(this.socketPath, { force: true });
    const def = loadService();
    // Raw Buffers go out as they are, so a test can send bytes that are no valid message.
    const list = def.List;
    const passThrough: ServiceDef = {
      ...def,
      List: { ...list, responseSerialize: (v: object) => (Buffer.isBuffer(v) ? v : list.responseSerialize(v)) },
    };
    const server = new grpc.Server();
    server.addService(passThrough, {
      List: (_call: grpc.ServerUnaryCall<object, object>, cb: grpc.sendUnaryData<object>) => {
        this.calls += 1;
        const b = this.behaviour;
        if (b === 'hang') return;
        if (b === 'assignments') return cb(null, this.assignments());
        if (b === 'garbage') return cb(null, GARBAGE);
        if (Buffer.isBuffer(b)) return cb(null, b);
        if ('error' in b) return cb({ code: b.error, details: b.details });
        cb(null, b);
      },
      GetAllocatableResources: (_call: grpc.ServerUnaryCall<object, object>, cb: grpc.sendUnaryData<object>) =>
        cb(null, { devices: [], cpuIds: [], memory: [] }),
      Get: (_call: grpc.ServerUnaryCall<object, object>, cb: grpc.sendUnaryData<object>) =>
        cb({ code: grpc.status.UNIMPLEMENTED, details: 'not in this stand-in' }),
    });
    await new Promise<void>((resolve, reject) =>
      server.bindAsync(`unix:${this.socketPath}`, grpc.ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve())),
    );
    this.server = server;
  }

  /** Stops serving and removes the socket (a kubelet that is down). */
  async stop(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    if (server) {
      await new Promise<void>((resolve) => {
        server.tryShutdown(() => resolve());
        server.forceShutdown();
      });
    }
    fs.rmSync(this.socketPath, { force: true });
  }
}
