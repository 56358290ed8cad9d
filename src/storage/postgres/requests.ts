import type { RequestRow, RequestStatus } from '../rows.ts';
import type { IdempotencyRepository, RateLimitsRepository, RequestsRepository } from '../storage.ts';
import { all, count, one, sql, type Exec, type Statement } from './exec.ts';
import { requestStatusStatements } from './request-status.ts';

const S = {
  get: sql('requests_get', 'SELECT * FROM requests WHERE id = $1'),
  setGrant: sql('requests_set_grant', `UPDATE requests SET granted_scope = $2, granted_ttl_seconds = $3 WHERE id = $1 AND status = 'pending'`),
  tier1Orphans: sql('requests_tier1_orphans', `SELECT * FROM requests r WHERE r.status = 'approved' AND r.decided_by = 'policy' AND r.created_at < $1
    AND NOT EXISTS (SELECT 1 FROM credentials c WHERE c.request_id = r.id AND c.state IN ('minting', 'live', 'ending'))`),
  pendingExpired: sql('requests_pending_expired', `SELECT * FROM requests WHERE status = 'pending' AND approval_expires_at <= $1 ORDER BY approval_expires_at LIMIT $2`),
  approvedExpired: sql('requests_approved_expired', `SELECT * FROM requests WHERE status = 'approved' AND claim_expires_at <= $1 ORDER BY claim_expires_at LIMIT $2`),
  countPending: sql('requests_count_pending', `SELECT COUNT(*) AS n FROM requests WHERE agent_id = $1 AND status = 'pending'`),
  open: sql('requests_open', `SELECT * FROM requests WHERE status IN ('issued', 'approved', 'pending')
    AND ($1::text IS NULL OR agent_name = $1) ORDER BY created_at`),
  findKey: sql('idempotency_find', 'SELECT * FROM requests WHERE agent_id = $1 AND idempotency_key = $2'),
  releaseKey: sql('idempotency_release', 'UPDATE requests SET idempotency_key = NULL, body_hash = NULL WHERE id = $1'),
  // Requests created and policy refusals both count toward the per-agent rate limit; each side reads at most `n` index entries.
  nthNewest: sql('rate_nth_newest', `SELECT at FROM (
      (SELECT created_at AS at FROM requests WHERE agent_id = $1 AND created_at > $2 ORDER BY created_at DESC LIMIT $3)
      UNION ALL (SELECT at FROM agent_refusals WHERE agent_id = $1 AND at > $2 ORDER BY at DESC LIMIT $3)) t
    ORDER BY at DESC LIMIT 1 OFFSET $3 - 1`),
  recordRefusal: sql('rate_record_refusal', 'INSERT INTO agent_refusals (agent_id, at) VALUES ($1, $2)'),
  pruneRefusals: sql('rate_prune_refusals', 'DELETE FROM agent_refusals WHERE at <= $1'),
};

/** The list query per filter shape (at most eight), made on first use. */
const lists = new Map<string, Statement>();

function listStatement(filter: { status?: RequestStatus; agentId?: string; agentName?: string }): Statement {
  const where: string[] = [];
  if (filter.status) where.push(`status = $${where.length + 1}`);
  if (filter.agentId) where.push(`agent_id = $${where.length + 1}`);
  if (filter.agentName) where.push(`agent_name = $${where.length + 1}`);
  const key = `${filter.status ? 's' : ''}${filter.agentId ? 'i' : ''}${filter.agentName ? 'n' : ''}`;
  let s = lists.get(key);
  if (!s) {
    s = sql(`requests_list_${key}`, `SELECT * FROM requests ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY created_at DESC LIMIT $${where.length + 1}`);
    lists.set(key, s);
  }
  return s;
}

export function pgRequests(x: Exec): RequestsRepository {
  const status = requestStatusStatements(x);
  return {
    insert: status.insert,
    get: (id) => one<RequestRow>(x.read(S.get, [id])),
    move: status.move,
    setGrant: async (id, scopeJson, ttlSeconds) => (await x.write(S.setGrant, [id, scopeJson, ttlSeconds])).rowCount === 1,
    pendingPastDeadline: (now, limit) => all<RequestRow>(x.read(S.pendingExpired, [now, limit])),
    approvedPastClaimWindow: (now, limit) => all<RequestRow>(x.read(S.approvedExpired, [now, limit])),
    tier1ApprovedWithoutCredential: (before) => all<RequestRow>(x.read(S.tier1Orphans, [before])),
    pendingCount: (agentId) => count(x.read(S.countPending, [agentId])),
    list(filter) {
      const args: unknown[] = [];
      if (filter.status) args.push(filter.status);
      if (filter.agentId) args.push(filter.agentId);
      if (filter.agentName) args.push(filter.agentName);
      return all<RequestRow>(x.read(listStatement(filter), [...args, filter.limit ?? 100]));
    },
    open: (filter = {}) => all<RequestRow>(x.read(S.open, [filter.agentName ?? null])),
  };
}

export function pgIdempotency(x: Exec): IdempotencyRepository {
  return {
    find: (agentId, key) => one<RequestRow>(x.read(S.findKey, [agentId, key])),
    async release(requestId) {
      await x.write(S.releaseKey, [requestId]);
    },
  };
}

export function pgRateLimits(x: Exec): RateLimitsRepository {
  return {
    nthNewestSince: async (agentId, since, n) => (await one<{ at: number }>(x.read(S.nthNewest, [agentId, since, n])))?.at,
    async recordRefusal(agentId, at) {
      await x.write(S.recordRefusal, [agentId, at]);
    },
    async pruneRefusals(expired) {
      await x.write(S.pruneRefusals, [expired]);
    },
  };
}
