import { describe, expect, it } from 'vitest';
import { DurationError, humanDuration, parseDurationSeconds, rfc3339 } from '../../../../src/vault/dev/duration.ts';

describe('Vault durations', () => {
  it.each<[unknown, number]>([
    [undefined, 0],
    ['', 0],
    [90, 90],
    ['90', 90],
    ['90s', 90],
    ['15m', 900],
    ['1h30m', 5400],
    ['1.5h', 5400],
    ['2d', 172800],
    ['-5s', -5],
    ['1500ms', 1],
  ])('parses %j as %d seconds', (input, seconds) => {
    expect(parseDurationSeconds(input)).toBe(seconds);
  });

  it.each([['soon'], ['5 m'], ['m'], [{}], [Number.NaN]])('rejects %j', (input) => {
    expect(() => parseDurationSeconds(input)).toThrow(DurationError);
  });

  it.each([
    [0, '0s'],
    [45, '45s'],
    [90, '1m30s'],
    [1800, '30m'],
    [3600, '1h'],
    [3630, '1h30s'],
    [5400, '1h30m'],
    [768 * 3600, '768h'],
  ])('formats %d as %s like Go', (seconds, text) => {
    expect(humanDuration(seconds)).toBe(text);
  });

  it('formats timestamps like Go RFC3339Nano', () => {
    expect(rfc3339(Date.UTC(2026, 0, 1))).toBe('2026-01-01T00:00:00Z');
    expect(rfc3339(Date.UTC(2026, 0, 1, 0, 0, 0, 120))).toBe('2026-01-01T00:00:00.12Z');
  });
});
