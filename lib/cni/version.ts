/**
 * CNI spec versions this plugin serves, and results shaped for each. The plugin never assigns IPs, so it
 * cannot produce a 0.1.0/0.2.0 result (those require `ip4`/`ip6`); every version from 0.3.0 carries an
 * interface list, which is all this plugin reports.
 */
import { CniError, ErrorCode } from './errors';

export const SUPPORTED_VERSIONS = ['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'] as const;
export type CniVersion = (typeof SUPPORTED_VERSIONS)[number];
export const LATEST_VERSION: CniVersion = '1.1.0';

/** Orders two `X.Y.Z` strings; undefined if either is malformed. */
export function compareVersions(a: string, b: string): number | undefined {
  const pa = parseVersion(a);
  const pb = parseVersion(b);
  if (!pa || !pb) return undefined;
  for (let i = 0; i < 3; i++) if (pa[i] !== pb[i]) return pa[i] - pb[i];
  return 0;
}

function parseVersion(v: string): number[] | undefined {
  const m = /^(\d+)\.(\d+)\.(\d+)$/.exec(v);
  return m ? [Number(m[1]), Number(m[2]), Number(m[3])] : undefined;
}

export function isSupported(v: string): v is CniVersion {
  return (SUPPORTED_VERSIONS as readonly string[]).includes(v);
}

/**
 * The config's `cniVersion` as a supported version. A missing `cniVersion` means 0.1.0 (as libcni reads it);
 * 0.1.0, 0.2.0 and anything unknown fail with code 1.
 */
export function requireSupported(v: string | undefined): CniVersion {
  const version = v ?? '0.1.0';
  if (isSupported(version)) return version;
  const old = compareVersions(version, '0.3.0');
  const why =
    old !== undefined && old < 0
      ? `its results need an IP address, which the macvtap plugin never assigns`
      : `it is not a version this plugin knows`;
  throw new CniError(
    ErrorCode.IncompatibleVersion,
    `incompatible CNI version ${JSON.stringify(version)}: ${why}`,
    `supported versions: ${SUPPORTED_VERSIONS.join(', ')}`,
  );
}

/** True if `v` is at least `min` (both supported). */
export function atLeast(v: CniVersion, min: CniVersion): boolean {
  return (compareVersions(v, min) ?? -1) >= 0;
}

/** The first spec version defining each verb beyond ADD/DEL/VERSION. */
const VERB_SINCE: Record<string, CniVersion> = { CHECK: '0.4.0', GC: '1.1.0', STATUS: '1.1.0' };

/** Code 1 when `command` does not exist in the config's version (libcni's skel answers the same). */
export function requireVerb(command: string, version: CniVersion): void {
  const since = VERB_SINCE[command];
  if (since && !atLeast(version, since)) {
    throw new CniError(
      ErrorCode.IncompatibleVersion,
      `${command} is not defined for cniVersion ${version}`,
      `${command} needs cniVersion ${since} or later`,
    );
  }
}

/** The VERSION answer: the caller's version when this plugin supports it, else the latest. */
export function versionResult(requested: unknown): { cniVersion: string; supportedVersions: string[] } {
  const cniVersion = typeof requested === 'string' && isSupported(requested) ? requested : LATEST_VERSION;
  return { cniVersion, supportedVersions: [...SUPPORTED_VERSIONS] };
}

/** What ADD attached. */
export interface AttachedInterface {
  name: string;
  mac: string;
  mtu: number;
  sandbox: string;
}

/** A JSON object as parsed (values not yet checked). */
export type JsonObject = Record<string, unknown>;

/**
 * The ADD result for `version`: a chained `prevResult` passed through with this interface appended, or a fresh
 * result. The interface entry carries `mtu` from 1.1.0 on. `dns` is always present (an empty object when
 * nothing upstream set it), as the reference plugins print it.
 */
export function addResult(version: CniVersion, iface: AttachedInterface, prevResult: JsonObject | undefined): JsonObject {
  const entry: JsonObject = { name: iface.name, mac: iface.mac, sandbox: iface.sandbox };
  if (atLeast(version, '1.1.0')) entry.mtu = iface.mtu;
  const base: JsonObject = prevResult ? { ...prevResult } : {};
  const interfaces: unknown[] = Array.isArray(base.interfaces) ? [...(base.interfaces as unknown[]), entry] : [entry];
  const result: JsonObject = { cniVersion: version, interfaces };
  for (const key of Object.keys(base)) {
    if (key !== 'cniVersion' && key !== 'interfaces') result[key] = base[key];
  }
  if (result.dns === undefined) result.dns = {};
  return result;
}
