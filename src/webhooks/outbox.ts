import { createAuditLog, type AuditLog } from '../broker/audit.ts';
import type { DecisionEventType, DecisionSink } from '../broker/events.ts';
import type { PolicySet, WebhookTarget } from '../broker/policy/types.ts';
import type { RequestRow } from '../broker/repository.ts';
import type { Config } from '../config/config.ts';
import type { Db } from '../storage/sqlite/open.ts';
import type { IdGenerator } from '../lib/ids.ts';
import type { Logger } from '../lib/logger.ts';
import { buildEventFacts, withTargetFacts, type DecisionEventName, type EventFacts } from './payloads.ts';

export type OutboxState = 'pending' | 'delivering' | 'delivered' | 'dead';
export type TargetKind = 'openclaw' | 'standard';
/** 'unresolved': written without the policy (invalid files); the service's dispatcher addresses it from its own ({@link OutboxStore.addressUnresolved}). */
export type RowTarget = TargetKind | 'unresolved';

export interface OutboxRow {
  id: string;
  request_id: string;
  type: DecisionEventName;
  target: RowTarget;
  url: string | null;
  url_source: 'config' | 'policy';
  session_key: string | null;
  /** 'facts' (EventFacts JSON, rendered at delivery) or 'rendered' (rows of earlier versions: the exact bytes to send). */
  body_format: 'facts' | 'rendered';
  body: string;
  state: OutboxState;
  attempts: number;
  next_attempt_at: number;
  lease_owner: string | null;
  lease_expires_at: number | null;
  last_status: number | null;
  last_error: string | null;
  created_at: number;
  updated_at: number;
  delivered_at: number | null;
}

export type NewOutboxRow = Pick<OutboxRow, 'id' | 'request_id' | 'type' | 'target' | 'url' | 'url_source' | 'session_key' | 'body_format' | 'body' | 'state' | 'next_attempt_at' | 'last_error' | 'created_at'>;

/** What a claim may take: rows due by `dueBy` or whose lease ran out by `now`, leased to `owner` until `leaseUntil`. */
export interface ClaimParams {
  now: number;
  dueBy: number;
  owner: string;
  leaseUntil: number;
}

/**
 * SQL for the outbox. Every transition out of `delivering` is conditional
 * on the lease owner, so a sender whose lease expired (and whose row was
 * taken over) cannot overwrite the newer outcome.
 */
export function createOutboxStore(db: Db) {
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
    // Unresolved rows wait until they are addressed (addressUnresolved).
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
    pending: db.prepare(`SELECT COUNT(*) FROM webhook_outbox WHERE state IN ('pending', 'delivering')`),
    byState: db.prepare('SELECT state, COUNT(*) AS n FROM webhook_outbox GROUP BY state'),
  };

  type Candidate = { id: string; url: string | null; due: number };

  /**
   * Leases up to `limit` due rows (pending and due by `dueBy`, or
   * delivering with an expired lease) to `owner` in one transaction,
   * counting the attempt on each. The transaction takes SQLite's write
   * lock first (BEGIN IMMEDIATE), so two dispatchers, even in two
   * processes, never get the same row.
   *
   * `room(url)` caps the rows taken for one target URL ('' for none). Due
   * rows are looked up target by target, so a target without room costs
   * one index seek, however long its backlog; the oldest due rows win.
   * The cost grows with the number of distinct URLs that have pending rows.
   */
  function claimBatch(p: ClaimParams & { limit: number; room?: (url: string) => number }): OutboxRow[] {
    if (p.limit < 1) return [];
    const room = p.room ?? (() => p.limit);
    return db.transaction(() => {
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
      for (const c of s.expired.all({ now: p.now, limit: p.limit }) as Candidate[]) take(c, chosen);
      const due: Candidate[] = [];
      const dueBy = { due_by: p.dueBy };
      if (roomFor(null) > 0) for (const c of s.dueWithoutUrl.all({ ...dueBy, limit: roomFor(null) }) as Candidate[]) take(c, due);
      for (let url = s.nextTarget.get({ after: '' }) as string | undefined; url !== undefined; url = s.nextTarget.get({ after: url }) as string | undefined) {
        const r = roomFor(url);
        if (r > 0) for (const c of s.dueFor.all({ ...dueBy, url, limit: r }) as Candidate[]) take(c, due);
      }
      due.sort((a, b) => a.due - b.due);
      chosen.push(...due.slice(0, p.limit - chosen.length));
      const lease = { now: p.now, due_by: p.dueBy, owner: p.owner, lease_until: p.leaseUntil };
      return chosen.flatMap((c) => (s.lease.get({ ...lease, id: c.id }) as OutboxRow | undefined) ?? []);
    })();
  }

  /**
   * Addresses up to `limit` rows written without a policy from the agent's
   * `webhook` in `policy` (the service's, loaded): as if written with it.
   * A row whose agent has no webhook is deleted (it would not have been
   * written); one whose URL carries user:password is dead, audited. Runs
   * inside the caller's transaction (the dispatcher's claim), before rows
   * are leased. Returns what it did, for the log.
   */
  function addressUnresolved(policy: PolicySet, now: number, limit = 100): { addressed: string[]; dropped: string[]; dead: string[] } {
    let audit: AuditLog | undefined;
    const done = { addressed: [] as string[], dropped: [] as string[], dead: [] as string[] };
    for (const row of s.unresolved.all({ limit }) as OutboxRow[]) {
      if (row.state !== 'pending') continue;
      const facts = JSON.parse(row.body) as EventFacts;
      const target = policy.agents.get(facts.event.agent)?.webhook;
      if (!target) {
        if (s.dropUnresolved.run(row.id).changes === 1) done.dropped.push(row.id);
        continue;
      }
      const a = addressOf(target);
      const changed = s.address.run({
        id: row.id,
        target: target.kind,
        url: a.url,
        url_source: a.url === null ? 'config' : 'policy',
        body: JSON.stringify(withTargetFacts(facts, target)),
        state: a.problem ? 'dead' : 'pending',
        last_error: a.problem ?? null,
        now,
      }).changes;
      if (changed !== 1) continue;
      if (a.problem) {
        deadOnArrival((audit ??= createAuditLog(db)), { id: row.id, requestId: row.request_id, type: row.type, target: target.kind }, now);
        done.dead.push(row.id);
      } else done.addressed.push(row.id);
    }
    return done;
  }

  return {
    addressUnresolved,
    /** Inserts an event; false when this request already has an event of this type. */
    insert(row: NewOutboxRow): boolean {
      return s.insert.run(row).changes === 1;
    },
    claimBatch,
    /** Leases the next due row (see claimBatch), or undefined when none is due. */
    claimNext(p: ClaimParams): OutboxRow | undefined {
      return claimBatch({ ...p, limit: 1 })[0];
    },
    markDelivered(id: string, owner: string, now: number, status: number): boolean {
      return s.delivered.run({ id, owner, now, status }).changes === 1;
    },
    markRetry(id: string, owner: string, now: number, p: { status: number | null; error: string; nextAttemptAt: number }): boolean {
      return s.retry.run({ id, owner, now, status: p.status, error: p.error, next: p.nextAttemptAt }).changes === 1;
    },
    markDead(id: string, owner: string, now: number, p: { status: number | null; error: string }): boolean {
      return s.dead.run({ id, owner, now, status: p.status, error: p.error }).changes === 1;
    },
    /** Gives a leased row back, due now (used when the dispatcher stops mid-send). */
    release(id: string, owner: string, now: number): boolean {
      return s.release.run({ id, owner, now }).changes === 1;
    },
    /** Re-queues a dead row: pending, attempts reset, due now. */
    requeue(id: string, now: number): boolean {
      return s.requeue.run({ id, now }).changes === 1;
    },
    get(id: string): OutboxRow | undefined {
      return s.get.get(id) as OutboxRow | undefined;
    },
    list(filter: { state?: OutboxState; limit?: number } = {}): OutboxRow[] {
      const sql = `SELECT * FROM webhook_outbox ${filter.state ? 'WHERE state = ?' : ''} ORDER BY created_at DESC, id DESC LIMIT ?`;
      const args: unknown[] = filter.state ? [filter.state] : [];
      return db.prepare(sql).all(...args, filter.limit ?? 50) as OutboxRow[];
    },
    /** A request's events, oldest first (`jit requests show`). */
    forRequest(requestId: string): OutboxRow[] {
      return s.forRequest.all(requestId) as OutboxRow[];
    },
    /** Rows not yet settled (pending or being delivered): `outbox_pending` in /healthz. */
    pendingCount(): number {
      return s.pending.pluck().get() as number;
    },
    countByState(): Record<OutboxState, number> {
      const out: Record<OutboxState, number> = { pending: 0, delivering: 0, delivered: 0, dead: 0 };
      for (const r of s.byState.all() as { state: OutboxState; n: number }[]) out[r.state] = r.n;
      return out;
    },
  };
}

export type OutboxStore = ReturnType<typeof createOutboxStore>;

/** Removes user:password and the query string, for logs and listings (a URL may carry a token). */
export function redactUrl(url: string | null): string {
  if (!url) return '-';
  try {
    const u = new URL(url);
    return `${u.protocol}//${u.host}${u.pathname}${u.search ? '?…' : ''}`;
  } catch {
    return '(invalid URL)';
  }
}

/**
 * Where a row is sent, for listings (`jit webhooks list`, `jit requests
 * show`): what {@link resolveTargetUrl} will use, named without secrets. An
 * OpenClaw row the service addresses goes to the service's
 * OPENCLAW_HOOKS_URL, whatever URL an earlier version stored in it.
 */
export function targetUrlLabel(row: Pick<OutboxRow, 'target' | 'url' | 'url_source'>): string {
  if (row.target === 'unresolved') return "(the agent's webhook in the service's policy, looked up when sent)";
  return row.target === 'openclaw' && row.url_source === 'config' ? 'OPENCLAW_HOOKS_URL' : redactUrl(row.url);
}

/** `{base}/agent`, unless `base` already ends in `/agent`. */
function openClawAgentUrl(base: string): string {
  return /\/agent\/?$/.test(new URL(base).pathname) ? base : `${base.replace(/\/+$/, '')}/agent`;
}

/**
 * Where an event is sent, decided when it is sent, by the service. An
 * OpenClaw event without a URL of its own in policy (`url_source` 'config')
 * goes to the service's OPENCLAW_HOOKS_URL plus `/agent`, whoever wrote the
 * row and whatever URL an earlier version stored in it; any other event goes
 * to the URL taken from the policy when the decision was made. Only operator
 * configuration is ever consulted, never request input, so no agent can make
 * the broker call a URL of its choosing.
 */
export function resolveTargetUrl(
  row: Pick<OutboxRow, 'target' | 'url' | 'url_source'>,
  config: Pick<Config, 'openclaw'>,
): { url: string; problem?: undefined } | { url?: undefined; problem: string } {
  if (row.target === 'unresolved') return { problem: "the agent's webhook target was not looked up in the service's policy" };
  if (row.target === 'openclaw' && row.url_source === 'config') {
    if (config.openclaw) return { url: openClawAgentUrl(config.openclaw.hooksUrl) };
    return { problem: "OPENCLAW_HOOKS_URL is not set in the service's environment, so this OpenClaw event cannot be sent; set it, restart jit serve, then run \"jit webhooks retry <id>\"" };
  }
  if (row.url) return { url: row.url };
  return { problem: 'no URL recorded for this event' };
}

/**
 * The only origin (scheme, host and port) the OpenClaw hooks token may go
 * to: the configured OpenClaw's; undefined when there is no token (or the
 * URL does not parse), so it goes nowhere. A per-agent webhook URL in a
 * policy file pointing elsewhere never gets it, so a policy entry (or a
 * typo in one) cannot hand the gateway's token to another server.
 */
export function hooksTokenOrigin(config: Pick<Config, 'openclaw'>): string | undefined {
  if (!config.openclaw?.hooksToken) return undefined;
  try {
    return new URL(config.openclaw.hooksUrl).origin;
  } catch {
    return undefined;
  }
}

export interface OutboxSinkDeps {
  db: Db;
  /**
   * The policy store (only `current()` is used): the agent's `webhook`
   * decides the target. Undefined when the policy files are invalid (a CLI
   * revocation goes ahead anyway): every event is then written `unresolved`
   * and the service's dispatcher addresses it from its own policy.
   */
  policies: { current(): PolicySet } | undefined;
  ids: IdGenerator;
  log: Logger;
  /** Called after a deliverable row is written; the dispatcher's `notify`. */
  notify?: () => void;
}

/**
 * The DecisionSink that feeds the webhook outbox. `record` runs inside the
 * broker's deciding transaction on the same connection, so the event is
 * committed with the decision or not at all.
 *
 * The row holds the event's facts and the policy's target; it needs no
 * configuration, so the service and an operator command in any shell write
 * the same row. The service's dispatcher resolves OPENCLAW_HOOKS_URL, adds
 * the token and renders the body with JIT_PUBLIC_URL when it sends.
 *
 * An agent without a `webhook` in policy gets no row. A policy URL carrying
 * user:password gets a row that is dead from the start (fetch refuses such
 * URLs, and the outbox must not hold the password), with the reason; the
 * decision itself is never blocked by a webhook problem.
 */
export function createOutboxSink(deps: OutboxSinkDeps): DecisionSink {
  const store = createOutboxStore(deps.db);
  const audit = createAuditLog(deps.db);
  const hasCredential = deps.db.prepare(`SELECT COUNT(*) FROM credentials WHERE request_id = ? AND state NOT IN ('abandoned', 'failed')`).pluck();

  return {
    record(request: RequestRow, type: DecisionEventType, at: number): void {
      let target: WebhookTarget | undefined;
      if (deps.policies) {
        try {
          target = deps.policies.current().agents.get(request.agent_name)?.webhook;
        } catch (err) {
          deps.log.error({ err, request_id: request.id, event: type }, 'no policy loaded: decision webhook not recorded');
          return;
        }
        if (!target) return;
      }

      const credentialIssued = (hasCredential.get(request.id) as number) > 0;
      const id = deps.ids.next('evt');
      const facts = buildEventFacts({ id, request, type, at, target, credentialIssued });
      const { url, problem }: { url: string | null; problem?: string } = target ? addressOf(target) : { url: null };
      const inserted = store.insert({
        id,
        request_id: request.id,
        type: facts.event.type,
        target: target?.kind ?? 'unresolved',
        url,
        url_source: url === null ? 'config' : 'policy',
        session_key: request.session_key,
        body_format: 'facts',
        body: JSON.stringify(facts),
        state: problem ? 'dead' : 'pending',
        next_attempt_at: at,
        last_error: problem ?? null,
        created_at: at,
      });
      if (!inserted) return;
      if (problem) {
        deadOnArrival(audit, { id, requestId: request.id, type: facts.event.type, target: target!.kind }, at);
        deps.log.warn({ event_id: id, request_id: request.id, type: facts.event.type }, `decision webhook not sent: ${problem}`);
        return;
      }
      deps.notify?.();
    },
  };
}

/**
 * Where an event for the agent's `target` goes: the policy's URL (OpenClaw's
 * with `/agent`), or null for OpenClaw without one (the service's
 * OPENCLAW_HOOKS_URL, resolved when sent). A URL carrying user:password is
 * stored without them and the event is dead from the start, with the reason
 * (fetch refuses such URLs, and the outbox must not hold the password).
 */
function addressOf(target: WebhookTarget): { url: string | null; problem?: string } {
  if (target.kind === 'openclaw' && !target.url) return { url: null };
  const url = target.kind === 'standard' ? target.url : openClawAgentUrl(target.url!);
  const u = new URL(url);
  if (!u.username && !u.password) return { url };
  u.username = '';
  u.password = '';
  return { url: u.toString(), problem: 'webhook URL contains user:password credentials; put them nowhere in the URL (use OPENCLAW_HOOKS_TOKEN for OpenClaw)' };
}

/** The audit entry of an event that is dead when written (its target cannot be sent to). */
function deadOnArrival(audit: Pick<AuditLog, 'append'>, e: { id: string; requestId: string; type: DecisionEventName; target: TargetKind }, at: number): void {
  audit.append({ event: 'webhook.dead', actor: 'broker', requestId: e.requestId, data: { event_id: e.id, type: e.type, target: e.target, reason: 'not_configured', attempts: 0 } }, at);
}
