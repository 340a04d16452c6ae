/**
 * Child of hardening.test.ts: joins the pids cgroup given in argv (v1 or v2 layout), opens a handle on the
 * namespace given, then caps the cgroup at its current task count so the kernel refuses the next clone(), and
 * asks for a socket in that namespace (which needs a task that enters it). Prints one JSON line: what the
 * refused call threw, and whether the same call works once the cap is lifted.
 * argv: CGROUP_DIR NETNS_PATH
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { NetlinkError, Netns } from '../../lib/netlink';

const [cgroup, nsPath] = process.argv.slice(2);
fs.writeFileSync(path.join(cgroup, 'cgroup.procs'), String(process.pid));
const h = Netns.open(nsPath);
const current = fs.readFileSync(path.join(cgroup, 'pids.current'), 'utf8').trim();
fs.writeFileSync(path.join(cgroup, 'pids.max'), current);
let refused: { name: string; code?: string; message: string } | undefined;
try {
  h.listLinksSync();
} catch (err) {
  refused = { name: (err as Error).name, code: err instanceof NetlinkError ? err.code : undefined, message: (err as Error).message };
}
fs.writeFileSync(path.join(cgroup, 'pids.max'), 'max');
const names = h.listLinksSync().map((l) => l.name);
h.close();
process.stdout.write(`${JSON.stringify({ refused, names })}\n`);
