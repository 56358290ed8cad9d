import type { RequestRow } from '../rows.ts';
import type { IdempotencyRepository, RateLimitsRepository, RequestListFilter, RequestsRepository } from '../storage.ts';
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
  // Both through the primary key (agent_id, seq): MAX(seq) and the row n - 1 below it, however busy the agent is.
  nthNewest: sql('rate_nth_newest', `SELECT at FROM rate_events WHERE agent_id = $1 AND at > $2
    AND seq = (SELECT MAX(seq) FROM rate_events WHERE agent_id = $1) - ($3 - 1)`),
  // Numbered under the write lock, which every writer holds: MAX(seq) + 1 cannot race.
  record: sql('rate_record', `INSERT INTO rate_events (agent_id, seq, at)
    SELECT $1, COALESCE(MAX(seq), 0) + 1, $2 FROM rate_events WHERE agent_id = $1`),
  prune: sql('rate_prune', 'DELETE FROM rate_events WHERE (agent_id, seq) IN (SELECT agent_id, seq FROM rate_events WHERE at <= $1 LIMIT $2)'),
};

/** The list query per filter shape (at most 32), made on first use. */
const lists = new Map<string, Statement>();

/** The list statement of `filter`'s shape and its parameters (the limit last). */
function listQuery(filter: RequestListFilter): { statement: Statement; args: unknown[] } {
  const where: string[] = [];
  const args: unknown[] = [];
  const param = (value: unknown) => (args.push(value), `$${args.length}`);
  if (filter.status) where.push(`status = ${param(filter.status)}`);
  if (filter.agentId) where.push(`agent_id = ${param(filter.agentId)}`);
  if (filter.agentName) where.push(`agent_name = ${param(filter.agentName)}`);
  if (filter.search) {
    const p = param(filter.search);
    where.push(`(strpos(lower(id), lower(${p})) > 0 OR strpos(lower(agent_name), lower(${p})) > 0 OR strpos(lower(coalesce(session_key, '')), lower(${p})) > 0 OR strpos(lower(reason), lower(${p})) > 0)`);
  }
  if (filter.before) {
    const at = param(filter.before.createdAt);
    where.push(`(created_at < ${at} OR (created_at = ${at} AND id < ${param(filter.before.id)}))`);
  }
  const limit = param(filter.limit ?? 100);
  const key = `${filter.status ? 's' : ''}${filter.agentId ? 'i' : ''}${filter.agentName ? 'n' : ''}${filter.search ? 't' : ''}${filter.before ? 'b' : ''}`;
  let statement = lists.get(key);
  if (!statement) {
    statement = sql(`requests_list_${key}`, `SELECT * FROM requests ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY created_at DESC, id DESC LIMIT ${limit}`);
    lists.set(key, statement);
  }
  return { statement, args };
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
      const { statement, args } = listQuery(filter);
      return all<RequestRow>(x.read(statement, args));
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
    // Sent ahead (its answer unused): it fails only through a bug, the write lock numbering it alone.
    record: (agentId, at) => x.later(S.record, [agentId, at]),
    prune: async (expired, limit) => (await x.write(S.prune, [expired, limit])).rowCount,
  };
}
