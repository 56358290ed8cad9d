import { readFileSync } from 'node:fs';

/**
 * The version in package.json ("0.0.0" if unreadable). The path is relative
 * to this file, which sits at the same depth in src/ and in the compiled
 * dist/, so both read the package's own package.json.
 */
export function packageVersion(): string {
  try {
    return (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version?: string }).version ?? '0.0.0';
  } catch {
    return '0.0.0';
  }
}
