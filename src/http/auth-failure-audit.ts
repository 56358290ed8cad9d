import type { AuditLog } from '../broker/audit.ts';
import type { Clock } from '../lib/clock.ts';

/**
 * Records failed agent authentications in the audit log without letting a
 * token-guessing flood grow it without bound, from one address or from
 * many: the first failure per (address, reason) in each window is written
 * in full, up to a global cap per window; repeats and everything past the
 * cap are counted into one `audit.suppressed` entry when the window closes
 * (`AuditLog.appendCoalesced`: one minute, 100 full entries). Per process:
 * several brokers on one database each have their own window and cap.
 */
export function createAuthFailureAuditor(deps: { audit: AuditLog; clock: Clock }) {
  return {
    async record(address: string, reason: string): Promise<void> {
      await deps.audit.appendCoalesced(`${address}\n${reason}`, { event: 'auth.failed', actor: `address:${address}`, data: { reason } }, deps.clock.now());
    },
  };
}
