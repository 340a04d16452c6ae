/**
 * Quoting untrusted values in messages: JSON (so control characters, NUL and lone surrogates come out as escapes,
 * never raw) and cut to a readable length, saying how long the value really was.
 */
const MAX_SHOWN = 64;

export function show(value: unknown): string {
  if (typeof value === 'string' && value.length > MAX_SHOWN)
    return `${JSON.stringify(value.slice(0, MAX_SHOWN))}... (${value.length} characters)`;
  if (value === undefined) return 'nothing';
  let text: string;
  try {
    text = JSON.stringify(value) ?? typeof value;
  } catch {
    text = Array.isArray(value) ? 'an array' : typeof value;
  }
  return text.length > MAX_SHOWN + 2
    ? `${Array.isArray(value) ? 'an array' : `an ${typeof value}`} (${text.length} characters as JSON)`
    : text;
}
