import { describe, expect, it } from 'vitest';
import { pooledRandomBytes } from '../../../src/lib/random-pool.ts';

describe('pooledRandomBytes', () => {
  it('never hands out the same bytes twice, across refills of the pool', () => {
    const seen = new Set<string>();
    // 2,000 × 16 bytes crosses the 4 KiB pool several times.
    for (let i = 0; i < 2_000; i++) {
      const b = pooledRandomBytes(16);
      expect(b).toHaveLength(16);
      seen.add(b.toString('hex'));
    }
    expect(seen.size).toBe(2_000);
  });

  it('returns copies the caller may keep', () => {
    const a = pooledRandomBytes(8);
    const copy = Buffer.from(a);
    for (let i = 0; i < 1_000; i++) pooledRandomBytes(8);
    expect(a.equals(copy)).toBe(true);
    expect(copy.equals(Buffer.alloc(8))).toBe(false);
  });

  it('refuses sizes it was not made for', () => {
    expect(() => pooledRandomBytes(0)).toThrow(RangeError);
    expect(() => pooledRandomBytes(257)).toThrow(RangeError);
    expect(() => pooledRandomBytes(1.5)).toThrow(RangeError);
  });
});
