/**
 * The shape of a chained `prevResult` (SPEC "Result"), checked before any change: ADD passes it through into its
 * own result and CHECK compares against it, so a value that cannot be printed back (nested thousands deep) or has
 * the wrong types must be refused up front, never found out after the link moved.
 */
import type { JsonObject } from './version';

/** Deeper than any result a plugin writes (interfaces[i].x is depth 3; a few levels for plugin extras). */
export const MAX_PREV_DEPTH = 32;
/** Values (objects, arrays, scalars) in all. */
export const MAX_PREV_VALUES = 100_000;

function isObject(v: unknown): v is JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Depth and size, without recursion (so no input can exhaust the stack). */
function sizeProblem(root: unknown): string | undefined {
  const stack: [unknown, number][] = [[root, 1]];
  let values = 0;
  while (stack.length) {
    const [v, depth] = stack.pop() as [unknown, number];
    if (++values > MAX_PREV_VALUES) return `has more than ${MAX_PREV_VALUES} values`;
    if (typeof v !== 'object' || v === null) continue;
    if (depth > MAX_PREV_DEPTH) return `is nested deeper than ${MAX_PREV_DEPTH} levels`;
    for (const child of Array.isArray(v) ? v : Object.values(v)) stack.push([child, depth + 1]);
  }
  return undefined;
}

function listOfObjects(prev: JsonObject, key: string): string | undefined {
  const v = prev[key];
  if (v === undefined || v === null) return undefined;
  if (!Array.isArray(v)) return `.${key} must be a list`;
  const i = v.findIndex((e) => !isObject(e));
  return i >= 0 ? `.${key}[${i}] must be an object` : undefined;
}

/** Why `prev` is not a usable prevResult, or undefined. */
export function checkPrevResult(prev: unknown): string | undefined {
  if (!isObject(prev)) return `must be an object, got ${Array.isArray(prev) ? 'an array' : typeof prev}`;
  const size = sizeProblem(prev);
  if (size) return size;
  if (prev.cniVersion !== undefined && typeof prev.cniVersion !== 'string') return '.cniVersion must be a string';
  for (const key of ['interfaces', 'ips', 'routes']) {
    const problem = listOfObjects(prev, key);
    if (problem) return problem;
  }
  const interfaces = (prev.interfaces ?? []) as JsonObject[];
  for (const [i, iface] of interfaces.entries()) {
    for (const key of ['name', 'mac', 'sandbox']) {
      if (iface[key] !== undefined && typeof iface[key] !== 'string') return `.interfaces[${i}].${key} must be a string`;
    }
    if (typeof iface.name !== 'string') return `.interfaces[${i}].name must be a string`;
    if (iface.mtu !== undefined && (typeof iface.mtu !== 'number' || !Number.isInteger(iface.mtu)))
      return `.interfaces[${i}].mtu must be an integer`;
  }
  if (prev.dns !== undefined && prev.dns !== null && !isObject(prev.dns)) return '.dns must be an object';
  return undefined;
}
