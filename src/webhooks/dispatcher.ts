import { createAuditLog } from '../broker/audit.ts';
import type { PolicySet } from '../broker/policy/types.ts';
import type { Config } from '../config/config.ts';
import type { Db } from '../db/open.ts';
import type { Clock } from '../lib/clock.ts';
import { scrubSecrets, type Logger } from '../lib/logger.ts';
import { randomToken } from '../lib/secrets.ts';
import type { KeyRing } from '../keys/key-ring.ts';
import { createOutboxStore, hooksTokenOrigin, redactUrl, resolveTargetUrl, type OutboxRow } from './outbox.ts';
import { renderEventBody, type EventFacts } from './payloads.ts';
import { DEFAULT_RETRY_SCHEDULE_MS, nextAttemptDelay, parseRetryAfter } from './retry.ts';
import { signWebhook } from './sign.ts';
import { createHttpTransport, type Transport, type TransportResponse } from './transport.ts';

/**
 * Statuses from OpenClaw that retrying cannot fix (SPEC §8): a bad payload
 * or session policy (400), a bad token (401/403), no hooks endpoint at that
 * URL (404/405), gone (410), or too large (413). Dead at once, loudly.
 */
export const OPENCLAW_CONFIG_ERRORS: ReadonlySet<number> = new Set([400, 401, 403, 404, 405, 410, 413]);

function openClawHint(status: number, token: 'sent' | 'unset' | 'other_origin'): string {
  switch (status) {
    case 400:
      return 'OpenClaw rejected the payload: set hooks.allowRequestSessionKey to true, make hooks.allowedSessionKeyPrefixes cover the session key, and check agent_id names an existing agent';
    case 401:
    case 403:
      if (token === 'other_origin') {
        return "no token was sent: this policy webhook URL's origin differs from OPENCLAW_HOOKS_URL, and OPENCLAW_HOOKS_TOKEN goes only to that origin; point the agent's webhook at the configured OpenClaw (or leave `webhook: openclaw`)";
      }
      return token === 'sent' ? 'OpenClaw rejected the token: OPENCLAW_HOOKS_TOKEN must equal hooks.token' : 'OPENCLAW_HOOKS_TOKEN is not set; set it to hooks.token';
    case 404:
    case 405:
      return 'no OpenClaw hooks endpoint there: check OPENCLAW_HOOKS_URL (e.g. http://127.0.0.1:18789/hooks) and hooks.enabled / hooks.path';
    case 410:
      return 'the receiver says the endpoint is gone';
    default:
      return 'the payload is too large for OpenClaw';
  }
}

export interface DrainSummary {
  delivered: number;
  retried: number;
  dead: number;
}

export interface Dispatcher {
  /** Delivers due rows, `concurrency` at a time, until stop(). */
  start(): void;
  /** Stops: an attempt in flight is aborted and its row is due again at once; outcomes already known are committed. */
  stop(): Promise<void>;
  /** Wakes the dispatcher now (call after committing a new outbox row). */
  notify(): void;
  /** Delivers every row due now (up to `batchSize`), `concurrency` at a time, and reports the committed outcomes. */
  drainOnce(): Promise<DrainSummary>;
  /** Rows not yet settled: pending or being delivered. */
  pendingCount(): number;
}

export interface DispatcherDeps {
  db: Db;
  clock: Clock;
  log: Logger;
  keyRing: Pick<KeyRing, 'current'>;
  /** The service's own: the OpenClaw URL and token, and JIT_PUBLIC_URL for the claim call, are applied at delivery. */
  config: Pick<Config, 'openclaw' | 'publicUrl'>;
  /**
   * The service's loaded policy: events written without one (`unresolved`,
   * by a CLI revocation while the policy files were invalid) are addressed
   * from the agent's `webhook` in it before they are claimed. Without it
   * such events wait.
   */
  policies?: { current(): PolicySet };
  /** How attempts are sent (default: node:http/https with keep-alive, see createHttpTransport). */
  transport?: Transport;
  /** Counts delivery outcomes (the broker's Prometheus metrics), once each is committed. */
  onOutcome?: (outcome: 'delivered' | 'retried' | 'dead', target: string) => void;
  /** Parallel deliveries in all (default {@link DEFAULT_CONCURRENCY}). */
  concurrency?: number;
  /**
   * Parallel deliveries to one URL (default half of `concurrency`): a hung
   * receiver holds no more slots than this, the rest go on serving others.
   */
  perTargetConcurrency?: number;
  /** Per-attempt timeout (default 15 s). */
  timeoutMs?: number;
  /** How long a claimed row stays leased (default timeout + 45 s); a crash mid-send (or before its outcome is committed) is retried after it. */
  leaseMs?: number;
  /** Idle, the dispatcher looks for due rows this often (default 1 s), which also picks up rows other processes wrote. */
  pollIntervalMs?: number;
  /**
   * Known outcomes wait at most this long to be committed together (default
   * 5 ms). They go sooner with the next claim (one transaction for both),
   * once `flushBatch` are waiting, when no attempt is left in flight, and on
   * stop().
   */
  flushIntervalMs?: number;
  /** Commit at once when this many outcomes are waiting (default 100). */
  flushBatch?: number;
  /** drainOnce cap (default 100). */
  batchSize?: number;
  schedule?: readonly number[];
  jitter?: number;
  random?: () => number;
}

type Outcome = 'delivered' | 'retried' | 'dead' | 'released' | 'lost';

/** What one attempt came to, waiting to be committed. */
interface Settled {
  row: OutboxRow;
  /** Where it was sent (null: no target), as resolved for the attempt. */
  url: string | null;
  outcome: 'delivered' | 'retried' | 'dead';
  status: number | null;
  error?: string;
  reason: string;
  nextAttemptAt?: number;
}

/** Parallel deliveries in all, by default. */
export const DEFAULT_CONCURRENCY = 32;

/** After a freed slot, the next claim waits this long for more slots to free, so that one transaction leases several rows. */
const CLAIM_COALESCE_MS = 2;

/**
 * Delivers the webhook outbox: at least once, signed, with retries.
 *
 * Claiming: one transaction leases up to as many due rows as there are free
 * slots (state `delivering`, lease owner, lease expiry), so concurrent
 * dispatchers — even in two processes — never send one row at the same
 * time, and a row whose sender crashed becomes due again when its lease
 * runs out. Rows are claimed only for free slots, never queued in memory,
 * so a row's lease runs while it is actually being sent. No URL gets more
 * than `perTargetConcurrency` slots: a backlog for a hung receiver cannot
 * take them all.
 *
 * Recording: an attempt's outcome (delivered, retry later, dead) is
 * committed, with its audit entry, in one transaction together with the
 * other outcomes known by then — in the next claim's transaction, or within
 * `flushIntervalMs`, or at once when nothing else is in flight, and on
 * stop(). Each write is conditional on the lease owner. Until it commits
 * the row stays `delivering` under its lease, so an outcome lost in a crash
 * (or in a failed commit) means the event is sent again, with the same
 * webhook-id, once the lease expires: at least once, never lost. Progress
 * lives only in the table, so a restart resumes where it stopped.
 */
export function createDispatcher(deps: DispatcherDeps): Dispatcher {
  const { db, clock, log, keyRing, config } = deps;
  const store = createOutboxStore(db);
  const audit = createAuditLog(db);
  const ownTransport = deps.transport ? undefined : createHttpTransport();
  const transport = deps.transport ?? ownTransport!;
  const concurrency = Math.max(1, deps.concurrency ?? DEFAULT_CONCURRENCY);
  const perTarget = Math.min(concurrency, Math.max(1, deps.perTargetConcurrency ?? Math.ceil(concurrency / 2)));
  const timeoutMs = deps.timeoutMs ?? 15_000;
  const leaseMs = deps.leaseMs ?? timeoutMs + 45_000;
  const pollIntervalMs = deps.pollIntervalMs ?? 1_000;
  const flushIntervalMs = deps.flushIntervalMs ?? 5;
  const flushBatch = Math.max(1, deps.flushBatch ?? 100);
  const batchSize = deps.batchSize ?? 100;
  const schedule = deps.schedule ?? DEFAULT_RETRY_SCHEDULE_MS;
  const instance = randomToken(6);
  const hooksToken = config.openclaw?.hooksToken;
  const hooksOrigin = hooksTokenOrigin(config);
  /** Whether the OpenClaw hooks token may go to `url`: see {@link hooksTokenOrigin}. */
  const mayCarryHooksToken = (url: string): boolean => {
    if (hooksOrigin === undefined) return false;
    try {
      return new URL(url).origin === hooksOrigin;
    } catch {
      return false;
    }
  };

  if (config.openclaw && !hooksToken) {
    log.warn('OPENCLAW_HOOKS_URL is set but OPENCLAW_HOOKS_TOKEN is not; OpenClaw will answer 401 and events will be dead-lettered');
  }

  let running = false;
  /** Set by stop(): attempts in flight are aborted and their rows released. */
  let stopping = false;
  /** The abort handle of each attempt in flight, for stop(). */
  const inFlightAborts = new Set<(reason: Error) => void>();
  let pump: Promise<void> | undefined;
  const sleepers = new Set<() => void>();

  /** Removes anything secret-shaped from receiver-supplied text before it is stored or logged. */
  function clean(text: string): string {
    let t = scrubSecrets(text.replace(/\s+/g, ' ').trim());
    if (hooksToken) t = t.split(hooksToken).join('[redacted]');
    return t.length > 300 ? `${t.slice(0, 300)}…` : t;
  }

  function sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        sleepers.delete(done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      sleepers.add(done);
    });
  }

  function wakeAll(): void {
    for (const wake of [...sleepers]) wake();
  }

  // ---- Outcomes: committed in batches ----

  interface Waiting {
    settled: Settled;
    resolve: (o: Outcome) => void;
  }
  const waiting: Waiting[] = [];
  let flushTimer: NodeJS.Timeout | undefined;

  function record(settled: Settled): Promise<Outcome> {
    return new Promise((resolve) => {
      waiting.push({ settled, resolve });
      if (waiting.length >= flushBatch) flush();
      else flushTimer ??= setTimeout(flush, flushIntervalMs);
    });
  }

  /** Writes one outcome (conditional on the lease) and its audit entry; false when the lease was lost. */
  function write(p: Settled, now: number): boolean {
    const { row, outcome } = p;
    const owner = row.lease_owner!;
    const changed =
      outcome === 'delivered'
        ? store.markDelivered(row.id, owner, now, p.status!)
        : outcome === 'retried'
          ? store.markRetry(row.id, owner, now, { status: p.status, error: p.error!, nextAttemptAt: p.nextAttemptAt! })
          : store.markDead(row.id, owner, now, { status: p.status, error: p.error! });
    if (changed) {
      audit.append(
        {
          event: outcome === 'delivered' ? 'webhook.delivered' : outcome === 'retried' ? 'webhook.retry' : 'webhook.dead',
          actor: 'broker',
          requestId: row.request_id,
          data: {
            event_id: row.id,
            type: row.type,
            target: row.target,
            attempt: row.attempts,
            status: p.status,
            ...(outcome === 'delivered' ? {} : { reason: p.reason }),
            ...(p.nextAttemptAt !== undefined ? { next_attempt_at: new Date(p.nextAttemptAt).toISOString() } : {}),
          },
        },
        now,
      );
    }
    return changed;
  }

  /** After the commit: metrics and logs. */
  function report(p: Settled, changed: boolean): Outcome {
    const { row, outcome } = p;
    const fields = { event_id: row.id, request_id: row.request_id, type: row.type, target: row.target, url: redactUrl(p.url), attempt: row.attempts, status: p.status };
    if (!changed) {
      log.warn(fields, 'webhook outcome not recorded: the lease expired and another dispatcher took the event over');
      return 'lost';
    }
    deps.onOutcome?.(outcome, row.target);
    if (outcome === 'delivered') log.info(fields, 'decision webhook delivered');
    else if (outcome === 'retried') log.warn({ ...fields, error: p.error, next_attempt_at: new Date(p.nextAttemptAt!).toISOString() }, 'decision webhook failed; will retry');
    // Not configured is a warning: dev mode runs without OpenClaw on purpose, and the dead row keeps the event.
    else if (p.reason === 'not_configured') log.warn({ ...fields, error: p.error }, `decision webhook not sent: ${p.error}`);
    else log.error({ ...fields, error: p.error }, `decision webhook DEAD (${p.reason}): ${p.error} — fix the cause, then run "jit webhooks retry ${row.id}"`);
    return outcome;
  }

  function takeWaiting(): Waiting[] {
    if (flushTimer) clearTimeout(flushTimer);
    flushTimer = undefined;
    return waiting.splice(0);
  }

  /** Inside a transaction: writes each outcome; whether each still held its lease. */
  function writeAll(batch: Waiting[], now: number): boolean[] {
    return batch.map((w) => write(w.settled, now));
  }

  /** After the commit. */
  function settle(batch: Waiting[], changed: boolean[]): void {
    batch.forEach((w, i) => w.resolve(report(w.settled, changed[i]!)));
  }

  /** Commits every outcome waiting, in one transaction. */
  function flush(): void {
    const batch = takeWaiting();
    if (batch.length === 0) return;
    let changed: boolean[];
    try {
      changed = db.transaction(() => writeAll(batch, clock.now()))();
    } catch (err) {
      // Nothing of the batch was written: the rows stay leased, and are sent again when the leases expire.
      log.error({ err, event_ids: batch.map((w) => w.settled.row.id) }, 'could not record webhook outcomes; those events are sent again, with the same webhook-id, when their leases expire');
      for (const w of batch) w.resolve('lost');
      return;
    }
    settle(batch, changed);
  }

  // ---- Slots: attempts in flight, in all and per URL ----

  let inFlight = 0;
  const perUrl = new Map<string, number>();
  const attempts = new Set<Promise<void>>();
  let freedSinceClaim = 0;
  let coalesce: NodeJS.Timeout | undefined;

  /** A slot came free: wake the claimer once several have, or shortly after the first. */
  function slotFreed(): void {
    freedSinceClaim++;
    if (freedSinceClaim >= Math.max(1, Math.floor(perTarget / 2)) || inFlight === 0) {
      wakeAll();
    } else if (!coalesce) {
      coalesce = setTimeout(() => {
        coalesce = undefined;
        wakeAll();
      }, CLAIM_COALESCE_MS);
    }
  }

  /** Addresses events written without a policy from the service's own (inside the claim's transaction). */
  function addressUnresolved(now: number): void {
    if (!deps.policies) return;
    let policy: PolicySet;
    try {
      policy = deps.policies.current();
    } catch {
      return; // no policy loaded yet: they wait
    }
    const done = store.addressUnresolved(policy, now);
    if (done.addressed.length > 0) log.info({ event_ids: done.addressed }, "decision webhooks written without a policy addressed from the service's");
    if (done.dropped.length > 0) log.info({ event_ids: done.dropped }, "decision webhooks written without a policy dropped: the agent has no webhook in the service's policy");
    if (done.dead.length > 0) log.warn({ event_ids: done.dead }, 'decision webhooks not sent: the webhook URL contains user:password credentials');
  }

  /**
   * Leases up to `limit` due rows, no more per URL than its free share of
   * the slots. The same transaction commits the outcomes waiting (one
   * commit instead of two); should it fail, they are committed on their own.
   */
  function claim(dueBy: number, limit: number): OutboxRow[] {
    freedSinceClaim = 0;
    const now = clock.now();
    const params = { now, dueBy, owner: `${instance}:${randomToken(6)}`, leaseUntil: now + leaseMs, limit, room: (url: string) => perTarget - (perUrl.get(url) ?? 0) };
    const batch = takeWaiting();
    let changed: boolean[] = [];
    let rows: OutboxRow[];
    try {
      rows = db.transaction(() => {
        changed = writeAll(batch, now);
        addressUnresolved(now);
        return store.claimBatch(params);
      })();
    } catch (err) {
      waiting.unshift(...batch);
      flush();
      throw err;
    }
    settle(batch, changed);
    return rows;
  }

  /** Starts one attempt in a slot; `done` settles when the slot is free again, `outcome` once the outcome is committed. */
  function launch(row: OutboxRow): { done: Promise<void>; outcome: Promise<Outcome> } {
    const url = row.url ?? '';
    inFlight++;
    perUrl.set(url, (perUrl.get(url) ?? 0) + 1);
    const result = attempt(row).catch((err: unknown): Outcome => {
      log.error({ err, event_id: row.id }, 'webhook delivery crashed; the row is retried when its lease expires');
      return 'lost';
    });
    // Queued for the next commit before the slot counts as free, so whoever waits for the slot finds the outcome waiting.
    const outcome = result.then((r) => (typeof r === 'string' ? r : record(r)));
    const done = result.then(() => {
      inFlight--;
      const n = perUrl.get(url)! - 1;
      if (n > 0) perUrl.set(url, n);
      else perUrl.delete(url);
      attempts.delete(done);
      // Nothing else in flight to wait for: commit now rather than after flushIntervalMs.
      if (inFlight === 0) flush();
      slotFreed();
    });
    attempts.add(done);
    return { done, outcome };
  }

  // ---- One attempt ----

  function failed(row: OutboxRow, url: string, status: number | null, error: string, reason: string, retryAfterMs?: number): Settled {
    const delay = nextAttemptDelay({ attempt: row.attempts, schedule, ...(deps.jitter !== undefined ? { jitter: deps.jitter } : {}), ...(deps.random ? { random: deps.random } : {}), retryAfterMs });
    if (delay === undefined) {
      return { row, url, outcome: 'dead', status, error: `gave up after ${row.attempts} attempts; last: ${error}`, reason: 'exhausted' };
    }
    return { row, url, outcome: 'retried', status, error, reason, nextAttemptAt: clock.now() + delay };
  }

  async function attempt(row: OutboxRow): Promise<Settled | 'released'> {
    // Target, token and body are the service's, decided now: whoever wrote the row (the service, or
    // `jit approve` in a shell with other settings) wrote only the event's facts.
    const target = resolveTargetUrl(row, config);
    if (target.url === undefined || row.target === 'unresolved') return { row, url: null, outcome: 'dead', status: null, error: target.problem ?? 'no target', reason: 'not_configured' };
    const url = target.url;
    let body: string;
    try {
      body = row.body_format === 'facts' ? renderEventBody(JSON.parse(row.body) as EventFacts, row.target, config.publicUrl) : row.body;
    } catch (err) {
      return { row, url, outcome: 'dead', status: null, error: `the stored event does not render: ${clean((err as Error).message)}`, reason: 'bad_event' };
    }
    let headers: Record<string, string>;
    try {
      headers = {
        'content-type': 'application/json',
        'user-agent': 'jit-broker',
        ...signWebhook(keyRing.current(), { id: row.id, timestamp: Math.floor(clock.now() / 1000), body }),
      };
    } catch (err) {
      log.error({ err, event_id: row.id }, 'could not sign decision webhook');
      return failed(row, url, null, `signing failed: ${clean((err as Error).message)}`, 'signing');
    }
    let token: 'sent' | 'unset' | 'other_origin' = 'unset';
    if (row.target === 'openclaw') {
      if (mayCarryHooksToken(url)) {
        headers.authorization = `Bearer ${hooksToken}`;
        token = 'sent';
      } else if (hooksToken) {
        token = 'other_origin';
      }
      // OpenClaw replays an admitted run for a repeated key instead of starting a second one.
      headers['idempotency-key'] = row.id;
    }

    // One controller per attempt, aborted by a plain timer or by stop(). Not
    // AbortSignal.any/AbortSignal.timeout: on Node 20 a composed signal can be garbage
    // collected before it fires, leaving a hung receiver holding its slot forever.
    const controller = new AbortController();
    let abortedBy: 'timeout' | 'stop' | undefined;
    const abort = (by: 'timeout' | 'stop', reason: Error) => {
      abortedBy ??= by;
      controller.abort(reason);
    };
    const onStop = (reason: Error) => abort('stop', reason);
    const timer = setTimeout(() => abort('timeout', new Error(`no response within ${timeoutMs} ms`)), timeoutMs);
    inFlightAborts.add(onStop);
    if (stopping) onStop(new Error('dispatcher stopping'));
    let res: TransportResponse;
    try {
      res = await untilAborted(transport({ url, method: 'POST', headers, body, signal: controller.signal }), controller.signal);
    } catch (err) {
      if (abortedBy === 'stop') {
        store.release(row.id, row.lease_owner!, clock.now());
        return 'released';
      }
      if (abortedBy === 'timeout') return failed(row, url, null, `no response within ${timeoutMs} ms`, 'timeout');
      const cause = (err as Error & { cause?: Error }).cause;
      return failed(row, url, null, `network error: ${clean(cause?.message ?? (err as Error).message)}`, 'network');
    } finally {
      clearTimeout(timer);
      inFlightAborts.delete(onStop);
    }

    const status = res.status;
    if (status >= 200 && status < 300) return { row, url, outcome: 'delivered', status, reason: 'ok' };
    const error = `HTTP ${status}${res.body ? `: ${clean(res.body)}` : ''}`;
    if (row.target === 'openclaw' && OPENCLAW_CONFIG_ERRORS.has(status)) {
      return { row, url, outcome: 'dead', status, error: `${error} — ${openClawHint(status, token)}`, reason: 'configuration' };
    }
    if (status === 410) return { row, url, outcome: 'dead', status, error: `${error} — the receiver says the endpoint is gone`, reason: 'gone' };
    return failed(row, url, status, error, `http_${status}`, parseRetryAfter(res.headers.get('retry-after'), clock.now()));
  }

  // ---- Running ----

  /** Fills free slots with due rows until stop(); sleeps when there is nothing to claim or no slot free. */
  async function run(): Promise<void> {
    while (running) {
      const free = concurrency - inFlight;
      if (free > 0) {
        try {
          for (const row of claim(clock.now(), free)) launch(row);
        } catch (err) {
          log.error({ err }, 'webhook outbox query failed');
        }
      }
      if (!running) break;
      await sleep(pollIntervalMs);
    }
  }

  return {
    start() {
      if (running) return;
      running = true;
      stopping = false;
      pump = run();
    },
    async stop() {
      running = false;
      stopping = true;
      for (const abort of [...inFlightAborts]) abort(new Error('dispatcher stopping'));
      wakeAll();
      await pump;
      pump = undefined;
      await Promise.all([...attempts]);
      if (coalesce) clearTimeout(coalesce);
      coalesce = undefined;
      flush();
      ownTransport?.close();
    },
    notify: wakeAll,
    async drainOnce() {
      stopping = false;
      const dueBy = clock.now();
      const mine = new Set<Promise<void>>();
      const outcomes: Promise<Outcome>[] = [];
      let claimed = 0;
      while (claimed < batchSize) {
        const free = concurrency - inFlight;
        const rows = free > 0 ? claim(dueBy, Math.min(free, batchSize - claimed)) : [];
        for (const row of rows) {
          const { done, outcome } = launch(row);
          mine.add(done);
          void done.then(() => mine.delete(done));
          outcomes.push(outcome);
        }
        claimed += rows.length;
        if (mine.size > 0) {
          // Slots (or a target's share of them) are taken: claim again once one of ours is free.
          await Promise.race(mine);
        } else if (free <= 0 && attempts.size > 0) {
          // start()'s attempts hold every slot.
          await Promise.race(attempts);
        } else {
          break;
        }
      }
      await Promise.all([...mine]);
      flush();
      const summary: DrainSummary = { delivered: 0, retried: 0, dead: 0 };
      for (const o of await Promise.all(outcomes)) if (o === 'delivered' || o === 'retried' || o === 'dead') summary[o]++;
      return summary;
    },
    pendingCount: () => store.pendingCount(),
  };
}

/** Settles with the promise, or rejects as soon as `signal` aborts (a transport that ignores its signal cannot hang a worker). */
function untilAborted<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason);
    const onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (v) => (signal.removeEventListener('abort', onAbort), resolve(v)),
      (e) => (signal.removeEventListener('abort', onAbort), reject(e)),
    );
  });
}
