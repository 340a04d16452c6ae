/**
 * One resource `macvtap.network.kubevirt.io/<name>`: its DevicePlugin gRPC server on
 * `<pluginDir>/macvtap.network.kubevirt.io_<name>`, its device list and the ListAndWatch streams reading it.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { deviceId, resourceName } from '../naming';
import type { Link } from '../netlink';
import { AllocateError, Allocator } from './allocator';
import {
  AllocateRequest,
  AllocateResponse,
  API_VERSION,
  Device,
  DevicePluginOptions,
  HEALTHY,
  KUBELET_SOCKET,
  ListAndWatchResponse,
  loadApi,
  PreferredAllocationRequest,
  PreferredAllocationResponse,
  RegisterRequest,
  UNHEALTHY,
} from './api';
import { ResourceConfig, socketName } from './config';
import type { AllocateResult, DaemonEvents } from './events';
import { errorMessage, Logger } from '../util/log';

/** What this plugin tells the kubelet (see GetDevicePluginOptions). */
export const PLUGIN_OPTIONS: DevicePluginOptions = { pre_start_required: false, get_preferred_allocation_available: false };

const REGISTER_TIMEOUT_MS = 5000;
const SHUTDOWN_WAIT_MS = 1000;
/** How long a stopping server lets calls in progress complete (their answers are written) before cutting them. */
const STOP_GRACE_MS = 250;

/** Healthy while the lower device exists and is administratively up. */
export function lowerHealthy(lower: Link | undefined): boolean {
  return lower !== undefined && lower.flags.up;
}

type Stream = grpc.ServerWritableStream<unknown, ListAndWatchResponse>;
/** The loaded Registration client with its one method typed. */
type RegistrationClient = grpc.Client & {
  Register(request: RegisterRequest, options: grpc.CallOptions, callback: (err: grpc.ServiceError | null) => void): grpc.ClientUnaryCall;
};

export class ResourcePlugin {
  config: ResourceConfig;
  readonly resource: string;
  readonly socketPath: string;
  private readonly log: Logger;
  private readonly allocator: Allocator;
  private server: grpc.Server | undefined;
  /** Inode of the socket file our server bound, to tell it from a file someone else made. */
  private socketIno: number | undefined;
  private readonly streams = new Set<Stream>();
  private healthy = false;
  /** Identity of the kubelet we last registered with (see Daemon); undefined when not registered. */
  registeredWith: string | undefined;
  /** Where Allocate outcomes and registrations are reported (set by the Daemon). */
  events: DaemonEvents | undefined;

  constructor(config: ResourceConfig, pluginDir: string, allocator: Allocator, log: Logger) {
    this.config = config;
    this.resource = resourceName(config.name);
    this.socketPath = path.join(pluginDir, socketName(config.name));
    this.allocator = allocator;
    this.log = log.child({ resource: this.resource });
  }

  /** The device list as the kubelet sees it. */
  devices(): Device[] {
    if (this.config.lowerDevice === undefined) return [];
    const health = this.healthy ? HEALTHY : UNHEALTHY;
    return Array.from({ length: this.config.capacity }, (_, i) => ({ ID: deviceId(this.config.name, i), health }));
  }

  get isHealthy(): boolean {
    return this.healthy;
  }

  get streamCount(): number {
    return this.streams.size;
  }

  /** Sets health from the lower device's current state; pushes the list to every stream if it changed. */
  updateHealth(lower: Link | undefined): void {
    const healthy = lowerHealthy(lower);
    if (healthy === this.healthy) return;
    this.healthy = healthy;
    this.log.info(healthy ? 'lower device is up: devices healthy' : 'lower device is missing or down: devices unhealthy', {
      lowerDevice: this.config.lowerDevice,
    });
    this.broadcast();
  }

  /** Applies a changed configuration of the same name; pushes the list (capacity may have changed). */
  reconfigure(config: ResourceConfig, lower: Link | undefined): void {
    this.config = config;
    this.healthy = lowerHealthy(lower);
    this.log.info('configuration changed', { lowerDevice: config.lowerDevice, mode: config.mode, capacity: config.capacity });
    this.broadcast();
  }

  private broadcast(devices: Device[] = this.devices()): void {
    for (const stream of this.streams) stream.write({ devices });
  }

  /** Whether our server is listening on a socket file that is still ours. */
  socketIntact(): boolean {
    if (!this.server || this.socketIno === undefined) return false;
    try {
      return fs.statSync(this.socketPath).ino === this.socketIno;
    } catch {
      return false;
    }
  }

  /** (Re)starts the gRPC server on a fresh socket file; ends the streams of the previous server. */
  async serve(): Promise<void> {
    // The old listener unlinks its path when it closes: let it finish before binding that path again.
    await this.shutdownServer();
    fs.rmSync(this.socketPath, { force: true });
    const server = new grpc.Server();
    server.addService(loadApi().DevicePlugin.service, this.handlers());
    await new Promise<void>((resolve, reject) => {
      server.bindAsync(`unix:${this.socketPath}`, grpc.ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve()));
    });
    this.server = server;
    this.socketIno = fs.statSync(this.socketPath).ino;
    this.registeredWith = undefined;
    this.log.info('serving', { socket: this.socketPath });
  }

  /** Registers with the kubelet on `<pluginDir>/kubelet.sock`. */
  async register(kubelet: string): Promise<void> {
    const { Registration } = loadApi();
    const kubeletSocket = path.join(path.dirname(this.socketPath), KUBELET_SOCKET);
    const client = new Registration(`unix:${kubeletSocket}`, grpc.credentials.createInsecure()) as unknown as RegistrationClient;
    const request: RegisterRequest = {
      version: API_VERSION,
      endpoint: path.basename(this.socketPath),
      resource_name: this.resource,
      options: PLUGIN_OPTIONS,
    };
    try {
      await new Promise<void>((resolve, reject) => {
        client.Register(request, { deadline: Date.now() + REGISTER_TIMEOUT_MS }, (err: grpc.ServiceError | null) =>
          err ? reject(err) : resolve(),
        );
      });
    } finally {
      client.close();
    }
    this.registeredWith = kubelet;
    this.log.info('registered with the kubelet', { endpoint: request.endpoint });
    this.events?.emit('registered', { resource: this.resource });
  }

  /**
   * Tells the kubelet there are no devices, ends every stream, stops serving and removes our socket. Answers
   * already given (an Allocate that finished while the daemon was stopping) are let out first.
   */
  async stop(): Promise<void> {
    this.broadcast([]);
    await this.shutdownServer(STOP_GRACE_MS);
    if (this.socketIno !== undefined) {
      try {
        if (fs.statSync(this.socketPath).ino === this.socketIno) fs.rmSync(this.socketPath, { force: true });
      } catch {
        /* already gone */
      }
    }
    this.socketIno = undefined;
    this.registeredWith = undefined;
    this.log.info('stopped serving');
  }

  /**
   * Ends every stream and closes the server; resolves once its listener is closed (bounded wait). With `graceMs`,
   * calls in progress (an answer being written) get that long to complete before the connections are cut.
   */
  private async shutdownServer(graceMs = 0): Promise<void> {
    for (const stream of this.streams) stream.end();
    this.streams.clear();
    const server = this.server;
    this.server = undefined;
    if (!server) return;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, SHUTDOWN_WAIT_MS + graceMs);
      const force = graceMs > 0 ? setTimeout(() => server.forceShutdown(), graceMs) : undefined;
      server.tryShutdown(() => {
        clearTimeout(timer);
        clearTimeout(force);
        resolve();
      });
      if (!force) server.forceShutdown();
    });
  }

  private handlers(): grpc.UntypedServiceImplementation {
    return {
      GetDevicePluginOptions: (_call: grpc.ServerUnaryCall<unknown, DevicePluginOptions>, cb: grpc.sendUnaryData<DevicePluginOptions>) =>
        cb(null, PLUGIN_OPTIONS),
      ListAndWatch: (call: Stream) => this.listAndWatch(call),
      GetPreferredAllocation: (
        call: grpc.ServerUnaryCall<PreferredAllocationRequest, PreferredAllocationResponse>,
        cb: grpc.sendUnaryData<PreferredAllocationResponse>,
      ) => cb(null, this.preferredAllocation(call.request)),
      Allocate: (call: grpc.ServerUnaryCall<AllocateRequest, AllocateResponse>, cb: grpc.sendUnaryData<AllocateResponse>) => {
        const started = process.hrtime.bigint();
        const report = (result: AllocateResult): void => {
          const seconds = Number(process.hrtime.bigint() - started) / 1e9;
          const devices = call.request.container_requests.reduce((n, c) => n + c.devices_ids.length, 0);
          this.events?.emit('allocate', { resource: this.resource, devices, result, seconds });
        };
        this.allocate(call.request).then(
          (response) => {
            report('ok');
            cb(null, response);
          },
          (err: unknown) => {
            report(err instanceof AllocateError ? err.kind : 'internal');
            cb(toStatus(err));
          },
        );
      },
      PreStartContainer: (_call: grpc.ServerUnaryCall<unknown, unknown>, cb: grpc.sendUnaryData<unknown>) => cb(null, {}),
    };
  }

  private listAndWatch(call: Stream): void {
    this.streams.add(call);
    this.log.debug('ListAndWatch opened', { streams: this.streams.size });
    const forget = (): void => {
      if (this.streams.delete(call)) this.log.debug('ListAndWatch closed', { streams: this.streams.size });
    };
    call.on('cancelled', forget);
    call.on('close', forget);
    call.on('error', forget);
    call.write({ devices: this.devices() });
  }

  /**
   * Every device is equivalent, so the preference is simply: the must-include devices, then the lowest-numbered
   * available ones, up to the requested size.
   */
  preferredAllocation(request: PreferredAllocationRequest): PreferredAllocationResponse {
    const order = (id: string): number => Number(id.slice(id.lastIndexOf('Mvp') + 3));
    return {
      container_responses: request.container_requests.map((r) => {
        const chosen = [...new Set(r.must_include_deviceIDs)];
        const rest = r.available_deviceIDs.filter((id) => !chosen.includes(id)).sort((a, b) => order(a) - order(b));
        while (chosen.length < r.allocation_size && rest.length) chosen.push(rest.shift() as string);
        return { deviceIDs: chosen };
      }),
    };
  }

  private async allocate(request: AllocateRequest): Promise<AllocateResponse> {
    if (this.config.lowerDevice === undefined)
      throw new AllocateError('precondition', `${this.resource} has no lowerDevice in its configuration: it offers no devices`);
    const all = request.container_requests.flatMap((c) => c.devices_ids);
    checkDeviceIds(all, this.config.name, this.config.capacity, this.resource);
    const started = process.hrtime.bigint();
    // One all-or-nothing batch for the whole request, then split per container.
    let made;
    try {
      made = await this.allocator.allocate(this.config, all, this.log);
    } catch (err) {
      this.log.error('Allocate failed', { devices: all, err: errorMessage(err) });
      throw err;
    }
    const byId = new Map(made.map((d) => [d.deviceID, d]));
    const response: AllocateResponse = {
      container_responses: request.container_requests.map((c) => ({
        devices: c.devices_ids.map((id) => {
          const tap = (byId.get(id) as { tapPath: string }).tapPath;
          return { container_path: tap, host_path: tap, permissions: 'rw' };
        }),
      })),
    };
    this.log.info('allocated', {
      devices: made.map((d) => ({ id: d.deviceID, link: d.linkName, tap: d.tapPath })),
      ms: Number(process.hrtime.bigint() - started) / 1e6,
    });
    return response;
  }
}

/** Device IDs listed in an error: enough to recognise them, never a message the size of the request. */
const SHOWN_IDS = 5;
const SHOWN_ID_CHARS = 80;

function showIds(ids: string[]): string {
  return ids
    .slice(0, SHOWN_IDS)
    .map((id) => JSON.stringify(id.length > SHOWN_ID_CHARS ? `${id.slice(0, SHOWN_ID_CHARS)}...` : id))
    .join(', ');
}

/**
 * Every ID must be one of ours (`<name>Mvp<i>`, i < capacity) and appear once: checked by parsing, not by
 * building the set of all IDs, so a request costs the same whatever the capacity.
 */
export function checkDeviceIds(ids: string[], name: string, capacity: number, resource: string): void {
  const prefix = `${name}Mvp`;
  const unknown = ids.filter((id) => {
    if (!id.startsWith(prefix)) return true;
    const n = id.slice(prefix.length);
    return !/^(0|[1-9]\d{0,8})$/.test(n) || Number(n) >= capacity;
  });
  if (unknown.length === 1) throw new AllocateError('invalid', `unknown device ID ${showIds(unknown)} for ${resource}`);
  if (unknown.length > 1) {
    const first = unknown.length > SHOWN_IDS ? `, first ${SHOWN_IDS}` : '';
    throw new AllocateError('invalid', `${unknown.length} unknown device IDs for ${resource}${first}: ${showIds(unknown)}`);
  }
  const seen = new Set<string>();
  const twice = ids.filter((id) => seen.size === seen.add(id).size);
  if (twice.length) throw new AllocateError('invalid', `device ID ${showIds(twice.slice(0, 1))} requested twice`);
}

function toStatus(err: unknown): Partial<grpc.StatusObject> {
  const code =
    err instanceof AllocateError
      ? { invalid: grpc.status.INVALID_ARGUMENT, precondition: grpc.status.FAILED_PRECONDITION, internal: grpc.status.INTERNAL }[err.kind]
      : grpc.status.INTERNAL;
  return { code, details: errorMessage(err) };
}
