import type { PolicySet } from '../broker/policy/types.ts';
import type { AuditLog } from '../broker/audit.ts';
import type { Storage, Transaction } from '../storage/storage.ts';
import type { Clock } from '../lib/clock.ts';
import type { Logger } from '../lib/logger.ts';
import { randomToken } from '../lib/secrets.ts';
import type { OutcomeBatch } from './outcome-batch.ts';
import { addressUnresolved as addressRows, type OutboxRow } from './outbox.ts';

export interface LeasesDeps {
  storage: Storage;
  /** Audits events addressed dead (their URL carries user:password). */
  audit: Pick<AuditLog, 'append'>;
  clock: Clock;
  log: Logger;
  /** The service's loaded policy, to address events written without one; without it such events wait. */
  policies?: { current(): PolicySet };
  /** How long a claimed row stays leased. */
  leaseMs: number;
  /** The outcomes waiting are committed in the claim's transaction. */
  outcomes: Pick<OutcomeBatch, 'take'>;
}

export interface Leases {
  /**
   * Leases up to `limit` rows due by `dueBy`, none for a URL beyond
   * `room(url)`. The same transaction commits the outcomes waiting (one
   * commit instead of two); should it fail, they are committed on their
   * own and the error is thrown.
   */
  claim(dueBy: number, limit: number, room: (url: string) => number): Promise<OutboxRow[]>;
  /** Gives a leased row back, due again at once (its attempt was cut short by stop()). */
  release(row: OutboxRow): Promise<void>;
}

/**
 * The dispatcher's side of the outbox leases. A claim leases rows (state
 * `delivering`, lease owner, lease expiry) in one transaction, so concurrent
 * dispatchers — even in two processes — never send one row at the same
 * time, and a row whose sender crashed becomes due again when its lease
 * runs out.
 */
export function createLeases(deps: LeasesDeps): Leases {
  const { storage, clock, log } = deps;
  const instance = randomToken(6);

  /** Addresses events written without a policy from the service's own (inside the claim's transaction). */
  async function addressUnresolved(tx: Transaction, now: number): Promise<void> {
    if (!deps.policies) return;
    let policy: PolicySet;
    try {
      policy = deps.policies.current();
    } catch {
      return; // no policy loaded yet: they wait
    }
    const done = await addressRows(tx, deps.audit, policy, now);
    if (done.addressed.length > 0) log.info({ event_ids: done.addressed }, "decision webhooks written without a policy addressed from the service's");
    if (done.dropped.length > 0) log.info({ event_ids: done.dropped }, "decision webhooks written without a policy dropped: the agent has no webhook in the service's policy");
    if (done.dead.length > 0) log.warn({ event_ids: done.dead }, 'decision webhooks not sent: the webhook URL contains user:password credentials');
  }

  return {
    async claim(dueBy, limit, room) {
      const now = clock.now();
      const params = { now, dueBy, owner: `${instance}:${randomToken(6)}`, leaseUntil: now + deps.leaseMs, limit, room };
      const outcomes = deps.outcomes.take();
      let rows: OutboxRow[];
      try {
        rows = await storage.transaction(async (tx) => {
          await outcomes.write(tx, now);
          await addressUnresolved(tx, now);
          return tx.outbox.claim(params);
        });
      } catch (err) {
        outcomes.rolledBack();
        throw err;
      }
      outcomes.committed();
      return rows;
    },
    async release(row) {
      await storage.outbox.release(row.id, row.lease_owner!, clock.now());
    },
  };
}
