/**
 * The kubelet Device Plugin API v1beta1 (proto/deviceplugin/v1beta1/api.proto), loaded with
 * @grpc/proto-loader, and typed shapes of its messages as they appear in JS (`keepCase`: proto field names).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';

/** The API version sent in RegisterRequest. */
export const API_VERSION = 'v1beta1';
/** The kubelet's registration socket, inside the device-plugin directory. */
export const KUBELET_SOCKET = 'kubelet.sock';
/** Where the kubelet looks for device plugin sockets. */
export const DEFAULT_PLUGIN_DIR = '/var/lib/kubelet/device-plugins';
export const HEALTHY = 'Healthy';
export const UNHEALTHY = 'Unhealthy';

const PROTO_RELATIVE = path.join('proto', 'deviceplugin', 'v1beta1', 'api.proto');

let protoRoot: string | undefined;

/**
 * Lets a host say which directory holds `proto/` instead of searching for it (the single-executable build
 * embeds proto/ and serves it under a root of its own). Must be called before the first loadApi().
 */
export function setProtoRoot(dir: string): void {
  protoRoot = dir;
}

/** The api.proto file: under the root set by setProtoRoot, else searched upwards from this module (works from lib/ under ts and from dist/lib/). */
export function protoFile(): string {
  return protoPath(PROTO_RELATIVE);
}

/** A file under proto/ (`relative` includes the leading `proto/`), found as protoFile() finds api.proto. */
export function protoPath(relative: string): string {
  if (protoRoot !== undefined) return path.join(protoRoot, relative);
  const tried: string[] = [];
  for (let dir = __dirname; ; dir = path.dirname(dir)) {
    const candidate = path.join(dir, relative);
    tried.push(candidate);
    if (fs.existsSync(candidate)) return candidate;
    if (path.dirname(dir) === dir) break;
  }
  throw new Error(`API definition ${relative} not found; tried: ${tried.join(', ')}`);
}

export interface DevicePluginOptions {
  pre_start_required: boolean;
  get_preferred_allocation_available: boolean;
}
export interface RegisterRequest {
  version: string;
  endpoint: string;
  resource_name: string;
  options: DevicePluginOptions | null;
}
export interface Device {
  ID: string;
  health: string;
  topology?: { nodes: { ID: number }[] } | null;
}
export interface ListAndWatchResponse {
  devices: Device[];
}
export interface AllocateRequest {
  container_requests: { devices_ids: string[] }[];
}
export interface DeviceSpec {
  container_path: string;
  host_path: string;
  permissions: string;
}
export interface ContainerAllocateResponse {
  envs?: Record<string, string>;
  mounts?: { container_path: string; host_path: string; read_only: boolean }[];
  devices: DeviceSpec[];
  annotations?: Record<string, string>;
  cdi_devices?: { name: string }[];
}
export interface AllocateResponse {
  container_responses: ContainerAllocateResponse[];
}
export interface PreferredAllocationRequest {
  container_requests: { available_deviceIDs: string[]; must_include_deviceIDs: string[]; allocation_size: number }[];
}
export interface PreferredAllocationResponse {
  container_responses: { deviceIDs: string[] }[];
}
export interface PreStartContainerRequest {
  devices_ids: string[];
}

/** Service constructors (clients) and definitions (servers) of both services. */
export interface DevicePluginApi {
  Registration: grpc.ServiceClientConstructor;
  DevicePlugin: grpc.ServiceClientConstructor;
}

let cached: DevicePluginApi | undefined;

/** Loads the API once per process. */
export function loadApi(): DevicePluginApi {
  if (cached) return cached;
  const definition = protoLoader.loadSync(protoFile(), { keepCase: true, longs: Number, enums: String, defaults: true, oneofs: true });
  const pkg = grpc.loadPackageDefinition(definition).v1beta1 as grpc.GrpcObject;
  cached = {
    Registration: pkg.Registration as grpc.ServiceClientConstructor,
    DevicePlugin: pkg.DevicePlugin as grpc.ServiceClientConstructor,
  };
  return cached;
}
