/**
 * The device plugin's HTTP endpoint on the host network: `/metrics` (Prometheus text format), `/healthz`
 * (liveness) and `/readyz` (readiness). GET and HEAD only; anything else is answered 400/404/405 and the
 * server carries on. Bounded: small headers, short timeouts, few connections, no request body is read.
 */
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { errorMessage, Logger } from '../util/log';
import type { DaemonStatus } from './events';
import type { ListenAddress } from './ops-flags';

/** One check of /healthz or /readyz: its name and, when it fails, why. */
export interface Check {
  name: string;
  problem?: string;
}

/** A reconcile running this long is stuck (each of its steps has a timeout of a few seconds). */
export const RECONCILE_STUCK_MS = 60000;
/** The event loop took this long to come back to a request: something blocks it. */
export const LOOP_STUCK_MS = 2000;

/** Readiness: registered with the kubelet for every resource, the kubelet listening, link events flowing. */
export function readinessChecks(status: DaemonStatus): Check[] {
  const checks: Check[] = [
    { name: 'kubelet-socket', problem: status.kubeletSocket ? undefined : 'no kubelet.sock in the device-plugin directory' },
  ];
  checks.push({ name: 'link-events', problem: status.linkEvents ? undefined : 'the link-event subscription is closed (re-subscribing)' });
  for (const r of status.resources) {
    checks.push({ name: `registered:${r.resource}`, problem: r.registered ? undefined : 'not registered with the kubelet' });
    checks.push({ name: `listandwatch:${r.resource}`, problem: r.streams > 0 ? undefined : 'the kubelet has no ListAndWatch stream open' });
  }
  return checks;
}

/** Liveness: the event loop answers promptly and no reconcile is stuck. */
export async function livenessChecks(status: DaemonStatus, now = Date.now()): Promise<Check[]> {
  const t0 = process.hrtime.bigint();
  await new Promise<void>((resolve) => setImmediate(resolve));
  const loopMs = Number(process.hrtime.bigint() - t0) / 1e6;
  const reconcileMs = status.reconcilingSince === undefined ? 0 : now - status.reconcilingSince;
  return [
    { name: 'event-loop', problem: loopMs > LOOP_STUCK_MS ? `the event loop took ${Math.round(loopMs)} ms to turn` : undefined },
    {
      name: 'reconcile',
      problem: reconcileMs > RECONCILE_STUCK_MS ? `a reconcile has been running for ${Math.round(reconcileMs / 1000)} s` : undefined,
    },
  ];
}

export interface HttpServerOptions {
  listen: ListenAddress;
  log: Logger;
  status(): DaemonStatus;
  /** The /metrics body; undefined serves no /metrics (404). */
  metrics?: () => Promise<{ contentType: string; body: string }>;
}

/** Why the endpoint could not listen (port in use, no such address, no permission). */
export class ListenError extends Error {
  readonly code: string | undefined;
  constructor(listen: ListenAddress, err: NodeJS.ErrnoException) {
    const why: Record<string, string> = {
      EADDRINUSE: 'the port is already in use',
      EADDRNOTAVAIL: 'the address is not on this host',
      EACCES: 'permission denied',
    };
    super(`cannot listen on ${formatAddress(listen)}: ${(err.code && why[err.code]) ?? err.message}${err.code ? ` (${err.code})` : ''}`);
    this.name = 'ListenError';
    this.code = err.code;
  }
}

function formatAddress(a: ListenAddress): string {
  return a.host.includes(':') ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`;
}

const PLAIN = 'text/plain; charset=utf-8';

export class HttpEndpoint {
  private readonly server: http.Server;
  private readonly opts: HttpServerOptions;

  private constructor(opts: HttpServerOptions) {
    this.opts = opts;
    this.server = http.createServer(
      { maxHeaderSize: 8192, requestTimeout: 10000, headersTimeout: 5000, keepAliveTimeout: 5000 },
      (req, res) => this.handle(req, res),
    );
    this.server.maxConnections = 64;
    this.server.maxRequestsPerSocket = 100;
    // A request Node's parser rejects (garbage, oversized headers): answer 400 if the socket still takes it.
    this.server.on('clientError', (err: NodeJS.ErrnoException, socket) => {
      opts.log.debug('bad HTTP request', { err: err.code ?? errorMessage(err) });
      if (socket.writable && err.code !== 'ECONNRESET') {
        const status = err.code === 'HPE_HEADER_OVERFLOW' ? '431 Request Header Fields Too Large' : '400 Bad Request';
        socket.end(`HTTP/1.1 ${status}\r\nContent-Type: ${PLAIN}\r\nContent-Length: 12\r\nConnection: close\r\n\r\nbad request\n`);
      } else socket.destroy();
    });
  }

  /** Listens; rejects with ListenError when the address cannot be bound. */
  static async start(opts: HttpServerOptions): Promise<HttpEndpoint> {
    const endpoint = new HttpEndpoint(opts);
    await new Promise<void>((resolve, reject) => {
      const onError = (err: NodeJS.ErrnoException): void => reject(new ListenError(opts.listen, err));
      endpoint.server.once('error', onError);
      endpoint.server.listen({ host: opts.listen.host, port: opts.listen.port }, () => {
        endpoint.server.off('error', onError);
        resolve();
      });
    });
    endpoint.server.on('error', (err) => opts.log.error('HTTP endpoint failed', { err: errorMessage(err) }));
    return endpoint;
  }

  /** The bound address (the real port when 0 was asked for). */
  get address(): ListenAddress {
    const a = this.server.address() as AddressInfo;
    return { host: a.address, port: a.port };
  }

  async stop(): Promise<void> {
    await new Promise<void>((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    // No endpoint takes a body: never read one, and close a connection that sent one.
    req.resume();
    const hasBody = req.headers['content-length'] !== undefined && req.headers['content-length'] !== '0';
    if (hasBody || req.headers['transfer-encoding'] !== undefined) res.setHeader('Connection', 'close');
    let pathname: string;
    try {
      pathname = new URL(req.url ?? '', 'http://endpoint').pathname;
      if (!(req.url ?? '').startsWith('/')) throw new Error('not an origin-form request target');
    } catch {
      return this.reply(req, res, 400, PLAIN, 'bad request target\n');
    }
    const route = ROUTES.get(pathname);
    if (!route || (route === 'metrics' && !this.opts.metrics)) return this.reply(req, res, 404, PLAIN, 'not found\n');
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.setHeader('Allow', 'GET, HEAD');
      return this.reply(req, res, 405, PLAIN, 'method not allowed\n');
    }
    this.serve(route, req, res).catch((err: unknown) => {
      this.opts.log.error('HTTP request failed', { path: pathname, err: errorMessage(err) });
      if (!res.headersSent) this.reply(req, res, 500, PLAIN, 'internal error\n');
      else res.destroy();
    });
  }

  private async serve(route: Route, req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    if (route === 'metrics') {
      const { contentType, body } = await (this.opts.metrics as NonNullable<HttpServerOptions['metrics']>)();
      return this.reply(req, res, 200, contentType, body);
    }
    const status = this.opts.status();
    const checks = route === 'healthz' ? await livenessChecks(status) : readinessChecks(status);
    const failed = checks.filter((c) => c.problem !== undefined);
    // As Kubernetes components answer: `ok`, or one line per check, `[-]` for those that fail.
    const body =
      failed.length === 0 ? 'ok\n' : checks.map((c) => (c.problem ? `[-]${c.name}: ${c.problem}\n` : `[+]${c.name} ok\n`)).join('');
    this.reply(req, res, failed.length === 0 ? 200 : 503, PLAIN, body);
  }

  private reply(req: http.IncomingMessage, res: http.ServerResponse, code: number, type: string, body: string): void {
    res.writeHead(code, { 'Content-Type': type, 'Content-Length': Buffer.byteLength(body), 'Cache-Control': 'no-store' });
    res.end(req.method === 'HEAD' ? undefined : body);
  }
}

type Route = 'metrics' | 'healthz' | 'readyz';
const ROUTES = new Map<string, Route>([
  ['/metrics', 'metrics'],
  ['/healthz', 'healthz'],
  ['/readyz', 'readyz'],
]);
