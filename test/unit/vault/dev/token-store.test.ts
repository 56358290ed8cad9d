import { afterEach, describe, expect, it, vi } from 'vitest';
import { ManualClock } from '../../../../src/lib/clock.ts';
import { TokenStore } from '../../../../src/vault/dev/token-store.ts';
import type { NewToken, TokenEntry } from '../../../../src/vault/dev/token-store.ts';

function spec(ttlSeconds: number, extra: Partial<NewToken> = {}): NewToken {
  return {
    policies: ['default'],
    meta: null,
    displayName: 'token',
    path: 'auth/token/create',
    creationTtl: ttlSeconds,
    maxTtl: 0,
    explicitMaxTtl: 0,
    renewable: true,
    ...extra,
  };
}

describe('TokenStore expiry', () => {
  const clock = new ManualClock();
  const store = () => new TokenStore(clock, { defaultTtl: 3600, maxTtl: 86_400 });
  afterEach(() => vi.restoreAllMocks());

  it('get() refuses an expired token even when the full sweep has not run', () => {
    const s = store();
    const short = s.create(spec(10));
    const long = s.create(spec(3600));
    clock.advance(9_500);
    expect(s.get(long.id)).toBe(long); // a full sweep is due and runs now
    const sweep = vi.spyOn(s, 'sweep');
    clock.advance(500); // `short` expires; the next sweep is not due for another 500 ms
    expect(s.get(long.id)).toBe(long);
    expect(sweep).not.toHaveBeenCalled();
    expect(s.get(short.id)).toBeUndefined();
    expect(s.getByAccessor(short.accessor)).toBeUndefined();
    expect(sweep).not.toHaveBeenCalled();
    expect(s.all()).toEqual([long]);
  });

  it('an expired parent takes its children with it, as the sweep does; orphans survive', () => {
    const s = store();
    s.sweep();
    const parent = s.create(spec(10));
    const child = s.create(spec(3600, { parent }));
    const grandchild = s.create(spec(3600, { parent: child }));
    const orphan = s.create(spec(3600));
    clock.advance(10_000);
    expect(s.get(grandchild.id)).toBeUndefined();
    // The whole tree went, not just the one asked for.
    expect(s.getByAccessor(child.accessor)).toBeUndefined();
    expect(s.all().map((t: TokenEntry) => t.accessor)).toEqual([orphan.accessor]);
  });

  it('an expired token does not block a new token with its ID', () => {
    const s = store();
    s.sweep();
    s.create(spec(5, { id: 'hvs.fixed-id-0123456789' }));
    expect(() => s.create(spec(5, { id: 'hvs.fixed-id-0123456789' }))).toThrow(/duplicate/);
    clock.advance(5_000);
    expect(s.create(spec(5, { id: 'hvs.fixed-id-0123456789' })).id).toBe('hvs.fixed-id-0123456789');
  });

  it('the full sweep runs at most once per second of the injected clock', () => {
    const s = store();
    const sweep = vi.spyOn(s, 'sweep');
    const t = s.create(spec(3600)); // the first lookup of a new store sweeps
    for (let i = 0; i < 50; i++) s.get(t.id);
    expect(sweep).toHaveBeenCalledTimes(1);
    clock.advance(999);
    s.get(t.id);
    s.getByAccessor(t.accessor);
    expect(sweep).toHaveBeenCalledTimes(1);
    clock.advance(1);
    s.get(t.id);
    s.get(t.id);
    expect(sweep).toHaveBeenCalledTimes(2);
    clock.advance(-5_000); // a clock set back does not stop sweeping
    s.get(t.id);
    expect(sweep).toHaveBeenCalledTimes(3);
  });
});
