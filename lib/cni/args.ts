/**
 * CNI_ARGS: `K=V;K=V` (SPEC "Parameters", libcni's reading of it). Each pair has exactly one `=`; a key this
 * plugin does not know is an error unless `IgnoreUnknown` is true (`true`/`1`, any case), which is what the
 * kubelet and Multus send along with the K8S_POD_* keys.
 */
import { containerIdProblem } from '../state';
import { CniError, ErrorCode } from './errors';
import { show } from './show';

/** Keys this plugin reads or knows to be harmless. */
export const KNOWN_ARGS = ['IgnoreUnknown', 'MAC', 'K8S_POD_NAMESPACE', 'K8S_POD_NAME', 'K8S_POD_INFRA_CONTAINER_ID', 'K8S_POD_UID'];

export interface CniArgs {
  /** Every pair, in order (a repeated key keeps its last value). */
  values: Map<string, string>;
  ignoreUnknown: boolean;
}

function parseBool(key: string, value: string): boolean {
  const v = value.toLowerCase();
  if (v === 'true' || v === '1') return true;
  if (v === 'false' || v === '0') return false;
  throw new CniError(ErrorCode.InvalidEnvironment, `CNI_ARGS ${key}=${show(value)} is not a boolean`, 'use true, false, 1 or 0');
}

/** DNS-1123 label (a namespace) and subdomain (a pod name), as the API server admits them. */
const LABEL_RE = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const SUBDOMAIN_RE = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
/** A pod UID: the API server's UUIDs, or anything of UUID characters (tests, other runtimes). */
const UID_RE = /^[A-Za-z0-9][A-Za-z0-9-]{0,63}$/;

/** Why the value of a K8S_POD_* key cannot be what the runtime sends, or undefined (other keys: not checked). */
function valueProblem(key: string, value: string): string | undefined {
  // Empty: the runtime did not know it (treated as not given).
  if (value === '') return undefined;
  switch (key) {
    case 'K8S_POD_NAMESPACE':
      return value.length <= 63 && LABEL_RE.test(value) ? undefined : 'is not a namespace name (a DNS-1123 label)';
    case 'K8S_POD_NAME':
      return value.length <= 253 && SUBDOMAIN_RE.test(value) ? undefined : 'is not a pod name (a DNS-1123 subdomain)';
    case 'K8S_POD_UID':
      return UID_RE.test(value) ? undefined : 'is not a pod UID (letters, digits and "-", at most 64)';
    case 'K8S_POD_INFRA_CONTAINER_ID':
      return containerIdProblem(value) ? 'is not a container ID' : undefined;
  }
  return undefined;
}

export function parseCniArgs(raw: string | undefined): CniArgs {
  const values = new Map<string, string>();
  if (raw !== undefined && raw !== '') {
    for (const pair of raw.split(';')) {
      const kv = pair.split('=');
      if (kv.length !== 2 || kv[0] === '') {
        throw new CniError(ErrorCode.DecodeFailure, `CNI_ARGS: invalid pair ${show(pair)}`, 'CNI_ARGS must be K=V pairs separated by ";"');
      }
      const problem = valueProblem(kv[0], kv[1]);
      if (problem) throw new CniError(ErrorCode.InvalidEnvironment, `CNI_ARGS ${show(kv[0])}=${show(kv[1])} ${problem}`);
      values.set(kv[0], kv[1]);
    }
  }
  const ignore = values.get('IgnoreUnknown');
  const ignoreUnknown = ignore === undefined ? false : parseBool('IgnoreUnknown', ignore);
  if (!ignoreUnknown) {
    const unknown = [...values.keys()].filter((k) => !KNOWN_ARGS.includes(k));
    if (unknown.length) {
      throw new CniError(
        ErrorCode.InvalidEnvironment,
        `CNI_ARGS: unknown key${unknown.length > 1 ? 's' : ''} ${unknown.slice(0, 5).map(show).join(', ')}`,
        `known keys: ${KNOWN_ARGS.join(', ')}; add IgnoreUnknown=true to pass others`,
      );
    }
  }
  return { values, ignoreUnknown };
}
