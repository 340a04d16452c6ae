/**
 * The daemon with its HTTP endpoint on, in a test namespace with loopback up, and a helper process in that
 * namespace to talk HTTP to it (support/nshttp.ts).
 */
import { claimIfindexes, ip, makeLowerNetns } from '../support/kernel';
import { NsHttp, parseMetrics } from '../support/nshttp';
import { Started, startDaemon, StartOptions } from '../deviceplugin/helpers';

type T = Parameters<typeof startDaemon>[0];

export const RES = 'macvtap.network.kubevirt.io/dataplane';
export const conf = (capacity = 4): string => JSON.stringify([{ name: 'dataplane', lowerDevice: 'lower0', capacity }]);

export interface OpsStarted extends Started {
  ns: string;
  http: NsHttp;
  /** The endpoint's port (the daemon asked the kernel for a free one). */
  port: number;
  scrape(): Promise<Map<string, number>>;
  idx: number[];
}

/** A lower-device namespace with loopback up, and the daemon in it serving HTTP on 127.0.0.1:<free port>. */
export async function startWithEndpoint(t: T, opts: Partial<StartOptions> & { extraArgs?: string[] } = {}): Promise<OpsStarted> {
  const { ns } = makeLowerNetns(t);
  ip('-n', ns, 'link', 'set', 'lo', 'up');
  const idx = claimIfindexes(t, 8);
  const started = await startDaemon(t, {
    ns,
    env: opts.env ?? conf(),
    kubelet: opts.kubelet,
    args: ['--ifindex-range', `${idx[0]}-${idx[idx.length - 1]}`, '--metrics-listen', '127.0.0.1:0', ...(opts.extraArgs ?? [])],
  });
  // Generous: start-up takes seconds on a loaded 2-vCPU machine.
  const line = await started.daemon.waitForLog((l) => l.msg === 'serving metrics and health', 60000);
  const port = line.port as number;
  const http = NsHttp.open(t, ns);
  const scrape = async (): Promise<Map<string, number>> => {
    const r = await http.request(port, '/metrics');
    if (r.status !== 200) throw new Error(`/metrics answered ${r.status}: ${r.body}`);
    return parseMetrics(r.body);
  };
  return { ...started, ns, http, port, scrape, idx };
}
