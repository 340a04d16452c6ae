/**
 * Fixtures for the state module's tests: a temp state directory removed at teardown, a logger that keeps its
 * events, file-system mounts (tmpfs, read-only) that are always unmounted, and records as the programs write them.
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { AllocationRecord, AttachmentRecord } from '../../lib/state';
import { hostLinkName } from '../../lib/naming';
import { Logger } from '../../lib/util/log';

type Teardown = { teardown(fn: () => void | Promise<void>): void };

/** A fresh, root-only directory; the state directory is `<it>/state` (not yet created). */
export function tempDir(t: Teardown, prefix = 'macvtap-state-test-'): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

export interface LogEvent {
  level: string;
  msg: string;
  [key: string]: unknown;
}

/** A logger whose events are kept in `events`. */
export function memoryLog(): { log: Logger; events: LogEvent[] } {
  const events: LogEvent[] = [];
  const log = new Logger({ level: 'debug', sink: (line) => events.push(JSON.parse(line) as LogEvent) });
  return { log, events };
}

/** Mounts a tmpfs at `dir` (with `options`, e.g. `size=64k`); unmounted at teardown, also lazily if busy. */
export function mountTmpfs(t: Teardown, dir: string, options = 'size=1m'): void {
  fs.mkdirSync(dir, { recursive: true });
  execFileSync('mount', ['-t', 'tmpfs', '-o', `${options},mode=0700`, 'tmpfs', dir]);
  t.teardown(() => unmount(dir));
}

export function unmount(dir: string): void {
  try {
    execFileSync('umount', [dir], { stdio: 'ignore' });
  } catch {
    try {
      execFileSync('umount', ['-l', dir], { stdio: 'ignore' });
    } catch {
      /* not mounted */
    }
  }
}

/** Fills the file system holding `dir` (a small tmpfs) until writes fail with ENOSPC. */
export function fill(dir: string): void {
  const chunk = Buffer.alloc(4096, 1);
  const fd = fs.openSync(path.join(dir, 'filler'), 'w');
  try {
    for (;;) fs.writeSync(fd, chunk);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err;
  } finally {
    fs.closeSync(fd);
  }
}

export function allocation(extra: Partial<AllocationRecord> = {}): AllocationRecord {
  const deviceID = extra.deviceID ?? 'dataplaneMvp0';
  return {
    version: 1,
    deviceID,
    resource: 'macvtap.network.kubevirt.io/dataplane',
    linkName: hostLinkName(deviceID),
    lowerDevice: 'eth1',
    mode: 'bridge',
    ifindex: 40000,
    txqueuelen: 1000,
    allocatedAt: new Date().toISOString(),
    ...extra,
  };
}

export function attachment(extra: Partial<AttachmentRecord> = {}): AttachmentRecord {
  const deviceID = extra.deviceID ?? 'dataplaneMvp0';
  return {
    version: 2,
    deviceID,
    containerID: 'c0ffee01',
    ifname: 'net1',
    network: 'dataplane',
    netns: '/var/run/netns/pod',
    hostName: hostLinkName(deviceID),
    ifindex: 40000,
    lowerIndex: 2,
    original: { mac: '02:00:00:00:00:01', mtu: 1500, promisc: false, up: false },
    attachedAt: new Date().toISOString(),
    ...extra,
  };
}

/** `stat` mode bits of a path, as octal text. */
export function modeOf(file: string): string {
  return (fs.lstatSync(file).mode & 0o7777).toString(8);
}
