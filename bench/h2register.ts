/**
 * The kubelet's Registration service for Go clients, as a minimal HTTP/2 server on a unix socket: enough of
 * RFC 9113 and gRPC for one unary `/v1beta1.Registration/Register` call per stream.
 *
 * Why not the stand-in's grpc-js server: kubevirt's plugin (grpc-go of its era) sends the socket path as
 * `:authority`, and Node's HTTP/2 layer (nghttp2) answers a `/` in `:authority` with RST_STREAM
 * PROTOCOL_ERROR, so the Go plugin can never register with a Node server. Here the request headers are not
 * decoded at all (the socket serves only Register); the request body is protobuf, decoded by hand; the answer
 * is `:status 200`, `content-type: application/grpc`, an empty message and `grpc-status: 0`, HPACK-encoded
 * with literals only (no table state, no Huffman).
 */
import * as fs from 'node:fs';
import * as net from 'node:net';
import type { Registration } from '../test/support/kubelet';

const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');
const DATA = 0x0;
const HEADERS = 0x1;
const SETTINGS = 0x4;
const PING = 0x6;
const GOAWAY = 0x7;
const END_STREAM = 0x1;
const ACK = 0x1;
const END_HEADERS = 0x4;

function frame(type: number, flags: number, stream: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  const h = Buffer.alloc(9);
  h.writeUIntBE(payload.length, 0, 3);
  h[3] = type;
  h[4] = flags;
  h.writeUInt32BE(stream & 0x7fffffff, 5);
  return Buffer.concat([h, payload]);
}

/** An HPACK string literal (no Huffman); lengths here stay below 127. */
const str = (s: string): Buffer => Buffer.concat([Buffer.from([Buffer.byteLength(s)]), Buffer.from(s)]);
/** `:status: 200` (static table entry 8), then `content-type: application/grpc` (literal, indexed name 31). */
const RESPONSE_HEADERS = Buffer.concat([Buffer.from([0x88, 0x0f, 0x10]), str('application/grpc')]);
/** Trailers: literal header fields without indexing, new names. */
const trailers = (status: number, message: string): Buffer =>
  Buffer.concat([
    Buffer.from([0]),
    str('grpc-status'),
    str(String(status)),
    ...(message ? [Buffer.from([0]), str('grpc-message'), str(encodeURIComponent(message).slice(0, 120))] : []),
  ]);

/** Decodes RegisterRequest {1 version, 2 endpoint, 3 resource_name, 4 options {1 pre_start_required, 2 get_preferred_allocation_available}}. */
export function decodeRegisterRequest(buf: Buffer): Omit<Registration, 'at'> {
  const out: Omit<Registration, 'at'> = { version: '', endpoint: '', resourceName: '', options: null };
  let i = 0;
  const varint = (): number => {
    let v = 0;
    for (let shift = 0; ; shift += 7) {
      const b = buf[i++];
      v += (b & 0x7f) * 2 ** shift;
      if (!(b & 0x80)) return v;
    }
  };
  while (i < buf.length) {
    const key = varint();
    if ((key & 7) !== 2) throw new Error(`RegisterRequest: unexpected wire type ${key & 7}`);
    const len = varint();
    const body = buf.subarray(i, i + len);
    i += len;
    const field = key >>> 3;
    if (field === 1) out.version = body.toString();
    else if (field === 2) out.endpoint = body.toString();
    else if (field === 3) out.resourceName = body.toString();
    else if (field === 4)
      out.options = {
        preStartRequired: body.includes(Buffer.from([0x08, 0x01])),
        getPreferredAllocationAvailable: body.includes(Buffer.from([0x10, 0x01])),
      };
  }
  return out;
}

/** Serves Register on `socketPath`; `accept` decides (a rejection becomes grpc-status 2 with its message). */
export async function serveRegistration(socketPath: string, accept: (reg: Omit<Registration, 'at'>) => Promise<void>): Promise<net.Server> {
  fs.rmSync(socketPath, { force: true });
  const server = net.createServer((conn) => {
    let buf = Buffer.alloc(0);
    let prefaced = false;
    const bodies = new Map<number, Buffer[]>();
    conn.write(frame(SETTINGS, 0, 0));
    conn.on('error', () => conn.destroy());
    conn.on('data', (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      if (!prefaced) {
        if (buf.length < PREFACE.length) return;
        if (!buf.subarray(0, PREFACE.length).equals(PREFACE)) return conn.destroy();
        buf = buf.subarray(PREFACE.length);
        prefaced = true;
      }
      while (buf.length >= 9) {
        const len = buf.readUIntBE(0, 3);
        if (buf.length < 9 + len) return;
        const [type, flags, stream] = [buf[3], buf[4], buf.readUInt32BE(5) & 0x7fffffff];
        const payload = buf.subarray(9, 9 + len);
        buf = buf.subarray(9 + len);
        if (type === SETTINGS && !(flags & ACK)) conn.write(frame(SETTINGS, ACK, 0));
        else if (type === PING && !(flags & ACK)) conn.write(frame(PING, ACK, 0, Buffer.from(payload)));
        else if (type === GOAWAY) conn.end();
        else if (type === HEADERS) bodies.set(stream, []);
        else if (type === DATA) {
          const parts = bodies.get(stream);
          if (!parts) continue;
          parts.push(Buffer.from(payload));
          if (flags & END_STREAM) {
            bodies.delete(stream);
            const message = Buffer.concat(parts).subarray(5); // gRPC framing: compressed flag, length
            const reply = (status: number, text: string): void => {
              if (conn.destroyed) return;
              conn.write(frame(HEADERS, END_HEADERS, stream, RESPONSE_HEADERS));
              if (status === 0) conn.write(frame(DATA, 0, stream, Buffer.alloc(5)));
              conn.write(frame(HEADERS, END_HEADERS | END_STREAM, stream, trailers(status, text)));
            };
            let reg: Omit<Registration, 'at'>;
            try {
              reg = decodeRegisterRequest(message);
            } catch (err) {
              reply(3, (err as Error).message);
              continue;
            }
            accept(reg).then(
              () => reply(0, ''),
              (err: Error) => reply(2, err.message),
            );
          }
        }
      }
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(socketPath, () => resolve());
  });
  return server;
}
