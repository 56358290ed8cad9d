/**
 * Delay before each retry, after the first attempt fails (Svix's schedule):
 * 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h — eight attempts over about
 * 27.6 hours. After the last one fails the event is dead.
 */
export const DEFAULT_RETRY_SCHEDULE_MS: readonly number[] = [5_000, 300_000, 1_800_000, 7_200_000, 18_000_000, 36_000_000, 36_000_000];

/** Retry-After is honoured up to this long; a larger value is clamped rather than trusted. */
export const MAX_RETRY_AFTER_MS = 24 * 3600 * 1000;

/**
 * Parses a `Retry-After` value (delay-seconds or an HTTP-date) into
 * milliseconds from `now`; undefined when absent or unparseable.
 */
export function parseRetryAfter(value: string | null | undefined, now: number): number | undefined {
  if (!value) return undefined;
  const v = value.trim();
  if (/^\d{1,10}$/.test(v)) return Number(v) * 1000;
  if (!/[a-z]/i.test(v)) return undefined;
  const at = Date.parse(v);
  if (Number.isNaN(at)) return undefined;
  return Math.max(0, at - now);
}

/**
 * When the next attempt is due after attempt number `attempt` (1-based)
 * failed, or undefined when the schedule is exhausted. The scheduled delay
 * gets ±`jitter` (fraction) of random spread so a receiver that comes back
 * is not hit by every queued event at once; a longer `Retry-After` wins.
 */
export function nextAttemptDelay(p: {
  attempt: number;
  schedule?: readonly number[];
  jitter?: number;
  random?: () => number;
  retryAfterMs?: number | undefined;
}): number | undefined {
  const schedule = p.schedule ?? DEFAULT_RETRY_SCHEDULE_MS;
  const base = schedule[p.attempt - 1];
  if (base === undefined) return undefined;
  const jitter = p.jitter ?? 0.2;
  const delay = Math.round(base * (1 + jitter * (2 * (p.random ?? Math.random)() - 1)));
  const retryAfter = p.retryAfterMs === undefined ? 0 : Math.min(p.retryAfterMs, MAX_RETRY_AFTER_MS);
  return Math.max(delay, retryAfter);
}
