import type { RequestRow } from '../rows.ts';
import type { IdempotencyRepository, RateLimitsRepository, RequestListFilter, RequestsRepository } from '../storage.ts';
import type { Db } from './open.ts';
import { requestStatusStatements } from './request-status.ts';
import type { Sync } from './sync.ts';

export function sqliteRequests(db: Db): Sync<RequestsRepository> {
  const status = requestStatusStatements(db);
  const s = {
    get: db.prepare('SELECT * FROM requests WHERE id = ?'),
    setGrant: db.prepare(`UPDATE requests SET granted_scope = ?, granted_ttl_seconds = ? WHERE id = ? AND status = 'pending'`),
    tier1Orphans: db.prepare(`SELECT * FROM requests r WHERE r.status = 'approved' AND r.decided_by = 'policy' AND r.created_at < ?
      AND NOT EXISTS (SELECT 1 FROM credentials c WHERE c.request_id = r.id AND c.state IN ('minting', 'live', 'ending'))`),
    // Both through their partial index (requests_pending_expiry, requests_approved_expiry).
    pendingExpired: db.prepare(`SELECT * FROM requests WHERE status = 'pending' AND approval_expires_at <= ? ORDER BY approval_expires_at LIMIT ?`),
    approvedExpired: db.prepare(`SELECT * FROM requests WHERE status = 'approved' AND claim_expires_at <= ? ORDER BY claim_expires_at LIMIT ?`),
    countPending: db.prepare(`SELECT COUNT(*) FROM requests WHERE agent_id = ? AND status = 'pending'`).pluck(),
    open: db.prepare(`SELECT * FROM requests WHERE status IN ('issued', 'approved', 'pending')
      AND (@agent_name IS NULL OR agent_name = @agent_name) ORDER BY created_at`),
  };
  /** The list query per filter shape (at most 32), prepared on first use. */
  const lists = new Map<string, { all(...args: unknown[]): unknown[] }>();
  return {
    insert: status.insert,
    get: (id) => s.get.get(id) as RequestRow | undefined,
    move: status.move,
    setGrant: (id, scopeJson, ttlSeconds) => s.setGrant.run(scopeJson, ttlSeconds, id).changes === 1,
    pendingPastDeadline: (now, limit) => s.pendingExpired.all(now, limit) as RequestRow[],
    approvedPastClaimWindow: (now, limit) => s.approvedExpired.all(now, limit) as RequestRow[],
    tier1ApprovedWithoutCredential: (before) => s.tier1Orphans.all(before) as RequestRow[],
    pendingCount: (agentId) => s.countPending.get(agentId) as number,
    list(filter: RequestListFilter) {
      const where: string[] = [];
      const args: unknown[] = [];
      if (filter.status) (where.push('status = ?'), args.push(filter.status));
      if (filter.agentId) (where.push('agent_id = ?'), args.push(filter.agentId));
      if (filter.agentName) (where.push('agent_name = ?'), args.push(filter.agentName));
      if (filter.search) {
        where.push("(instr(lower(id), lower(?)) > 0 OR instr(lower(agent_name), lower(?)) > 0 OR instr(lower(coalesce(session_key, '')), lower(?)) > 0 OR instr(lower(reason), lower(?)) > 0)");
        args.push(filter.search, filter.search, filter.search, filter.search);
      }
      if (filter.before) (where.push('(created_at < ? OR (created_at = ? AND id < ?))'), args.push(filter.before.createdAt, filter.before.createdAt, filter.before.id));
      const sql = `SELECT * FROM requests ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY created_at DESC, id DESC LIMIT ?`;
      let stmt = lists.get(sql);
      if (!stmt) lists.set(sql, (stmt = db.prepare(sql)));
      return stmt.all(...args, filter.limit ?? 100) as RequestRow[];
    },
    open: (filter = {}) => s.open.all({ agent_name: filter.agentName ?? null }) as RequestRow[],
  };
}

export function sqliteIdempotency(db: Db): Sync<IdempotencyRepository> {
  const find = db.prepare('SELECT * FROM requests WHERE agent_id = ? AND idempotency_key = ?');
  const release = db.prepare('UPDATE requests SET idempotency_key = NULL, body_hash = NULL WHERE id = ?');
  return {
    find: (agentId, key) => find.get(agentId, key) as RequestRow | undefined,
    release(requestId) {
      release.run(requestId);
    },
  };
}

export function sqliteRateLimits(db: Db): Sync<RateLimitsRepository> {
  // Both through the primary key (agent_id, seq): MAX(seq) and the row n - 1 below it, however busy the agent is.
  const nthNewest = db
    .prepare(`SELECT at FROM rate_events WHERE agent_id = @agent AND at > @since
      AND seq = (SELECT MAX(seq) FROM rate_events WHERE agent_id = @agent) - @offset`)
    .pluck();
  const record = db.prepare(`INSERT INTO rate_events (agent_id, seq, at)
    SELECT @agent, COALESCE(MAX(seq), 0) + 1, @at FROM rate_events WHERE agent_id = @agent`);
  const prune = db.prepare(`DELETE FROM rate_events WHERE (agent_id, seq) IN (SELECT agent_id, seq FROM rate_events WHERE at <= ? LIMIT ?)`);
  return {
    nthNewestSince: (agentId, since, n) => nthNewest.get({ agent: agentId, since, offset: n - 1 }) as number | undefined,
    record(agentId, at) {
      record.run({ agent: agentId, at });
    },
    prune: (expired, limit) => prune.run(expired, limit).changes,
  };
}
