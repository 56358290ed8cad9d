import type { NewRequestRow, RequestStatus, StatusMoveFields } from '../rows.ts';
import { changedOne, sql, type Exec } from './exec.ts';

/**
 * Every SQL statement that writes a request's `status` lives here: the
 * insert (a request's first status) and the conditional move, which makes
 * each move happen at most once (`WHERE status = $from`: of two callers
 * racing, on one broker or two, exactly one changes the row). As in the
 * SQLite engine (src/storage/sqlite/request-status.ts), there is no bulk
 * status update.
 */
const COLUMNS = ['id', 'agent_id', 'agent_name', 'resource', 'tier', 'required_tier', 'status', 'reason', 'scope', 'ttl_seconds', 'session_key', 'rules',
  'idempotency_key', 'body_hash', 'created_at', 'updated_at', 'approval_expires_at', 'claim_expires_at', 'decided_by', 'decided_at', 'decision_reason', 'failure', 'node_id'] as const;

const INSERT = sql('requests_insert', `INSERT INTO requests (${COLUMNS.join(', ')}) VALUES (${COLUMNS.map((_, i) => `$${i + 1}`).join(', ')})`);
const MOVE = sql('requests_move', `UPDATE requests SET status = $3, updated_at = $4,
  decided_by = COALESCE($5, decided_by), decided_at = COALESCE($6, decided_at),
  decision_reason = COALESCE($7, decision_reason), failure = COALESCE($8, failure),
  claim_expires_at = COALESCE($9, claim_expires_at)
  WHERE id = $1 AND status = $2`);

export function requestStatusStatements(x: Exec) {
  return {
    async insert(row: NewRequestRow): Promise<void> {
      // Its one failure (a uniqueness rule: a reused idempotency key; else random ids) fails the whole transaction (Exec.later).
      await x.later(INSERT, COLUMNS.map((c) => row[c] ?? null), row.idempotency_key !== null && row.idempotency_key !== undefined);
      if (x.tx) (x.tx.insertedRequests ??= new Set()).add(row.id);
    },
    /** Moves request `id` from `from` to `to`; false if it was no longer in `from`. */
    move(id: string, from: RequestStatus, to: RequestStatus, now: number, fields: StatusMoveFields = {}): Promise<boolean> {
      return changedOne(
        x.write(MOVE, [id, from, to, now, fields.decidedBy ?? null, fields.decidedAt ?? null, fields.decisionReason ?? null, fields.failure ?? null, fields.claimExpiresAt ?? null]),
      );
    },
  };
}
