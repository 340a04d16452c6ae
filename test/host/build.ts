/**
 * The build outputs the host tests check, made the way a user makes them (npm's scripts run deploy/*.mjs).
 * `npm test`'s pretest has built them already, so these calls find everything up to date and write
 * nothing (safe from test files running in parallel); a test file run alone builds what it needs.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';

export const ROOT = path.resolve(__dirname, '..', '..');
export type Arch = 'x64' | 'arm64';
export const ARCHES: Arch[] = ['x64', 'arm64'];
export const HOST_ARCH = process.arch as Arch;
export const PROGRAMS = ['macvtap', 'macvtap-deviceplugin'];

export interface Run {
  status: number | null;
  stdout: string;
  stderr: string;
}

function node(script: string, args: string[], timeout = 600_000): Run {
  const r = spawnSync(process.execPath, [path.join(ROOT, 'deploy', script), ...args], { cwd: ROOT, encoding: 'utf8', timeout });
  return { status: r.status, stdout: r.stdout ?? '', stderr: `${r.stderr ?? ''}${r.error ? String(r.error) : ''}` };
}

/** The pinned Node version (deploy/runtime/package.json). */
export function pinnedVersion(): string {
  const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'deploy', 'runtime', 'package.json'), 'utf8')) as {
    optionalDependencies: Record<string, string>;
  };
  return pkg.optionalDependencies[`node-linux-${HOST_ARCH}`];
}

/** The pinned node binary for `arch` (fetched and checked against the lockfile for another architecture). */
export function pinnedNode(arch: Arch): string {
  const r = node('runtime.mjs', [`--arch=${arch}`, 'node']);
  if (r.status !== 0) throw new Error(`runtime.mjs --arch=${arch} node: ${r.stderr}`);
  return r.stdout.trim();
}

/** Where build-host puts the executables for `arch`. */
export const hostDir = (arch: Arch): string => path.join(ROOT, 'dist', 'host', ...(arch === HOST_ARCH ? [] : [`linux-${arch}`]));

/** `npm run build:host -- --arch=ARCH` (which also builds the addon for that architecture). */
export function buildHost(arch: Arch, extra: string[] = []): Run {
  return node('build-host.mjs', [`--arch=${arch}`, ...extra]);
}

/** The stripped addon for `arch`, as the npm package ships it and the executables embed it. */
export const prebuildPath = (arch: Arch): string => path.join(ROOT, 'prebuilds', `linux-${arch}`, 'macvtap_native.node');

/** `node deploy/build-addon.mjs --arch=ARCH`. */
export function buildAddon(arch: Arch): Run {
  return node('build-addon.mjs', [`--arch=${arch}`]);
}
