/** Setting up a benchmark's scratch host namespace with `ip`, the same way in every benchmark. */

/**
 * The `ip` argument lists that give namespace `ns` a lower device (veth `lower0`, up, with peer `peer0`) and a
 * bridge-mode macvtap on it for each entry, at that explicit ifindex. Run in order, by the benchmark's own runner.
 */
export function lowerWithMacvtaps(ns: string, macvtaps: { name: string; index: number }[]): string[][] {
  return [
    ['-n', ns, 'link', 'add', 'lower0', 'type', 'veth', 'peer', 'name', 'peer0'],
    ['-n', ns, 'link', 'set', 'lower0', 'up'],
    ...macvtaps.map(({ name, index }) => [
      '-n',
      ns,
      'link',
      'add',
      'link',
      'lower0',
      'name',
      name,
      'index',
      String(index),
      'type',
      'macvtap',
      'mode',
      'bridge',
    ]),
  ];
}
