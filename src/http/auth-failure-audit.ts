import type { AuditLog } from '../broker/audit.ts';
import type { Db } from '../db/open.ts';
import type { Clock } from '../lib/clock.ts';

const WINDOW_MS = 60_000;
const MAX_TRACKED = 10_000;

/**
 * Records failed agent authentications in the audit log without letting a
 * token-guessing flood grow it without bound: the first failure from an
 * address in each minute is written, carrying how many were suppressed
 * since the previous entry for that address.
 */
export function createAuthFailureAuditor(deps: { db: Db; audit: AuditLog; clock: Clock }) {
  const windows = new Map<string, { start: number; suppressed: number }>();
  return {
    record(address: string, reason: string): void {
      const now = deps.clock.now();
      const w = windows.get(address);
      if (w && now - w.start < WINDOW_MS) {
        w.suppressed++;
        return;
      }
      if (windows.size >= MAX_TRACKED) windows.clear();
      windows.set(address, { start: now, suppressed: 0 });
      deps.db.transaction(() => {
        deps.audit.append({ event: 'auth.failed', actor: `address:${address}`, data: { reason, suppressed_before: w?.suppressed ?? 0 } }, now);
      })();
    },
  };
}
