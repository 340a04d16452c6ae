/**
 * The kubelet stand-in as a process of its own, so a test can SIGKILL it: argv[2] is the device-plugin
 * directory. Prints `ready` once kubelet.sock is served, then `registered <resource>` for each registration.
 */
import { KubeletStandIn } from '../support/kubelet';

async function main(): Promise<void> {
  const kubelet = await KubeletStandIn.start(process.argv[2]);
  kubelet.on('registration', (r: { resourceName: string }) => process.stdout.write(`registered ${r.resourceName}\n`));
  process.stdout.write('ready\n');
  setInterval(() => undefined, 1 << 30);
}

main().catch((err: unknown) => {
  process.stderr.write(`kubelet-child: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
