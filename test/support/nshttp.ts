/**
 * HTTP from inside a test's network namespace: the daemon's endpoint listens in the namespace the test made
 * for it, which this process (in the machine's own namespace) cannot reach. One helper process per namespace
 * (`ip netns exec NS node -e ...`, plain JavaScript) makes the requests and reports each one as a JSON line,
 * with its time measured inside the namespace (what a Prometheus on the node would see).
 *
 * It also makes raw TCP exchanges (bytes in, whatever comes back until the server closes) and can hold a
 * port (listen on it) so a test can make the daemon's port be in use.
 */
import { ChildProcess, spawn } from 'node:child_process';
import { createInterface } from 'node:readline';

export interface NsResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
  /** Request sent -> whole body received, in ms. */
  ms: number;
}

type Teardown = { teardown(fn: () => void | Promise<void>): void };

const HELPER = String.raw`
const http = require('node:http');
const net = require('node:net');
const readline = require('node:readline');
const held = [];
const out = (o) => process.stdout.write(JSON.stringify(o) + '\n');
readline.createInterface({ input: process.stdin }).on('line', (line) => {
  const q = JSON.parse(line);
  if (q.op === 'http') {
    const t0 = process.hrtime.bigint();
    const req = http.request({ host: q.host, port: q.port, path: q.path, method: q.method, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c) => (body += c));
      res.on('end', () => out({ id: q.id, status: res.statusCode, headers: res.headers, body, ms: Number(process.hrtime.bigint() - t0) / 1e6 }));
    });
    req.on('error', (e) => out({ id: q.id, error: e.code || e.message }));
    req.setTimeout(15000, () => req.destroy(new Error('timeout')));
    req.end();
  } else if (q.op === 'raw') {
    const s = net.connect({ host: q.host, port: q.port });
    let got = '';
    s.setEncoding('latin1');
    s.on('connect', () => s.end(Buffer.from(q.data, 'base64')));
    s.on('data', (c) => (got += c));
    s.on('error', (e) => out({ id: q.id, error: e.code || e.message, raw: got }));
    s.on('close', () => out({ id: q.id, raw: got }));
    s.setTimeout(15000, () => s.destroy(new Error('timeout')));
  } else if (q.op === 'hold') {
    const server = net.createServer((c) => c.destroy());
    server.on('error', (e) => out({ id: q.id, error: e.code || e.message }));
    server.listen({ host: q.host, port: q.port }, () => {
      held.push(server);
      out({ id: q.id, port: server.address().port });
    });
  }
});
`;

interface Reply {
  id: number;
  error?: string;
  status?: number;
  headers?: NsResponse['headers'];
  body?: string;
  ms?: number;
  raw?: string;
  port?: number;
}

export class NsHttp {
  private readonly child: ChildProcess;
  private readonly pending = new Map<number, (r: Reply) => void>();
  private next = 1;

  private constructor(ns: string, node: string) {
    this.child = spawn('ip', ['netns', 'exec', ns, node, '-e', HELPER], { stdio: ['pipe', 'pipe', 'inherit'] });
    createInterface({ input: this.child.stdout as NodeJS.ReadableStream }).on('line', (line) => {
      const r = JSON.parse(line) as Reply;
      this.pending.get(r.id)?.(r);
      this.pending.delete(r.id);
    });
  }

  /** A helper in `ns` (loopback is brought up there), stopped at teardown. */
  static open(t: Teardown, ns: string, node = process.execPath): NsHttp {
    const h = new NsHttp(ns, node);
    t.teardown(() => h.close());
    return h;
  }

  private ask(q: Record<string, unknown>): Promise<Reply> {
    const id = this.next++;
    return new Promise((resolve) => {
      this.pending.set(id, resolve);
      (this.child.stdin as NodeJS.WritableStream).write(`${JSON.stringify({ ...q, id })}\n`);
    });
  }

  /** One HTTP request on a fresh connection. Rejects when no answer came (connection refused...). */
  async request(port: number, path: string, method = 'GET', host = '127.0.0.1'): Promise<NsResponse> {
    const r = await this.ask({ op: 'http', host, port, path, method });
    if (r.error !== undefined) throw new Error(`HTTP ${method} ${path} on ${host}:${port}: ${r.error}`);
    return { status: r.status as number, headers: r.headers ?? {}, body: r.body ?? '', ms: r.ms as number };
  }

  /** Sends `data` on a TCP connection, half-closes, and returns all the server sent until it closed. */
  async raw(port: number, data: Buffer | string, host = '127.0.0.1'): Promise<string> {
    const r = await this.ask({ op: 'raw', host, port, data: Buffer.from(data).toString('base64') });
    return r.raw ?? '';
  }

  /** Listens on `port` in the namespace (0: any free port) until close(); returns the port. */
  async hold(port = 0, host = '0.0.0.0'): Promise<number> {
    const r = await this.ask({ op: 'hold', host, port });
    if (r.error !== undefined) throw new Error(`cannot hold port ${port}: ${r.error}`);
    return r.port as number;
  }

  close(): void {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL');
  }
}

/** A Prometheus text exposition parsed into `name{labels}` -> value (labels as printed, sorted as printed). */
export function parseMetrics(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const at = line.lastIndexOf(' ');
    out.set(line.slice(0, at), Number(line.slice(at + 1)));
  }
  return out;
}
