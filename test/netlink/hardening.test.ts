// Addon hardening that can be provoked (root only): a refused task is an error in JS, not an abort; blocking
// requests time out; only the kernel's replies count; close() cancels a request the native layer holds.
import { execFile, execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { promisify } from 'node:util';
import t from 'tap';
import { NetlinkError, Netns } from '../../lib/netlink';
import { IFLA_IFNAME, NLM_F_ACK, NLM_F_REQUEST, RTM_GETLINK, RTM_SETLINK } from '../../lib/netlink/constants';
import { decodeLink } from '../../lib/netlink/link';
import { MessageBuilder } from '../../lib/netlink/message';
import { native } from '../../lib/netlink/native';
import { rootOnly } from '../support/kernel';
import { emptyNetns, settle } from './fixtures';

const run = promisify(execFile);

/** A pids cgroup directory we may create children in (v1 `pids` hierarchy or v2 unified with pids), or why not. */
function pidsCgroupRoot(): string | undefined {
  if (fs.existsSync('/sys/fs/cgroup/pids/cgroup.procs')) return '/sys/fs/cgroup/pids';
  try {
    if (fs.readFileSync('/sys/fs/cgroup/cgroup.subtree_control', 'utf8').includes('pids')) return '/sys/fs/cgroup';
  } catch {
    /* no v2 */
  }
  return undefined;
}
const cgroupRoot = pidsCgroupRoot();

t.test(
  'a task the kernel refuses (pids cgroup full) is a NetlinkError, and the process goes on',
  { skip: rootOnly || (cgroupRoot ? false : 'no pids cgroup controller to cap tasks with') },
  async (t) => {
    const dst = emptyNetns(t);
    const cgroup = path.join(cgroupRoot as string, `mvt-test-${process.pid}`);
    fs.mkdirSync(cgroup);
    t.teardown(() => fs.rmdirSync(cgroup));
    const child = path.join(__dirname, 'task-limit-child.ts');
    const { stdout } = await run(process.execPath, [...process.execArgv, child, cgroup, `/var/run/netns/${dst.ns}`]);
    const r = JSON.parse(stdout.trim().split('\n').pop() as string) as {
      refused?: { name: string; code?: string; message: string };
      names: string[];
    };
    t.match(
      r.refused,
      { name: 'NetlinkError', code: 'EAGAIN', message: /cannot create a task to enter the namespace/ },
      'clone refused: EAGAIN',
    );
    t.same(r.names, ['lo'], 'the same call works once tasks are allowed again');
  },
);

/** RTM_SETLINK of lo without NLM_F_ACK and without changes: the kernel accepts it and sends nothing back. */
const silentRequest = (): Buffer => new MessageBuilder(RTM_SETLINK, NLM_F_REQUEST).ifinfo(0).string(IFLA_IFNAME, 'lo').finish();
const getLo = (): Buffer => new MessageBuilder(RTM_GETLINK, NLM_F_REQUEST | NLM_F_ACK).ifinfo(0).string(IFLA_IFNAME, 'lo').finish();

t.test('a blocking request without a reply times out, and the socket stays usable', { skip: rootOnly }, (t) => {
  const { h } = emptyNetns(t);
  const sock = new (native().NetlinkSocket)(h.fd, 0);
  t.teardown(() => sock.close());
  t.throws(() => sock.requestSync(silentRequest(), 'set link', 'lo', 200), {
    name: 'NetlinkError',
    code: 'ETIMEDOUT',
    operation: 'set link',
    message: /no reply from the kernel within 200 ms/,
  });
  const [lo] = sock.requestSync(getLo(), 'get link', 'lo', 5000).map(decodeLink);
  t.equal(lo.name, 'lo', 'the next request gets its own reply');
  t.end();
});

/**
 * Sends forged netlink errors (EPERM) for sequence numbers 1..n to a port, from a user-space socket in the same
 * namespace (port ids are per namespace).
 */
function forgeReplies(ns: string, portId: number, n: number): void {
  const script = [
    'import socket, struct, sys',
    'port, n = int(sys.argv[1]), int(sys.argv[2])',
    's = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)',
    's.bind((0, 0))',
    'for seq in range(1, n + 1):',
    '    inner = struct.pack("=IHHII", 16, 18, 5, seq, 0)',
    '    body = struct.pack("=i", -1) + inner',
    '    s.sendto(struct.pack("=IHHII", 16 + len(body), 2, 0, seq, port) + body, (port, 0))',
  ].join('\n');
  execFileSync('ip', ['netns', 'exec', ns, 'python3', '-c', script, String(portId), String(n)]);
}
let python = true;
try {
  execFileSync('python3', ['-c', 'import socket; socket.AF_NETLINK']);
} catch {
  python = false;
}

t.test(
  "replies from user-space senders are ignored, even with the request's sequence number",
  { skip: rootOnly || (python ? false : 'python3 with AF_NETLINK is needed to forge replies') },
  async (t) => {
    const { ns, h } = emptyNetns(t);
    const sync = new (native().NetlinkSocket)(h.fd, 0);
    const async = new (native().NetlinkSocket)(h.fd, 0);
    t.teardown(() => {
      sync.close();
      async.close();
    });
    forgeReplies(ns, sync.portId, 20);
    const [lo] = sync.requestSync(getLo(), 'get link', 'lo', 5000).map(decodeLink);
    t.equal(lo.name, 'lo', 'sync: the kernel reply wins over 20 forged EPERM errors with matching seqs');
    forgeReplies(ns, async.portId, 20);
    const messages = await new Promise<Buffer[]>((resolve, reject) => {
      async.request(getLo(), 'get link', 'lo', (err, reply) => (err ? reject(err) : resolve(reply ?? [])));
    });
    t.equal(decodeLink(messages[0]).name, 'lo', 'async: likewise');
  },
);

t.test('close() cancels a request held by the native layer (ECANCELED from the addon)', { skip: rootOnly }, async (t) => {
  const { h } = emptyNetns(t);
  // Directly: a request the kernel never answers stays pending in the addon until close().
  const sock = new (native().NetlinkSocket)(h.fd, 0);
  const cancelled = new Promise<NetlinkError | null>((resolve) => sock.request(silentRequest(), 'set link', 'lo', (err) => resolve(err)));
  await settle(); // the poller has run: the request is truly waiting for the kernel
  sock.close();
  t.match(await cancelled, { name: 'NetlinkError', code: 'ECANCELED', message: /socket closed before the reply/ }, 'native ECANCELED');

  // Through a handle: once the request is sent (a few microtasks, no loop turn, so the reply is still unread),
  // close() reaches the addon's pending request rather than the handle's queue.
  const handle = Netns.open(h.path);
  const inFlight = handle.listLinks();
  for (let i = 0; i < 10; i++) await Promise.resolve();
  const queued = handle.getLink('lo');
  handle.close();
  await t.rejects(inFlight, { code: 'ECANCELED', message: /socket closed before the reply/ }, 'in flight: cancelled by the addon');
  await t.rejects(queued, { code: 'ECANCELED', message: /handle closed before the request was sent/ }, 'queued: cancelled by the handle');
});
