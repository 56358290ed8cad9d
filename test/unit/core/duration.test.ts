import { expect, it } from 'vitest';
import { formatDuration, parseDurationSeconds } from '../../../src/lib/duration.ts';

it.each([
  [90, 90],
  ['90', 90],
  ['90s', 90],
  ['15m', 900],
  ['1h', 3600],
  ['2d', 172800],
  [0, undefined],
  [-1, undefined],
  [1.5, undefined],
  ['1.5h', undefined],
  ['h', undefined],
  ['10 minutes', undefined],
  ['0m', undefined],
])('parseDurationSeconds(%o) = %o', (input, expected) => {
  expect(parseDurationSeconds(input)).toBe(expected);
});

it('formats durations in their largest exact unit', () => {
  expect([90, 900, 3600, 5400, 86400].map(formatDuration)).toEqual(['90s', '15m', '1h', '90m', '1d']);
});
