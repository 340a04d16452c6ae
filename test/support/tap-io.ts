/**
 * Frames through tap character devices, as QEMU uses them: the data-path proof shared by the demo and the
 * tests. A frame written to a macvtap's /dev/tapN leaves through its lower device; one arriving for its MAC is
 * read back from it. The other end of the wire is watched through a probe: a passthru macvtap on the lower
 * device's veth peer, whose own tap device sees everything the peer receives.
 */
import * as fs from 'node:fs';
import { Netns } from '../../lib/netlink';
import { ip } from './kernel';

/** macvtap fds carry a virtio_net_hdr (10 bytes) before each frame unless told otherwise. */
export const VNET_HDR_LEN = 10;
/** IEEE 802 "local experimental" EtherType: no stack on either side reacts to it. */
export const ETHERTYPE_LOCAL_EXPERIMENTAL = 0x88b5;

type Teardown = { teardown(fn: () => void | Promise<void>): void };

/** A frame as written to a tap fd: virtio_net_hdr, Ethernet header, payload padded to the 46-byte minimum. */
export function makeFrame(dst: string, src: string, payload: string): Buffer {
  const eth = Buffer.alloc(14);
  Buffer.from(dst.replace(/:/g, ''), 'hex').copy(eth, 0);
  Buffer.from(src.replace(/:/g, ''), 'hex').copy(eth, 6);
  eth.writeUInt16BE(ETHERTYPE_LOCAL_EXPERIMENTAL, 12);
  const body = Buffer.from(payload.padEnd(46, '.'));
  return Buffer.concat([Buffer.alloc(VNET_HDR_LEN), eth, body]);
}

/** Writes one frame (a tap fd takes one whole frame per write). */
export function writeFrame(fd: number, frame: Buffer): void {
  const n = fs.writeSync(fd, frame);
  if (n !== frame.length) throw new Error(`short write to a tap: ${n} of ${frame.length} bytes`);
}

/** Reads frames from a non-blocking tap fd until one carries `marker`; undefined after `timeoutMs`. */
export async function readFrame(fd: number, marker: string, timeoutMs: number): Promise<Buffer | undefined> {
  const buf = Buffer.alloc(65536);
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    let n: number;
    try {
      n = fs.readSync(fd, buf, 0, buf.length, null);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EAGAIN') throw err;
      await new Promise((r) => setTimeout(r, 1));
      continue;
    }
    const frame = Buffer.from(buf.subarray(VNET_HDR_LEN, n));
    if (frame.includes(marker)) return frame;
  }
  return undefined;
}

/** `N bytes, src -> dst, ethertype 0x....` of a frame without its virtio header. */
export function describeFrame(frame: Buffer): string {
  const mac = (b: Buffer): string => [...b].map((x) => x.toString(16).padStart(2, '0')).join(':');
  return `${frame.length} bytes, ${mac(frame.subarray(6, 12))} -> ${mac(frame.subarray(0, 6))}, ethertype 0x${frame.readUInt16BE(12).toString(16)}`;
}

/** Destination and source MACs of a frame without its virtio header. */
export function frameMacs(frame: Buffer): { dst: string; src: string } {
  const mac = (b: Buffer): string => [...b].map((x) => x.toString(16).padStart(2, '0')).join(':');
  return { dst: mac(frame.subarray(0, 6)), src: mac(frame.subarray(6, 12)) };
}

/** Opens a tap device node read-write and non-blocking; closed at teardown. */
export function openTap(t: Teardown, file: string): number {
  const fd = fs.openSync(file, fs.constants.O_RDWR | fs.constants.O_NONBLOCK);
  t.teardown(() => fs.closeSync(fd));
  return fd;
}

/**
 * A passthru macvtap `name` on `wire` (in namespace `ns`) with MAC `mac` and ifindex `index`, up, and its tap
 * device opened: everything `wire` receives can be read from `fd`, and frames written to `fd` leave `wire`.
 * The link and the fd are removed at teardown.
 */
export function attachProbe(
  t: Teardown,
  opts: { ns: string; wire: string; index: number; mac: string; name?: string },
): { fd: number; path: string } {
  const name = opts.name ?? 'probe0';
  const handle = Netns.open(`/var/run/netns/${opts.ns}`);
  let path: string;
  try {
    const link = handle.createMacvtapSync({ name, lower: opts.wire, mode: 'passthru', index: opts.index, mac: opts.mac, up: true });
    t.teardown(() => {
      try {
        ip('-n', opts.ns, 'link', 'del', name);
      } catch {
        /* gone with its namespace */
      }
    });
    path = handle.tapDeviceSync(link).path;
  } finally {
    handle.close();
  }
  return { fd: openTap(t, path), path };
}
