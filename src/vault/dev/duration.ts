/**
 * Durations the way Vault reads and prints them: an integer number of
 * seconds, or a Go duration string ("90s", "1h30m", "5m"), plus a bare "Nd"
 * for days as go-secure-stdlib's parseutil accepts.
 */

const UNIT_SECONDS: Record<string, number> = {
  ns: 1e-9,
  us: 1e-6,
  'µs': 1e-6,
  ms: 1e-3,
  s: 1,
  m: 60,
  h: 3600,
};

/** Thrown for a value that is not a duration; the message matches Go's wording. */
export class DurationError extends Error {}

/**
 * Parses a Vault duration parameter into whole seconds (fractions are
 * truncated, as Vault truncates to the second). Empty or absent → 0.
 * Negative values are returned as negative so callers can reject them with
 * their own message (e.g. "ttl must be positive").
 */
export function parseDurationSeconds(input: unknown): number {
  if (input === undefined || input === null || input === '') return 0;
  if (typeof input === 'number') {
    if (!Number.isFinite(input)) throw new DurationError(`invalid duration ${String(input)}`);
    return Math.trunc(input);
  }
  if (typeof input !== 'string') throw new DurationError('could not parse duration: not a string or number');
  const s = input.trim();
  if (/^-?\d+$/.test(s)) return Number(s);
  const days = /^(-?\d+)d$/.exec(s);
  if (days) return Number(days[1]) * 86400;
  return Math.trunc(parseGoDuration(s));
}

function parseGoDuration(s: string): number {
  const invalid = () => new DurationError(`time: invalid duration "${s}"`);
  let rest = s;
  let sign = 1;
  if (rest.startsWith('-') || rest.startsWith('+')) {
    if (rest[0] === '-') sign = -1;
    rest = rest.slice(1);
  }
  if (rest === '0') return 0;
  if (rest === '') throw invalid();
  let total = 0;
  const part = /^(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)/;
  while (rest.length > 0) {
    const m = part.exec(rest);
    if (!m) throw invalid();
    total += Number(m[1]) * UNIT_SECONDS[m[2]!]!;
    rest = rest.slice(m[0].length);
  }
  return sign * total;
}

/**
 * Formats whole seconds like Vault's warnings do (Go's Duration.String with
 * zero units dropped): 3600 → "1h", 5400 → "1h30m", 90 → "1m30s".
 */
export function humanDuration(seconds: number): string {
  if (seconds === 0) return '0s';
  const neg = seconds < 0;
  let s = Math.abs(Math.trunc(seconds));
  const h = Math.floor(s / 3600);
  s -= h * 3600;
  const m = Math.floor(s / 60);
  s -= m * 60;
  let out = h > 0 ? `${h}h${m}m${s}s` : m > 0 ? `${m}m${s}s` : `${s}s`;
  if (out.endsWith('m0s')) out = out.slice(0, -2);
  const idx = out.indexOf('h0m');
  if (idx > 0) out = out.slice(0, idx + 1) + out.slice(idx + 3);
  return (neg ? '-' : '') + out;
}

/** RFC 3339 with Go's RFC3339Nano trimming of trailing zero fractions. */
export function rfc3339(ms: number): string {
  const iso = new Date(ms).toISOString(); // 2026-01-01T00:00:00.000Z
  return iso.replace(/\.(\d*?)0*Z$/, (_m, frac: string) => (frac ? `.${frac}Z` : 'Z'));
}
