import { randomFillSync } from 'node:crypto';

const POOL_BYTES = 4096;
const pool = Buffer.allocUnsafe(POOL_BYTES);
let offset = POOL_BYTES;

/**
 * `n` random bytes (n ≤ 256) from a pool refilled from the CSPRNG 4 KiB at a
 * time: ids are made several times per request, and one `randomBytes` call
 * each cost 2 % of the broker's CPU. For identifiers only; secrets (tokens,
 * keys) call `randomBytes` themselves.
 */
export function pooledRandomBytes(n: number): Buffer {
  if (!Number.isInteger(n) || n < 1 || n > 256) throw new RangeError('pooledRandomBytes takes 1 to 256 bytes');
  if (offset + n > POOL_BYTES) {
    randomFillSync(pool);
    offset = 0;
  }
  const out = Buffer.from(pool.subarray(offset, offset + n));
  // Never hand the same bytes out twice.
  pool.fill(0, offset, offset + n);
  offset += n;
  return out;
}
