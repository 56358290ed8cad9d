/** A timestamp in the CLI's tables: ISO 8601 (UTC), or `-` for none. */
export const iso = (ms: number | null): string => (ms === null ? '-' : new Date(ms).toISOString());
