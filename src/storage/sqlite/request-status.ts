import type { NewRequestRow, RequestStatus, StatusMoveFields } from '../rows.ts';
import type { Db } from './open.ts';

/**
 * Every SQL statement that writes a request's `status` lives here: the
 * insert (a request's first status) and the conditional move. The broker's
 * state machine decides which moves are allowed; this only makes each one
 * happen at most once (`WHERE status = @from`), so racing callers cannot
 * both win. The lifecycle sweeps move row by row through the same
 * statement (each move has its own audit entry and decision event): there
 * is no bulk status update.
 */
export function requestStatusStatements(db: Db) {
  const insert = db.prepare(`INSERT INTO requests (id, agent_id, agent_name, resource, tier, required_tier, status, reason, scope,
      ttl_seconds, session_key, rules, idempotency_key, body_hash, created_at, updated_at, approval_expires_at, claim_expires_at,
      decided_by, decided_at, decision_reason, failure, node_id)
      VALUES (@id, @agent_id, @agent_name, @resource, @tier, @required_tier, @status, @reason, @scope, @ttl_seconds, @session_key,
      @rules, @idempotency_key, @body_hash, @created_at, @updated_at, @approval_expires_at, @claim_expires_at, @decided_by,
      @decided_at, @decision_reason, @failure, @node_id)`);
  const move = db.prepare(`UPDATE requests SET status = @to, updated_at = @now,
      decided_by = COALESCE(@decided_by, decided_by), decided_at = COALESCE(@decided_at, decided_at),
      decision_reason = COALESCE(@decision_reason, decision_reason), failure = COALESCE(@failure, failure),
      claim_expires_at = COALESCE(@claim_expires_at, claim_expires_at)
      WHERE id = @id AND status = @from`);
  return {
    insert(row: NewRequestRow): void {
      insert.run({ ...row, node_id: row.node_id ?? null });
    },
    /** Moves request `id` from `from` to `to`; false if it was no longer in `from`. */
    move(id: string, from: RequestStatus, to: RequestStatus, now: number, fields: StatusMoveFields = {}): boolean {
      return (
        move.run({
          id,
          from,
          to,
          now,
          decided_by: fields.decidedBy ?? null,
          decided_at: fields.decidedAt ?? null,
          decision_reason: fields.decisionReason ?? null,
          failure: fields.failure ?? null,
          claim_expires_at: fields.claimExpiresAt ?? null,
        }).changes === 1
      );
    },
  };
}
