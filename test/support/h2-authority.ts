/**
 * A unix-socket relay that lets older grpc-go clients reach a grpc-js (Node http2) server.
 *
 * grpc-go dialing a unix socket by path (kubevirt's device plugin dialing kubelet.sock) sends the path as the
 * HTTP/2 `:authority` (`/var/lib/kubelet/device-plugins/kubelet.sock`). nghttp2, under Node's http2, refuses
 * an authority with `/` in it and resets the stream (PROTOCOL_ERROR), while the kubelet (grpc-go) accepts it.
 * The relay rewrites that one header in the client's HEADERS blocks to `localhost` and passes every other byte
 * through unchanged, in both directions.
 *
 * The rewrite keeps each header's HPACK representation (an incrementally indexed `:authority` is still
 * indexed, with the new value), so both sides' dynamic tables keep the same entries at the same indexes; the
 * server's entry is only smaller, which can delay its evictions but never shifts an index the client uses.
 */
import * as net from 'node:net';

const PREFACE_LEN = 24;
const FRAME_HEADER_LEN = 9;
const TYPE_HEADERS = 0x1;
const TYPE_CONTINUATION = 0x9;
const FLAG_END_HEADERS = 0x4;
const FLAG_PADDED = 0x8;
const FLAG_PRIORITY = 0x20;
/** SETTINGS_MAX_FRAME_SIZE's initial value: a rewritten block is split into frames no larger. */
const MAX_FRAME = 16384;
/** Static table index of `:authority` (RFC 7541 appendix A). */
const AUTHORITY_INDEX = 1;
const AUTHORITY = Buffer.from(':authority');
const REPLACEMENT = Buffer.from('localhost');

/** Decodes an HPACK integer with an `n`-bit prefix at `off`; returns [value, next offset]. */
function readInt(buf: Buffer, off: number, n: number): [number, number] {
  const max = (1 << n) - 1;
  let value = buf[off] & max;
  off += 1;
  if (value < max) return [value, off];
  let shift = 0;
  for (;;) {
    if (off >= buf.length) throw new Error('truncated HPACK integer');
    const b = buf[off++];
    value += (b & 0x7f) * 2 ** shift;
    shift += 7;
    if ((b & 0x80) === 0) return [value, off];
  }
}

/** Encodes `value` as an HPACK integer with an `n`-bit prefix whose other bits are `flags`. */
function writeInt(value: number, n: number, flags: number): Buffer {
  const max = (1 << n) - 1;
  if (value < max) return Buffer.from([flags | value]);
  const out = [flags | max];
  value -= max;
  while (value >= 0x80) {
    out.push((value % 0x80) | 0x80);
    value = Math.floor(value / 0x80);
  }
  out.push(value);
  return Buffer.from(out);
}

/** Skips an HPACK string literal; returns [raw bytes (undefined if Huffman-coded), next offset]. */
function readString(buf: Buffer, off: number): [Buffer | undefined, number] {
  const huffman = (buf[off] & 0x80) !== 0;
  const [len, start] = readInt(buf, off, 7);
  if (start + len > buf.length) throw new Error('truncated HPACK string');
  return [huffman ? undefined : buf.subarray(start, start + len), start + len];
}

function literal(value: Buffer): Buffer {
  return Buffer.concat([writeInt(value.length, 7, 0), value]);
}

/** The header block with every `:authority` value replaced by `localhost`. */
export function rewriteAuthority(block: Buffer): Buffer {
  const parts: Buffer[] = [];
  let off = 0;
  while (off < block.length) {
    const start = off;
    const b = block[off];
    if (b & 0x80) {
      // Indexed field: an indexed :authority would come from the static table (no value) or the dynamic one
      // (already rewritten when it was added).
      off = readInt(block, off, 7)[1];
      parts.push(block.subarray(start, off));
      continue;
    }
    if ((b & 0xe0) === 0x20) {
      off = readInt(block, off, 5)[1];
      parts.push(block.subarray(start, off));
      continue;
    }
    // Literal: with incremental indexing (01, 6-bit index) or without / never indexed (0000 / 0001, 4-bit).
    const prefix = (b & 0xc0) === 0x40 ? 6 : 4;
    const [index, afterIndex] = readInt(block, off, prefix);
    off = afterIndex;
    let isAuthority = index === AUTHORITY_INDEX;
    let nameEnd = off;
    if (index === 0) {
      const [name, next] = readString(block, off);
      isAuthority = name !== undefined && name.equals(AUTHORITY);
      nameEnd = next;
    }
    const [, valueEnd] = readString(block, nameEnd);
    off = valueEnd;
    parts.push(isAuthority ? Buffer.concat([block.subarray(start, nameEnd), literal(REPLACEMENT)]) : block.subarray(start, off));
  }
  return Buffer.concat(parts);
}

function frame(type: number, flags: number, stream: number, payload: Buffer): Buffer {
  const header = Buffer.alloc(FRAME_HEADER_LEN);
  header.writeUIntBE(payload.length, 0, 3);
  header[3] = type;
  header[4] = flags;
  header.writeUInt32BE(stream, 5);
  return Buffer.concat([header, payload]);
}

/** Rewrites the client-to-server byte stream of one connection. */
class ClientStream {
  private buf = Buffer.alloc(0);
  private prefaceLeft = PREFACE_LEN;
  /** A header block being collected across HEADERS + CONTINUATION frames. */
  private pending: { stream: number; flags: number; priority: Buffer; block: Buffer[] } | undefined;

  push(chunk: Buffer): Buffer {
    this.buf = Buffer.concat([this.buf, chunk]);
    const out: Buffer[] = [];
    if (this.prefaceLeft > 0) {
      const n = Math.min(this.prefaceLeft, this.buf.length);
      out.push(this.buf.subarray(0, n));
      this.buf = this.buf.subarray(n);
      this.prefaceLeft -= n;
    }
    while (this.prefaceLeft === 0 && this.buf.length >= FRAME_HEADER_LEN) {
      const len = this.buf.readUIntBE(0, 3);
      if (this.buf.length < FRAME_HEADER_LEN + len) break;
      const type = this.buf[3];
      const flags = this.buf[4];
      const stream = this.buf.readUInt32BE(5) & 0x7fffffff;
      const payload = this.buf.subarray(FRAME_HEADER_LEN, FRAME_HEADER_LEN + len);
      const whole = this.buf.subarray(0, FRAME_HEADER_LEN + len);
      this.buf = this.buf.subarray(FRAME_HEADER_LEN + len);
      if (type === TYPE_HEADERS) {
        let p = payload;
        let pad = 0;
        if (flags & FLAG_PADDED) {
          pad = p[0];
          p = p.subarray(1);
        }
        const priority = flags & FLAG_PRIORITY ? p.subarray(0, 5) : Buffer.alloc(0);
        p = p.subarray(priority.length, p.length - pad);
        this.pending = { stream, flags: flags & ~FLAG_PADDED & ~FLAG_END_HEADERS, priority, block: [p] };
      } else if (type === TYPE_CONTINUATION && this.pending) {
        this.pending.block.push(payload);
      } else {
        out.push(whole);
        continue;
      }
      if (flags & FLAG_END_HEADERS) out.push(this.flush());
    }
    return Buffer.concat(out);
  }

  private flush(): Buffer {
    const { stream, flags, priority, block } = this.pending as NonNullable<ClientStream['pending']>;
    this.pending = undefined;
    const rewritten = rewriteAuthority(Buffer.concat(block));
    const first = Buffer.concat([priority, rewritten]);
    const frames: Buffer[] = [];
    for (let off = 0; off === 0 || off < first.length; off += MAX_FRAME) {
      const last = off + MAX_FRAME >= first.length;
      const chunk = first.subarray(off, off + MAX_FRAME);
      frames.push(
        off === 0
          ? frame(TYPE_HEADERS, flags | (last ? FLAG_END_HEADERS : 0), stream, chunk)
          : frame(TYPE_CONTINUATION, last ? FLAG_END_HEADERS : 0, stream, chunk),
      );
    }
    return Buffer.concat(frames);
  }
}

export interface Relay {
  /** Stops listening (the listener unlinks its path) and drops open connections. */
  close(): Promise<void>;
}

/** Listens on `listenPath` and relays each connection to the server on `targetPath`. */
export function startAuthorityRelay(listenPath: string, targetPath: string): Promise<Relay> {
  const open = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const upstream = net.connect(targetPath);
    open.add(client).add(upstream);
    const rewriter = new ClientStream();
    client.on('data', (chunk: Buffer) => {
      try {
        upstream.write(rewriter.push(chunk));
      } catch {
        client.destroy();
        upstream.destroy();
      }
    });
    upstream.pipe(client);
    client.on('end', () => upstream.end());
    client.on('error', () => upstream.destroy());
    upstream.on('error', () => client.destroy());
    client.on('close', () => {
      open.delete(client);
      upstream.destroy();
    });
    upstream.on('close', () => {
      open.delete(upstream);
      client.destroy();
    });
  });
  const relay: Relay = {
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const s of open) s.destroy();
      }),
  };
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(listenPath, () => resolve(relay));
  });
}
