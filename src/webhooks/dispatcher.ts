import { createAuditLog } from '../broker/audit.ts';
import type { Config } from '../config/config.ts';
import type { Db } from '../db/open.ts';
import type { Clock } from '../lib/clock.ts';
import { scrubSecrets, type Logger } from '../lib/logger.ts';
import { randomToken } from '../lib/secrets.ts';
import type { KeyRing } from './keys.ts';
import { createOutboxStore, redactUrl, type OutboxRow } from './outbox.ts';
import { DEFAULT_RETRY_SCHEDULE_MS, nextAttemptDelay, parseRetryAfter } from './retry.ts';
import { signWebhook } from './sign.ts';

export interface TransportRequest {
  url: string;
  method: 'POST';
  headers: Record<string, string>;
  body: string;
  /** Aborted on the per-attempt timeout and when the dispatcher stops. */
  signal: AbortSignal;
}

export interface TransportResponse {
  status: number;
  headers: { get(name: string): string | null };
  /** The start of the response body (for the error reason); may be empty. */
  body: string;
}

export type Transport = (req: TransportRequest) => Promise<TransportResponse>;

const MAX_RESPONSE_BYTES = 2048;

/**
 * Default transport: global fetch. Redirects are not followed (a 3xx is a
 * failed attempt, as Standard Webhooks says): following one would let the
 * receiver send the broker, with its bearer token, somewhere else.
 */
export const fetchTransport: Transport = async (req) => {
  const res = await fetch(req.url, { method: req.method, headers: req.headers, body: req.body, signal: req.signal, redirect: 'manual' });
  let body = '';
  if (res.body) {
    const reader = res.body.getReader();
    const chunks: Uint8Array[] = [];
    let size = 0;
    try {
      while (size < MAX_RESPONSE_BYTES) {
        const { done, value } = await reader.read();
        if (done) break;
        chunks.push(value);
        size += value.length;
      }
    } finally {
      reader.cancel().catch(() => {});
    }
    body = Buffer.concat(chunks).subarray(0, MAX_RESPONSE_BYTES).toString('utf8');
  }
  return { status: res.status, headers: res.headers, body };
};

/**
 * Statuses from OpenClaw that retrying cannot fix (SPEC §8): a bad payload
 * or session policy (400), a bad token (401/403), no hooks endpoint at that
 * URL (404/405), gone (410), or too large (413). Dead at once, loudly.
 */
export const OPENCLAW_CONFIG_ERRORS: ReadonlySet<number> = new Set([400, 401, 403, 404, 405, 410, 413]);

function openClawHint(status: number, hasToken: boolean): string {
  switch (status) {
    case 400:
      return 'OpenClaw rejected the payload: set hooks.allowRequestSessionKey to true, make hooks.allowedSessionKeyPrefixes cover the session key, and check agent_id names an existing agent';
    case 401:
    case 403:
      return hasToken ? 'OpenClaw rejected the token: OPENCLAW_HOOKS_TOKEN must equal hooks.token' : 'OPENCLAW_HOOKS_TOKEN is not set; set it to hooks.token';
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
  /** Starts `concurrency` workers that deliver due rows until stop(). */
  start(): void;
  /** Stops the workers; an attempt in flight is aborted and its row is due again at once. */
  stop(): Promise<void>;
  /** Wakes idle workers now (call after committing a new outbox row). */
  notify(): void;
  /** Delivers every row due now (up to `batchSize`), `concurrency` at a time, and reports the outcomes. */
  drainOnce(): Promise<DrainSummary>;
  /** Rows not yet settled: pending or being delivered. */
  pendingCount(): number;
}

export interface DispatcherDeps {
  db: Db;
  clock: Clock;
  log: Logger;
  keyRing: Pick<KeyRing, 'current'>;
  config: Pick<Config, 'openclaw'>;
  transport?: Transport;
  /** Counts delivery outcomes (the broker's Prometheus metrics). */
  onOutcome?: (outcome: 'delivered' | 'retried' | 'dead', target: string) => void;
  /** Parallel deliveries (default 8): one slow receiver holds one slot only. */
  concurrency?: number;
  /** Per-attempt timeout (default 15 s). */
  timeoutMs?: number;
  /** How long a claimed row stays leased (default timeout + 45 s); a crash mid-send is retried after it. */
  leaseMs?: number;
  /** Idle workers look for due rows this often (default 1 s), which also picks up rows other processes wrote. */
  pollIntervalMs?: number;
  /** drainOnce cap (default 100). */
  batchSize?: number;
  schedule?: readonly number[];
  jitter?: number;
  random?: () => number;
}

type Outcome = 'delivered' | 'retried' | 'dead' | 'released' | 'lost';

/**
 * Delivers the webhook outbox: at least once, signed, with retries.
 *
 * Each row is claimed with one conditional UPDATE that leases it to this
 * worker (state `delivering`, lease expiry), so concurrent dispatchers —
 * even in two processes — never send one row at the same time, and a row
 * whose sender crashed becomes due again when its lease runs out. Progress
 * lives only in the table, so a restart resumes where it stopped.
 */
export function createDispatcher(deps: DispatcherDeps): Dispatcher {
  const { db, clock, log, keyRing, config } = deps;
  const store = createOutboxStore(db);
  const audit = createAuditLog(db);
  const transport = deps.transport ?? fetchTransport;
  const concurrency = Math.max(1, deps.concurrency ?? 8);
  const timeoutMs = deps.timeoutMs ?? 15_000;
  const leaseMs = deps.leaseMs ?? timeoutMs + 45_000;
  const pollIntervalMs = deps.pollIntervalMs ?? 1_000;
  const batchSize = deps.batchSize ?? 100;
  const schedule = deps.schedule ?? DEFAULT_RETRY_SCHEDULE_MS;
  const instance = randomToken(6);
  const hooksToken = config.openclaw?.hooksToken;

  if (config.openclaw && !hooksToken) {
    log.warn('OPENCLAW_HOOKS_URL is set but OPENCLAW_HOOKS_TOKEN is not; OpenClaw will answer 401 and events will be dead-lettered');
  }

  let running = false;
  let shutdown = new AbortController();
  let workers: Promise<void>[] = [];
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

  function claim(dueBy: number): OutboxRow | undefined {
    const now = clock.now();
    return store.claimNext({ now, dueBy, owner: `${instance}:${randomToken(6)}`, leaseUntil: now + leaseMs });
  }

  function finish(row: OutboxRow, outcome: 'delivered' | 'retried' | 'dead', p: { status: number | null; error?: string; reason: string; nextAttemptAt?: number }): Outcome {
    const now = clock.now();
    const owner = row.lease_owner!;
    const ok = db.transaction(() => {
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
    }).immediate();
    const fields = { event_id: row.id, request_id: row.request_id, type: row.type, target: row.target, url: redactUrl(row.url), attempt: row.attempts, status: p.status };
    if (ok) deps.onOutcome?.(outcome, row.target);
    if (!ok) {
      log.warn(fields, 'webhook outcome not recorded: the lease expired and another dispatcher took the event over');
      return 'lost';
    }
    if (outcome === 'delivered') log.info(fields, 'decision webhook delivered');
    else if (outcome === 'retried') log.warn({ ...fields, error: p.error, next_attempt_at: new Date(p.nextAttemptAt!).toISOString() }, 'decision webhook failed; will retry');
    else log.error({ ...fields, error: p.error }, `decision webhook DEAD (${p.reason}): ${p.error} — fix the cause, then run "jit webhooks retry ${row.id}"`);
    return outcome;
  }

  function failed(row: OutboxRow, status: number | null, error: string, reason: string, retryAfterMs?: number): Outcome {
    const delay = nextAttemptDelay({ attempt: row.attempts, schedule, ...(deps.jitter !== undefined ? { jitter: deps.jitter } : {}), ...(deps.random ? { random: deps.random } : {}), retryAfterMs });
    if (delay === undefined) {
      return finish(row, 'dead', { status, error: `gave up after ${row.attempts} attempts; last: ${error}`, reason: 'exhausted' });
    }
    return finish(row, 'retried', { status, error, reason, nextAttemptAt: clock.now() + delay });
  }

  async function deliver(row: OutboxRow): Promise<Outcome> {
    if (!row.url) return finish(row, 'dead', { status: null, error: 'no URL configured for this event', reason: 'not_configured' });
    let headers: Record<string, string>;
    try {
      headers = {
        'content-type': 'application/json',
        'user-agent': 'jit-broker',
        ...signWebhook(keyRing.current(), { id: row.id, timestamp: Math.floor(clock.now() / 1000), body: row.body }),
      };
    } catch (err) {
      log.error({ err, event_id: row.id }, 'could not sign decision webhook');
      return failed(row, null, `signing failed: ${clean((err as Error).message)}`, 'signing');
    }
    if (row.target === 'openclaw') {
      if (hooksToken) headers.authorization = `Bearer ${hooksToken}`;
      // OpenClaw replays an admitted run for a repeated key instead of starting a second one.
      headers['idempotency-key'] = row.id;
    }

    // One controller per attempt, fed by a plain timer and the shutdown signal. Not
    // AbortSignal.any/AbortSignal.timeout: on Node 20 a composed signal can be garbage
    // collected before it fires, leaving a hung receiver holding its worker forever.
    const attempt = new AbortController();
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      attempt.abort(new Error(`no response within ${timeoutMs} ms`));
    }, timeoutMs);
    const stopSignal = shutdown.signal;
    const onStop = () => attempt.abort(stopSignal.reason);
    if (stopSignal.aborted) onStop();
    else stopSignal.addEventListener('abort', onStop, { once: true });
    let res: TransportResponse;
    try {
      res = await untilAborted(transport({ url: row.url, method: 'POST', headers, body: row.body, signal: attempt.signal }), attempt.signal);
    } catch (err) {
      if (stopSignal.aborted) {
        store.release(row.id, row.lease_owner!, clock.now());
        return 'released';
      }
      if (timedOut) return failed(row, null, `no response within ${timeoutMs} ms`, 'timeout');
      const cause = (err as Error & { cause?: Error }).cause;
      return failed(row, null, `network error: ${clean(cause?.message ?? (err as Error).message)}`, 'network');
    } finally {
      clearTimeout(timer);
      stopSignal.removeEventListener('abort', onStop);
    }

    const status = res.status;
    if (status >= 200 && status < 300) return finish(row, 'delivered', { status, reason: 'ok' });
    const error = `HTTP ${status}${res.body ? `: ${clean(res.body)}` : ''}`;
    if (row.target === 'openclaw' && OPENCLAW_CONFIG_ERRORS.has(status)) {
      return finish(row, 'dead', { status, error: `${error} — ${openClawHint(status, !!hooksToken)}`, reason: 'configuration' });
    }
    if (status === 410) return finish(row, 'dead', { status, error: `${error} — the receiver says the endpoint is gone`, reason: 'gone' });
    return failed(row, status, error, `http_${status}`, parseRetryAfter(res.headers.get('retry-after'), clock.now()));
  }

  async function runWorker(): Promise<void> {
    while (running) {
      let row: OutboxRow | undefined;
      try {
        row = claim(clock.now());
      } catch (err) {
        log.error({ err }, 'webhook outbox query failed');
      }
      if (!row) {
        await sleep(pollIntervalMs);
        continue;
      }
      try {
        await deliver(row);
      } catch (err) {
        log.error({ err, event_id: row.id }, 'webhook delivery crashed; the row is retried when its lease expires');
      }
    }
  }

  return {
    start() {
      if (running) return;
      running = true;
      if (shutdown.signal.aborted) shutdown = new AbortController();
      workers = Array.from({ length: concurrency }, () => runWorker());
    },
    async stop() {
      if (!running) return;
      running = false;
      shutdown.abort(new Error('dispatcher stopping'));
      for (const wake of [...sleepers]) wake();
      await Promise.all(workers);
      workers = [];
    },
    notify() {
      for (const wake of [...sleepers]) wake();
    },
    async drainOnce() {
      if (shutdown.signal.aborted) shutdown = new AbortController();
      const dueBy = clock.now();
      const summary: DrainSummary = { delivered: 0, retried: 0, dead: 0 };
      let claimed = 0;
      const worker = async () => {
        while (claimed < batchSize) {
          const row = claim(dueBy);
          if (!row) return;
          claimed++;
          const outcome = await deliver(row);
          if (outcome === 'delivered' || outcome === 'retried' || outcome === 'dead') summary[outcome]++;
        }
      };
      await Promise.all(Array.from({ length: concurrency }, worker));
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
