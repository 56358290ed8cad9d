import { describe, expect, it } from 'vitest';
import { DEFAULT_RETRY_SCHEDULE_MS, MAX_RETRY_AFTER_MS, nextAttemptDelay, parseRetryAfter } from '../../../src/webhooks/retry.ts';

describe('retry schedule', () => {
  it('is Svix-like: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h (about a day in all)', () => {
    expect(DEFAULT_RETRY_SCHEDULE_MS).toEqual([5e3, 3e5, 18e5, 72e5, 18e6, 36e6, 36e6]);
    const total = DEFAULT_RETRY_SCHEDULE_MS.reduce((a, b) => a + b, 0) / 3_600_000;
    expect(total).toBeGreaterThan(24);
    expect(total).toBeLessThan(28);
  });

  it('adds bounded jitter and ends after the last step', () => {
    expect(nextAttemptDelay({ attempt: 1, random: () => 0.5 })).toBe(5_000);
    expect(nextAttemptDelay({ attempt: 1, random: () => 0 })).toBe(4_000);
    expect(nextAttemptDelay({ attempt: 1, random: () => 1 })).toBe(6_000);
    expect(nextAttemptDelay({ attempt: 7, random: () => 0.5 })).toBe(36_000_000);
    expect(nextAttemptDelay({ attempt: 8 })).toBeUndefined();
  });

  it('lets a longer Retry-After win, clamps an absurd one, ignores a shorter one', () => {
    expect(nextAttemptDelay({ attempt: 1, random: () => 0.5, retryAfterMs: 60_000 })).toBe(60_000);
    expect(nextAttemptDelay({ attempt: 1, random: () => 0.5, retryAfterMs: 1_000 })).toBe(5_000);
    expect(nextAttemptDelay({ attempt: 1, random: () => 0.5, retryAfterMs: 10 * MAX_RETRY_AFTER_MS })).toBe(MAX_RETRY_AFTER_MS);
  });

  it('parses Retry-After as seconds or an HTTP date', () => {
    const now = Date.UTC(2026, 0, 1);
    expect(parseRetryAfter('120', now)).toBe(120_000);
    expect(parseRetryAfter(new Date(now + 90_000).toUTCString(), now)).toBe(90_000);
    expect(parseRetryAfter(new Date(now - 90_000).toUTCString(), now)).toBe(0);
    for (const bad of [null, undefined, '', '-5', '1.5', 'soon']) expect(parseRetryAfter(bad, now)).toBeUndefined();
  });
});
