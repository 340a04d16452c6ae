/**
 * A kubelet stand-in for tests, benchmarks and the demo: it serves the Registration service on
 * `<dir>/kubelet.sock` and, for every plugin that registers, connects to the plugin's socket, checks it answers
 * GetDevicePluginOptions (as the kubelet does before accepting a registration) and keeps a ListAndWatch stream
 * open, remembering the latest device list. Speaks proto/ through @grpc/proto-loader with its default camelCase
 * field names, independently of the daemon's own loading of the same file.
 *
 * `restart()` behaves as a kubelet start: every socket in the directory is deleted, streams of the old
 * instance are dropped, and a fresh kubelet.sock is served with no registrations remembered.
 */
import { EventEmitter } from 'node:events';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { protoFile } from '../../lib/deviceplugin/api';
import type { KubeletCheckpoint, PodRef } from './checkpoint';
import { Relay, startAuthorityRelay } from './h2-authority';

export interface Registration {
  version: string;
  endpoint: string;
  resourceName: string;
  options: { preStartRequired: boolean; getPreferredAllocationAvailable: boolean } | null;
  /** When it arrived (process.hrtime.bigint()). */
  at: bigint;
}

export interface Device {
  ID: string;
  health: string;
}

export interface DeviceSpec {
  containerPath: string;
  hostPath: string;
  permissions: string;
}

export interface AllocateResponse {
  containerResponses: {
    envs: Record<string, string>;
    mounts: { containerPath: string; hostPath: string; readOnly: boolean }[];
    devices: DeviceSpec[];
    annotations: Record<string, string>;
    cdiDevices: { name: string }[];
  }[];
}

/** One device list as received, with its arrival time (process.hrtime.bigint()). */
export interface DeviceUpdate {
  resource: string;
  devices: Device[];
  at: bigint;
}

interface PluginConnection {
  registration: Registration;
  client: grpc.Client & Record<string, (...args: unknown[]) => unknown>;
  stream: grpc.ClientReadableStream<{ devices: Device[] }>;
  devices: Device[] | undefined;
  updates: DeviceUpdate[];
  ended: boolean;
}

type Api = { Registration: grpc.ServiceClientConstructor; DevicePlugin: grpc.ServiceClientConstructor };
let api: Api | undefined;
function loadApi(): Api {
  if (!api) {
    const def = protoLoader.loadSync(protoFile(), { longs: Number, enums: String, defaults: true, oneofs: true });
    const pkg = grpc.loadPackageDefinition(def).v1beta1 as grpc.GrpcObject;
    api = {
      Registration: pkg.Registration as grpc.ServiceClientConstructor,
      DevicePlugin: pkg.DevicePlugin as grpc.ServiceClientConstructor,
    };
  }
  return api;
}

export interface StandInOptions {
  /**
   * Accept registrations from grpc-go clients that send a socket path as `:authority` (kubevirt's device
   * plugin does), which Node's http2 refuses: kubelet.sock is then a relay that rewrites it (h2-authority.ts).
   */
  grpcGoClients?: boolean;
}

/** Emits `registration` (Registration), `devices` (DeviceUpdate) and `streamEnd` (resource). */
export class KubeletStandIn extends EventEmitter {
  readonly dir: string;
  readonly socketPath: string;
  /** Registrations received by the current kubelet instance, in order. */
  registrations: Registration[] = [];
  /** Answer every Register with this error instead (to test retries). */
  rejectRegistrations: string | undefined;
  private server: grpc.Server | undefined;
  private readonly plugins = new Map<string, PluginConnection>();
  /** With `grpcGoClients`: the relay on kubelet.sock and the private directory of the server behind it. */
  private relay: { dir: string; server?: Relay } | undefined;

  private constructor(dir: string, opts: StandInOptions) {
    super();
    this.dir = dir;
    this.socketPath = path.join(dir, 'kubelet.sock');
    if (opts.grpcGoClients) this.relay = { dir: fs.mkdtempSync(path.join(os.tmpdir(), 'kubelet-relay-')) };
  }

  /** Serves Registration on `<dir>/kubelet.sock` (the directory is created if needed). */
  static async start(dir: string, opts: StandInOptions = {}): Promise<KubeletStandIn> {
    fs.mkdirSync(dir, { recursive: true });
    const kubelet = new KubeletStandIn(dir, opts);
    await kubelet.serve();
    return kubelet;
  }

  private async serve(): Promise<void> {
    fs.rmSync(this.socketPath, { force: true });
    // Behind the relay, the gRPC server listens in a private directory and kubelet.sock is the relay's.
    const listenPath = this.relay ? path.join(this.relay.dir, 'kubelet.sock') : this.socketPath;
    fs.rmSync(listenPath, { force: true });
    const server = new grpc.Server();
    server.addService(loadApi().Registration.service, {
      Register: (call: grpc.ServerUnaryCall<Omit<Registration, 'at'>, unknown>, cb: grpc.sendUnaryData<unknown>) => {
        this.register({ ...call.request, at: process.hrtime.bigint() }).then(
          () => cb(null, {}),
          (err: Error) => cb({ code: grpc.status.UNKNOWN, details: err.message }),
        );
      },
    });
    await new Promise<void>((resolve, reject) =>
      server.bindAsync(`unix:${listenPath}`, grpc.ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve())),
    );
    this.server = server;
    if (this.relay) this.relay.server = await startAuthorityRelay(this.socketPath, listenPath);
  }

  private async register(reg: Registration): Promise<void> {
    if (this.rejectRegistrations) throw new Error(this.rejectRegistrations);
    if (reg.version !== 'v1beta1') throw new Error(`unsupported version ${JSON.stringify(reg.version)}`);
    if (!reg.endpoint || reg.endpoint.includes('/')) throw new Error(`bad endpoint ${JSON.stringify(reg.endpoint)}`);
    const { DevicePlugin } = loadApi();
    const client = new DevicePlugin(
      `unix:${path.join(this.dir, reg.endpoint)}`,
      grpc.credentials.createInsecure(),
    ) as PluginConnection['client'];
    // The plugin must already be serving: ask for its options before accepting.
    await new Promise<void>((resolve, reject) => {
      (client.GetDevicePluginOptions as (r: object, o: object, cb: (e: Error | null) => void) => void)(
        {},
        { deadline: Date.now() + 5000 },
        (err) => (err ? reject(new Error(`plugin ${reg.endpoint} does not answer: ${err.message}`)) : resolve()),
      );
    }).catch((err) => {
      client.close();
      throw err;
    });
    this.plugins.get(reg.resourceName)?.client.close();
    const stream = (client.ListAndWatch as (r: object) => grpc.ClientReadableStream<{ devices: Device[] }>)({});
    const conn: PluginConnection = { registration: reg, client, stream, devices: undefined, updates: [], ended: false };
    this.plugins.set(reg.resourceName, conn);
    stream.on('data', (msg: { devices: Device[] }) => {
      const update: DeviceUpdate = {
        resource: reg.resourceName,
        devices: msg.devices.map((d) => ({ ID: d.ID, health: d.health })),
        at: process.hrtime.bigint(),
      };
      conn.devices = update.devices;
      conn.updates.push(update);
      this.emit('devices', update);
    });
    const end = (): void => {
      if (conn.ended) return;
      conn.ended = true;
      this.emit('streamEnd', reg.resourceName);
    };
    stream.on('end', end);
    stream.on('error', end);
    this.registrations.push(reg);
    this.emit('registration', reg);
  }

  /** The latest registration of `resource` with this kubelet instance, waiting for one if needed. */
  waitForRegistration(resource: string, timeoutMs = 10000): Promise<Registration> {
    return this.waitFor(
      'registration',
      () => [...this.registrations].reverse().find((r) => r.resourceName === resource),
      timeoutMs,
      `registration of ${resource}`,
    );
  }

  /** The latest device list of `resource`, or undefined if none arrived yet. */
  devices(resource: string): Device[] | undefined {
    return this.plugins.get(resource)?.devices;
  }

  /** Every device list received from `resource` since it last registered. */
  updates(resource: string): DeviceUpdate[] {
    return this.plugins.get(resource)?.updates ?? [];
  }

  /** Whether the ListAndWatch stream of `resource` has ended. */
  streamEnded(resource: string): boolean {
    return this.plugins.get(resource)?.ended ?? false;
  }

  /** Resolves with the latest device list of `resource` once `predicate` accepts it. */
  waitForDevices(resource: string, predicate: (devices: Device[]) => boolean, timeoutMs = 10000): Promise<Device[]> {
    return this.waitFor(
      'devices',
      () => {
        const list = this.devices(resource);
        return list && predicate(list) ? list : undefined;
      },
      timeoutMs,
      `device list of ${resource} matching ${predicate.toString()}`,
      () => {
        const list = this.devices(resource);
        const seen = list ? JSON.stringify(list.map((d) => `${d.ID}:${d.health}`)) : 'no list';
        return `last list ${seen}${this.streamEnded(resource) ? ', stream ended' : ''}`;
      },
    );
  }

  /** Resolves when the ListAndWatch stream of `resource` ends. */
  waitForStreamEnd(resource: string, timeoutMs = 10000): Promise<true> {
    return this.waitFor('streamEnd', () => (this.streamEnded(resource) ? true : undefined), timeoutMs, `end of the stream of ${resource}`);
  }

  /** Resolves with `check()` once it is defined, re-checking on every `event` this stand-in emits. */
  waitFor<T>(
    event: 'registration' | 'devices' | 'streamEnd',
    check: () => T | undefined,
    timeoutMs: number,
    what: string,
    /** What was seen instead, for the timeout's message. */
    seen?: () => string,
  ): Promise<T> {
    const now = check();
    if (now !== undefined) return Promise.resolve(now);
    return new Promise<T>((resolve, reject) => {
      const onEvent = (): void => {
        const value = check();
        if (value === undefined) return;
        cleanup();
        resolve(value);
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new Error(`kubelet stand-in: timed out after ${timeoutMs} ms waiting for ${what}${seen ? ` (${seen()})` : ''}`));
      }, timeoutMs);
      const cleanup = (): void => {
        clearTimeout(timer);
        this.off(event, onEvent);
      };
      this.on(event, onEvent);
    });
  }

  private connection(resource: string): PluginConnection {
    const conn = this.plugins.get(resource);
    if (!conn) throw new Error(`kubelet stand-in: ${resource} has not registered`);
    return conn;
  }

  private unary<T>(resource: string, method: string, request: object): Promise<T> {
    const { client } = this.connection(resource);
    return new Promise<T>((resolve, reject) => {
      (client[method] as (r: object, o: object, cb: (e: grpc.ServiceError | null, v: T) => void) => void)(
        request,
        { deadline: Date.now() + 30000 },
        (err, value) => (err ? reject(err) : resolve(value)),
      );
    });
  }

  /** Allocate: one inner array of device IDs per container. Rejects with the plugin's gRPC error. */
  async allocate(resource: string, ids: string[][], pod?: PodRef): Promise<AllocateResponse> {
    const response = await this.unary<AllocateResponse>(resource, 'Allocate', {
      containerRequests: ids.map((devicesIds) => ({ devicesIds })),
    });
    if (pod) this.checkpoint?.recordAllocation(resource, ids, response, pod, this.healthyDevices());
    return response;
  }

  /**
   * The device-manager checkpoint this kubelet keeps (support/checkpoint.ts), if a test gave it one: then
   * `allocate(..., pod)` records the pod's devices and rewrites the file as the kubelet does.
   */
  checkpoint: KubeletCheckpoint | undefined;

  /** Resource -> its healthy device IDs (the kubelet checkpoints these as RegisteredDevices). */
  healthyDevices(): Map<string, string[]> {
    const out = new Map<string, string[]>();
    for (const [resource, conn] of this.plugins)
      out.set(
        resource,
        (conn.devices ?? []).filter((d) => d.health === 'Healthy').map((d) => d.ID),
      );
    return out;
  }

  getDevicePluginOptions(resource: string): Promise<{ preStartRequired: boolean; getPreferredAllocationAvailable: boolean }> {
    return this.unary(resource, 'GetDevicePluginOptions', {});
  }

  getPreferredAllocation(
    resource: string,
    requests: { availableDeviceIDs: string[]; mustIncludeDeviceIDs: string[]; allocationSize: number }[],
  ): Promise<{ containerResponses: { deviceIDs: string[] }[] }> {
    return this.unary(resource, 'GetPreferredAllocation', { containerRequests: requests });
  }

  preStartContainer(resource: string, ids: string[]): Promise<object> {
    return this.unary(resource, 'PreStartContainer', { devicesIds: ids });
  }

  /**
   * Simulates a kubelet restart: drops every plugin connection, deletes every socket in the directory (as the
   * kubelet does on start) and serves a new kubelet.sock that remembers no registrations.
   * With `onlyKubeletSocket`, only kubelet.sock is re-created: plugin sockets stay, and so do the old
   * instance's streams (as a dying kubelet's connections may linger), so a test can see the plugin end them.
   */
  async restart(opts: { onlyKubeletSocket?: boolean } = {}): Promise<void> {
    if (!opts.onlyKubeletSocket) this.dropConnections();
    await this.closeServer();
    for (const name of fs.readdirSync(this.dir)) {
      const file = path.join(this.dir, name);
      // A plugin may be re-creating its socket right now: a name gone since readdir is nothing to delete.
      if (fs.lstatSync(file, { throwIfNoEntry: false })?.isSocket() && (!opts.onlyKubeletSocket || file === this.socketPath))
        fs.rmSync(file, { force: true });
    }
    this.registrations = [];
    await this.serve();
  }

  private dropConnections(): void {
    for (const conn of this.plugins.values()) {
      conn.stream.cancel();
      conn.client.close();
    }
    this.plugins.clear();
  }

  /** Closes the Registration server; resolves once its listener is closed (it unlinks its path then). */
  private async closeServer(): Promise<void> {
    const relay = this.relay?.server;
    if (relay && this.relay) {
      this.relay.server = undefined;
      await relay.close();
    }
    const server = this.server;
    this.server = undefined;
    if (!server) return;
    await new Promise<void>((resolve) => {
      server.tryShutdown(() => resolve());
      server.forceShutdown();
    });
  }

  /** Stops serving and removes kubelet.sock. */
  async stop(): Promise<void> {
    this.dropConnections();
    await this.closeServer();
    fs.rmSync(this.socketPath, { force: true });
    if (this.relay) fs.rmSync(this.relay.dir, { recursive: true, force: true });
    this.removeAllListeners();
  }
}
