import { claimChoice, type ClaimCandidate } from '../outbox-claim.ts';
import type { OutboxRow, OutboxState } from '../rows.ts';
import type { OutboxRepository } from '../storage.ts';
import type { Db } from './open.ts';
import type { Sync } from './sync.ts';

export function sqliteOutbox(db: Db): Sync<OutboxRepository> {
  const s = {
    insert: db.prepare(`INSERT INTO webhook_outbox (id, request_id, type, target, url, url_source, session_key, body_format, body, state, attempts,
      next_attempt_at, last_error, created_at, updated_at)
      VALUES (@id, @request_id, @type, @target, @url, @url_source, @session_key, @body_format, @body, @state, 0, @next_attempt_at, @last_error, @created_at, @created_at)
      ON CONFLICT (request_id, type) DO NOTHING`),
    // Each lookup names its partial index (INDEXED BY): left to itself SQLite
    // took the (state, created_at) index and sorted every pending row on each
    // claim; and should the index ever be unusable, preparing fails loudly.
    expired: db.prepare(`SELECT id, url, lease_expires_at AS due FROM webhook_outbox INDEXED BY webhook_outbox_lease
      WHERE state = 'delivering' AND lease_expires_at <= @now ORDER BY lease_expires_at LIMIT @limit`),
    /** The pending rows' targets, one index seek each: the next URL after @after. */
    nextTarget: db.prepare(`SELECT url FROM webhook_outbox INDEXED BY webhook_outbox_target_due
      WHERE state = 'pending' AND url > @after ORDER BY url LIMIT 1`).pluck(),
    dueFor: db.prepare(`SELECT id, url, next_attempt_at AS due FROM webhook_outbox INDEXED BY webhook_outbox_target_due
      WHERE state = 'pending' AND url = @url AND next_attempt_at <= @due_by ORDER BY next_attempt_at LIMIT @limit`),
    // Unresolved rows wait until they are addressed (address).
    dueWithoutUrl: db.prepare(`SELECT id, url, next_attempt_at AS due FROM webhook_outbox INDEXED BY webhook_outbox_target_due
      WHERE state = 'pending' AND url IS NULL AND target != 'unresolved' AND next_attempt_at <= @due_by ORDER BY next_attempt_at LIMIT @limit`),
    unresolved: db.prepare(`SELECT * FROM webhook_outbox INDEXED BY webhook_outbox_unresolved
      WHERE target = 'unresolved' ORDER BY created_at LIMIT @limit`),
    address: db.prepare(`UPDATE webhook_outbox SET target = @target, url = @url, url_source = @url_source, body = @body,
      state = @state, last_error = @last_error, updated_at = @now
      WHERE id = @id AND target = 'unresolved' AND state = 'pending'`),
    dropUnresolved: db.prepare(`DELETE FROM webhook_outbox WHERE id = ? AND target = 'unresolved' AND state = 'pending'`),
    // Leases one candidate, re-checking that it is claimable (it is: the claim's transaction holds the write lock).
    lease: db.prepare(`UPDATE webhook_outbox
      SET state = 'delivering', attempts = attempts + 1, lease_owner = @owner, lease_expires_at = @lease_until, updated_at = @now
      WHERE id = @id AND ((state = 'pending' AND next_attempt_at <= @due_by) OR (state = 'delivering' AND lease_expires_at <= @now))
      RETURNING *`),
    delivered: db.prepare(`UPDATE webhook_outbox SET state = 'delivered', delivered_at = @now, last_status = @status, last_error = NULL,
      lease_owner = NULL, lease_expires_at = NULL, updated_at = @now
      WHERE id = @id AND state = 'delivering' AND lease_owner = @owner`),
    retry: db.prepare(`UPDATE webhook_outbox SET state = 'pending', next_attempt_at = @next, last_status = @status, last_error = @error,
      lease_owner = NULL, lease_expires_at = NULL, updated_at = @now
      WHERE id = @id AND state = 'delivering' AND lease_owner = @owner`),
    dead: db.prepare(`UPDATE webhook_outbox SET state = 'dead', last_status = @status, last_error = @error,
      lease_owner = NULL, lease_expires_at = NULL, updated_at = @now
      WHERE id = @id AND state = 'delivering' AND lease_owner = @owner`),
    release: db.prepare(`UPDATE webhook_outbox SET state = 'pending', next_attempt_at = @now, lease_owner = NULL, lease_expires_at = NULL, updated_at = @now
      WHERE id = @id AND state = 'delivering' AND lease_owner = @owner`),
    requeue: db.prepare(`UPDATE webhook_outbox SET state = 'pending', attempts = 0, next_attempt_at = @now,
      last_error = NULL, last_status = NULL, updated_at = @now
      WHERE id = @id AND state = 'dead'`),
    get: db.prepare('SELECT * FROM webhook_outbox WHERE id = ?'),
    forRequest: db.prepare('SELECT * FROM webhook_outbox WHERE request_id = ? ORDER BY created_at, id'),
    listAll: db.prepare('SELECT * FROM webhook_outbox ORDER BY created_at DESC, id DESC LIMIT ?'),
    listState: db.prepare('SELECT * FROM webhook_outbox WHERE state = ? ORDER BY created_at DESC, id DESC LIMIT ?'),
    // Two index range counts, each as long as what it counts.
    pending: db.prepare(`SELECT COUNT(*) FROM webhook_outbox WHERE state IN ('pending', 'delivering')`).pluck(),
    deadCount: db.prepare(`SELECT COUNT(*) FROM webhook_outbox WHERE state = 'dead'`).pluck(),
    byState: db.prepare('SELECT state, COUNT(*) AS n FROM webhook_outbox GROUP BY state'),
  };

  /*
   * Due rows are looked up target by target, so a target without room costs
   * one index seek, however long its backlog; the oldest due rows win
   * (claimChoice). The cost grows with the number of distinct URLs that have
   * pending rows. In a transaction of its own unless the caller's is open (a
   * savepoint then).
   */
  const claim = db.transaction((p: Parameters<Sync<OutboxRepository>['claim']>[0]): OutboxRow[] => {
    const choice = claimChoice(p);
    for (const c of s.expired.all({ now: p.now, limit: p.limit }) as ClaimCandidate[]) choice.expired(c);
    const dueBy = { due_by: p.dueBy };
    if (choice.roomFor(null) > 0) for (const c of s.dueWithoutUrl.all({ ...dueBy, limit: choice.roomFor(null) }) as ClaimCandidate[]) choice.due(c);
    for (let url = s.nextTarget.get({ after: '' }) as string | undefined; url !== undefined; url = s.nextTarget.get({ after: url }) as string | undefined) {
      const r = choice.roomFor(url);
      if (r > 0) for (const c of s.dueFor.all({ ...dueBy, url, limit: r }) as ClaimCandidate[]) choice.due(c);
    }
    const lease = { now: p.now, due_by: p.dueBy, owner: p.owner, lease_until: p.leaseUntil };
    return choice.chosen().flatMap((c) => (s.lease.get({ ...lease, id: c.id }) as OutboxRow | undefined) ?? []);
  });

  return {
    insert: (row) => s.insert.run(row).changes === 1,
    claim: (p) => (p.limit < 1 ? [] : claim(p)),
    unresolved: (limit) => s.unresolved.all({ limit }) as OutboxRow[],
    address: (id, a, now) => s.address.run({ id, ...a, now }).changes === 1,
    dropUnresolved: (id) => s.dropUnresolved.run(id).changes === 1,
    markDelivered: (id, owner, now, status) => s.delivered.run({ id, owner, now, status }).changes === 1,
    markRetry: (id, owner, now, p) => s.retry.run({ id, owner, now, status: p.status, error: p.error, next: p.nextAttemptAt }).changes === 1,
    markDead: (id, owner, now, p) => s.dead.run({ id, owner, now, status: p.status, error: p.error }).changes === 1,
    release: (id, owner, now) => s.release.run({ id, owner, now }).changes === 1,
    requeue: (id, now) => s.requeue.run({ id, now }).changes === 1,
    get: (id) => s.get.get(id) as OutboxRow | undefined,
    list: (filter = {}) => (filter.state ? s.listState.all(filter.state, filter.limit ?? 50) : s.listAll.all(filter.limit ?? 50)) as OutboxRow[],
    forRequest: (requestId) => s.forRequest.all(requestId) as OutboxRow[],
    pendingCount: () => s.pending.get() as number,
    deadCount: () => s.deadCount.get() as number,
    countByState() {
      const out: Record<OutboxState, number> = { pending: 0, delivering: 0, delivered: 0, dead: 0 };
      for (const r of s.byState.all() as { state: OutboxState; n: number }[]) out[r.state] = r.n;
      return out;
    },
  };
}
