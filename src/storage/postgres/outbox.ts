import type { OutboxRow, OutboxState } from '../rows.ts';
import type { OutboxRepository } from '../storage.ts';
import { all, changedOne, count, one, sql, type Exec, type Query } from './exec.ts';

const S = {
  insert: sql('outbox_insert', `INSERT INTO webhook_outbox (id, request_id, type, target, url, url_source, session_key, body_format, body, state, attempts,
    next_attempt_at, last_error, created_at, updated_at)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 0, $11, $12, $13, $13)
    ON CONFLICT (request_id, type) DO NOTHING`),
  // The claim's lookups lock what they return and skip rows another claim holds (FOR UPDATE SKIP LOCKED):
  // two claims, on one broker or several, never take one row, and never wait for each other.
  expired: sql('outbox_expired', `SELECT id, url, lease_expires_at AS due FROM webhook_outbox
    WHERE state = 'delivering' AND lease_expires_at <= $1 ORDER BY lease_expires_at LIMIT $2 FOR UPDATE SKIP LOCKED`),
  // The pending rows' distinct targets, one index seek each (webhook_outbox_target_due), however long a backlog.
  targets: sql('outbox_targets', `WITH RECURSIVE t (url) AS (
      SELECT (SELECT min(url) FROM webhook_outbox WHERE state = 'pending')
      UNION ALL SELECT (SELECT min(url) FROM webhook_outbox WHERE state = 'pending' AND url > t.url) FROM t WHERE t.url IS NOT NULL)
    SELECT url FROM t WHERE url IS NOT NULL`),
  // Due rows per target, the oldest first, at most that target's room each.
  dueFor: sql('outbox_due_for', `SELECT o.id, o.url, o.due FROM unnest($1::text[], $2::int[]) AS t (url, room)
    CROSS JOIN LATERAL (SELECT id, url, next_attempt_at AS due FROM webhook_outbox
      WHERE state = 'pending' AND url = t.url AND next_attempt_at <= $3 ORDER BY next_attempt_at LIMIT t.room FOR UPDATE SKIP LOCKED) o`),
  // Unresolved rows wait until they are addressed (address).
  dueWithoutUrl: sql('outbox_due_without_url', `SELECT id, url, next_attempt_at AS due FROM webhook_outbox
    WHERE state = 'pending' AND url IS NULL AND target <> 'unresolved' AND next_attempt_at <= $1 ORDER BY next_attempt_at LIMIT $2 FOR UPDATE SKIP LOCKED`),
  // Leases the chosen rows (locked by this claim), re-checking that each is still claimable.
  lease: sql('outbox_lease', `UPDATE webhook_outbox
    SET state = 'delivering', attempts = attempts + 1, lease_owner = $3, lease_expires_at = $4, updated_at = $1
    WHERE id = ANY ($5::text[]) AND ((state = 'pending' AND next_attempt_at <= $2) OR (state = 'delivering' AND lease_expires_at <= $1))
    RETURNING *`),
  unresolved: sql('outbox_unresolved', `SELECT * FROM webhook_outbox WHERE target = 'unresolved' ORDER BY created_at LIMIT $1`),
  address: sql('outbox_address', `UPDATE webhook_outbox SET target = $2, url = $3, url_source = $4, body = $5, state = $6, last_error = $7, updated_at = $8
    WHERE id = $1 AND target = 'unresolved' AND state = 'pending'`),
  dropUnresolved: sql('outbox_drop_unresolved', `DELETE FROM webhook_outbox WHERE id = $1 AND target = 'unresolved' AND state = 'pending'`),
  delivered: sql('outbox_delivered', `UPDATE webhook_outbox SET state = 'delivered', delivered_at = $3, last_status = $4, last_error = NULL,
    lease_owner = NULL, lease_expires_at = NULL, updated_at = $3
    WHERE id = $1 AND state = 'delivering' AND lease_owner = $2`),
  retry: sql('outbox_retry', `UPDATE webhook_outbox SET state = 'pending', next_attempt_at = $6, last_status = $4, last_error = $5,
    lease_owner = NULL, lease_expires_at = NULL, updated_at = $3
    WHERE id = $1 AND state = 'delivering' AND lease_owner = $2`),
  dead: sql('outbox_dead', `UPDATE webhook_outbox SET state = 'dead', last_status = $4, last_error = $5,
    lease_owner = NULL, lease_expires_at = NULL, updated_at = $3
    WHERE id = $1 AND state = 'delivering' AND lease_owner = $2`),
  release: sql('outbox_release', `UPDATE webhook_outbox SET state = 'pending', next_attempt_at = $3, lease_owner = NULL, lease_expires_at = NULL, updated_at = $3
    WHERE id = $1 AND state = 'delivering' AND lease_owner = $2`),
  requeue: sql('outbox_requeue', `UPDATE webhook_outbox SET state = 'pending', attempts = 0, next_attempt_at = $2,
    last_error = NULL, last_status = NULL, updated_at = $2
    WHERE id = $1 AND state = 'dead'`),
  get: sql('outbox_get', 'SELECT * FROM webhook_outbox WHERE id = $1'),
  forRequest: sql('outbox_for_request', 'SELECT * FROM webhook_outbox WHERE request_id = $1 ORDER BY created_at, id'),
  listAll: sql('outbox_list_all', 'SELECT * FROM webhook_outbox ORDER BY created_at DESC, id DESC LIMIT $1'),
  listState: sql('outbox_list_state', 'SELECT * FROM webhook_outbox WHERE state = $1 ORDER BY created_at DESC, id DESC LIMIT $2'),
  pending: sql('outbox_pending_count', `SELECT COUNT(*) AS n FROM webhook_outbox WHERE state IN ('pending', 'delivering')`),
  deadCount: sql('outbox_dead_count', `SELECT COUNT(*) AS n FROM webhook_outbox WHERE state = 'dead'`),
  byState: sql('outbox_by_state', 'SELECT state, COUNT(*) AS n FROM webhook_outbox GROUP BY state'),
};

type Candidate = { id: string; url: string | null; due: number };
type ClaimInput = Parameters<OutboxRepository['claim']>[0];

/*
 * Due rows are looked up target by target, so a target without room costs
 * nothing, however long its backlog; the oldest due rows win (the same
 * choice as the SQLite engine's claim). Every lookup locks the rows it
 * returns and skips rows locked by another claim: a row is leased by one
 * claim at a time, and claims on several brokers never wait for each other.
 */
async function claim(q: Query, p: ClaimInput): Promise<OutboxRow[]> {
  const room = p.room ?? (() => p.limit);
  const left = new Map<string, number>();
  const roomFor = (url: string | null) => left.get(url ?? '') ?? Math.max(0, Math.min(room(url ?? ''), p.limit));
  const take = (c: Candidate, into: Candidate[]) => {
    const r = roomFor(c.url);
    if (r <= 0) return;
    left.set(c.url ?? '', r - 1);
    into.push(c);
  };
  // A lease a crashed dispatcher left behind first: that event is the oldest work.
  const chosen: Candidate[] = [];
  for (const c of (await q<Candidate>(S.expired, [p.now, p.limit])).rows) take(c, chosen);
  const due: Candidate[] = [];
  if (roomFor(null) > 0) for (const c of (await q<Candidate>(S.dueWithoutUrl, [p.dueBy, roomFor(null)])).rows) take(c, due);
  const urls: string[] = [];
  const rooms: number[] = [];
  for (const { url } of (await q<{ url: string }>(S.targets)).rows) {
    const r = roomFor(url);
    if (r > 0) (urls.push(url), rooms.push(r));
  }
  if (urls.length > 0) for (const c of (await q<Candidate>(S.dueFor, [urls, rooms, p.dueBy])).rows) take(c, due);
  due.sort((a, b) => a.due - b.due);
  chosen.push(...due.slice(0, p.limit - chosen.length));
  if (chosen.length === 0) return [];
  const leased = new Map((await q<OutboxRow>(S.lease, [p.now, p.dueBy, p.owner, p.leaseUntil, chosen.map((c) => c.id)])).rows.map((r) => [r.id, r]));
  return chosen.flatMap((c) => leased.get(c.id) ?? []);
}

export function pgOutbox(x: Exec): OutboxRepository {
  return {
    insert: (row) =>
      changedOne(x.write(S.insert, [row.id, row.request_id, row.type, row.target, row.url, row.url_source, row.session_key, row.body_format, row.body, row.state,
        row.next_attempt_at, row.last_error, row.created_at])),
    claim: async (p) => (p.limit < 1 ? [] : x.lease((q) => claim(q, p))),
    unresolved: (limit) => all<OutboxRow>(x.read(S.unresolved, [limit])),
    address: (id, a, now) => changedOne(x.write(S.address, [id, a.target, a.url, a.url_source, a.body, a.state, a.last_error, now])),
    dropUnresolved: (id) => changedOne(x.write(S.dropUnresolved, [id])),
    // The owner-conditional marks: one conditional UPDATE each, without the write lock (exec.ts).
    markDelivered: (id, owner, now, status) => changedOne(x.unlocked(S.delivered, [id, owner, now, status])),
    markRetry: (id, owner, now, p) => changedOne(x.unlocked(S.retry, [id, owner, now, p.status, p.error, p.nextAttemptAt])),
    markDead: (id, owner, now, p) => changedOne(x.unlocked(S.dead, [id, owner, now, p.status, p.error])),
    release: (id, owner, now) => changedOne(x.unlocked(S.release, [id, owner, now])),
    requeue: (id, now) => changedOne(x.write(S.requeue, [id, now])),
    get: (id) => one<OutboxRow>(x.read(S.get, [id])),
    list: (filter = {}) => all<OutboxRow>(filter.state ? x.read(S.listState, [filter.state, filter.limit ?? 50]) : x.read(S.listAll, [filter.limit ?? 50])),
    forRequest: (requestId) => all<OutboxRow>(x.read(S.forRequest, [requestId])),
    pendingCount: () => count(x.read(S.pending)),
    deadCount: () => count(x.read(S.deadCount)),
    async countByState() {
      const out: Record<OutboxState, number> = { pending: 0, delivering: 0, delivered: 0, dead: 0 };
      for (const r of (await x.read<{ state: OutboxState; n: number }>(S.byState)).rows) out[r.state] = r.n;
      return out;
    },
  };
}
