/**
 * CNI_ARGS: `K=V;K=V` (SPEC "Parameters", libcni's reading of it). Each pair has exactly one `=`; a key this
 * plugin does not know is an error unless `IgnoreUnknown` is true (`true`/`1`, any case), which is what the
 * kubelet and Multus send along with the K8S_POD_* keys.
 */
import { CniError, ErrorCode } from './errors';

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
  throw new CniError(ErrorCode.InvalidEnvironment, `CNI_ARGS ${key}=${JSON.stringify(value)} is not a boolean`, 'use true, false, 1 or 0');
}

export function parseCniArgs(raw: string | undefined): CniArgs {
  const values = new Map<string, string>();
  if (raw !== undefined && raw !== '') {
    for (const pair of raw.split(';')) {
      const kv = pair.split('=');
      if (kv.length !== 2 || kv[0] === '') {
        throw new CniError(
          ErrorCode.DecodeFailure,
          `CNI_ARGS: invalid pair ${JSON.stringify(pair)}`,
          'CNI_ARGS must be K=V pairs separated by ";"',
        );
      }
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
        `CNI_ARGS: unknown key${unknown.length > 1 ? 's' : ''} ${unknown.join(', ')}`,
        `known keys: ${KNOWN_ARGS.join(', ')}; add IgnoreUnknown=true to pass others`,
      );
    }
  }
  return { values, ignoreUnknown };
}
