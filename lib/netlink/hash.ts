/** XXH64 from the addon (no WASM compile on any start-up path). */
import { native } from './native';

/** XXH64 with seed 0 of `data` (a string is hashed as its UTF-8 bytes). */
export function xxhash64(data: Buffer | string): bigint {
  return native().xxhash64(typeof data === 'string' ? Buffer.from(data, 'utf8') : data);
}
