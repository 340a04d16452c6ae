/** Encoding and decoding of rtnetlink messages (struct nlmsghdr + struct ifinfomsg + attributes). */
import { IFINFOMSG_LEN, NLA_F_NESTED, NLA_TYPE_MASK, NLMSG_HDRLEN } from './constants';

const align4 = (n: number): number => (n + 3) & ~3;

/** Builds one netlink message; nested attributes are opened and closed around their children. */
export class MessageBuilder {
  private buf = Buffer.alloc(256);
  private len = 0;
  private readonly nests: number[] = [];

  constructor(type: number, flags: number) {
    this.reserve(NLMSG_HDRLEN);
    this.buf.writeUInt16LE(type, 4);
    this.buf.writeUInt16LE(flags, 6);
    this.len = NLMSG_HDRLEN;
  }

  private reserve(extra: number): void {
    if (this.len + extra <= this.buf.length) return;
    const bigger = Buffer.alloc(Math.max(this.buf.length * 2, this.len + extra));
    this.buf.copy(bigger, 0, 0, this.len);
    this.buf = bigger;
  }

  /** struct ifinfomsg. */
  ifinfo(index: number, flags = 0, change = 0): this {
    this.reserve(IFINFOMSG_LEN);
    this.buf.fill(0, this.len, this.len + IFINFOMSG_LEN);
    this.buf.writeInt32LE(index, this.len + 4);
    this.buf.writeUInt32LE(flags >>> 0, this.len + 8);
    this.buf.writeUInt32LE(change >>> 0, this.len + 12);
    this.len += IFINFOMSG_LEN;
    return this;
  }

  attr(type: number, payload: Buffer): this {
    const total = 4 + payload.length;
    this.reserve(align4(total));
    this.buf.writeUInt16LE(total, this.len);
    this.buf.writeUInt16LE(type, this.len + 2);
    payload.copy(this.buf, this.len + 4);
    this.buf.fill(0, this.len + total, this.len + align4(total));
    this.len += align4(total);
    return this;
  }

  u32(type: number, value: number): this {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(value >>> 0);
    return this.attr(type, b);
  }

  s32(type: number, value: number): this {
    const b = Buffer.alloc(4);
    b.writeInt32LE(value);
    return this.attr(type, b);
  }

  u16(type: number, value: number): this {
    const b = Buffer.alloc(2);
    b.writeUInt16LE(value);
    return this.attr(type, b);
  }

  string(type: number, value: string): this {
    return this.attr(type, Buffer.from(`${value}\0`, 'utf8'));
  }

  begin(type: number): this {
    this.reserve(4);
    this.nests.push(this.len);
    this.buf.writeUInt16LE(type | NLA_F_NESTED, this.len + 2);
    this.len += 4;
    return this;
  }

  end(): this {
    const start = this.nests.pop();
    if (start === undefined) throw new Error('MessageBuilder.end() without begin()');
    this.buf.writeUInt16LE(this.len - start, start);
    return this;
  }

  /** The finished message with nlmsg_len filled in (seq and pid are stamped by the native socket). */
  finish(): Buffer {
    this.buf.writeUInt32LE(this.len, 0);
    return this.buf.subarray(0, this.len);
  }
}

/** Attribute type -> payload, for one level of attributes. Later duplicates win except where a list is read. */
export type Attributes = Map<number, Buffer>;

/** Parses a run of attributes. `list` collects every payload of the given type in order. */
export function parseAttributes(buf: Buffer, offset: number, end: number, list?: { type: number; out: Buffer[] }): Attributes {
  const attrs: Attributes = new Map();
  while (offset + 4 <= end) {
    const len = buf.readUInt16LE(offset);
    if (len < 4 || offset + len > end) break;
    const type = buf.readUInt16LE(offset + 2) & NLA_TYPE_MASK;
    const payload = buf.subarray(offset + 4, offset + len);
    attrs.set(type, payload);
    if (list && list.type === type) list.out.push(payload);
    offset += align4(len);
  }
  return attrs;
}

export function nested(payload: Buffer | undefined, list?: { type: number; out: Buffer[] }): Attributes {
  return payload ? parseAttributes(payload, 0, payload.length, list) : new Map<number, Buffer>();
}

export function readString(payload: Buffer | undefined): string | undefined {
  if (!payload) return undefined;
  const nul = payload.indexOf(0);
  return payload.toString('utf8', 0, nul === -1 ? payload.length : nul);
}

export const readU32 = (payload: Buffer | undefined): number | undefined =>
  payload && payload.length >= 4 ? payload.readUInt32LE(0) : undefined;
export const readS32 = (payload: Buffer | undefined): number | undefined =>
  payload && payload.length >= 4 ? payload.readInt32LE(0) : undefined;
export const readU16 = (payload: Buffer | undefined): number | undefined =>
  payload && payload.length >= 2 ? payload.readUInt16LE(0) : undefined;
export const readU8 = (payload: Buffer | undefined): number | undefined =>
  payload && payload.length >= 1 ? payload.readUInt8(0) : undefined;
