const UNITS: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86400 };

/**
 * Parses a duration given as whole seconds (number or digit string) or as
 * `<n>s|m|h|d` (e.g. "90s", "15m", "1h") into seconds. Returns undefined when
 * the input is not one of those forms or is not a positive whole number.
 */
export function parseDurationSeconds(input: string | number): number | undefined {
  if (typeof input === 'number') {
    return Number.isSafeInteger(input) && input > 0 ? input : undefined;
  }
  const m = /^(\d{1,9})([smhd]?)$/.exec(input.trim());
  if (!m) return undefined;
  const n = Number(m[1]) * UNITS[m[2] || 's']!;
  return n > 0 && Number.isSafeInteger(n) ? n : undefined;
}

/** Formats seconds as the largest exact unit ("90s", "15m", "1h", "2d"). */
export function formatDuration(seconds: number): string {
  for (const [unit, size] of [['d', 86400], ['h', 3600], ['m', 60]] as const) {
    if (seconds % size === 0 && seconds >= size) return `${seconds / size}${unit}`;
  }
  return `${seconds}s`;
}
