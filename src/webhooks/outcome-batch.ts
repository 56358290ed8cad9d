import type { AuditLog } from '../broker/audit.ts';
import type { Storage, Transaction } from '../storage/storage.ts';
import type { Clock } from '../lib/clock.ts';
import type { Logger } from '../lib/logger.ts';
import type { Settled } from './attempt.ts';
import { redactUrl } from './outbox.ts';

/** What became of an attempt once its outcome was committed ('lost': it was not, the row is sent again after its lease). */
export type Outcome = 'delivered' | 'retried' | 'dead' | 'released' | 'lost';

export interface OutcomeBatchDeps {
  storage: Storage;
  audit: Pick<AuditLog, 'append'>;
  clock: Clock;
  log: Logger;
  /** Counts delivery outcomes, once each is committed. */
  onOutcome?: (outcome: 'delivered' | 'retried' | 'dead', target: string) => void;
  /** Outcomes wait at most this long to be committed together. */
  flushIntervalMs: number;
  /** Commit at once when this many outcomes are waiting. */
  flushBatch: number;
}

/** Outcomes taken out of the batch to be committed in someone else's transaction (the claim's). */
export interface TakenOutcomes {
  /** Inside the caller's transaction: writes each outcome (conditional on its lease) and its audit entry. */
  write(tx: Transaction, now: number): Promise<void>;
  /** After the caller's commit: tells each waiter what became of its outcome. */
  committed(): void;
  /** The caller's transaction failed: the outcomes are committed on their own, at once. */
  rolledBack(): void;
}

export interface OutcomeBatch {
  /** Queues an attempt's outcome; settles once it is committed (or known lost). */
  record(settled: Settled): Promise<Outcome>;
  /** Commits every outcome waiting, in one transaction. */
  flush(): Promise<void>;
  /** Takes every outcome waiting, to commit them in another transaction (one commit instead of two). */
  take(): TakenOutcomes;
}

interface Waiting {
  settled: Settled;
  resolve: (o: Outcome) => void;
}

/**
 * Commits attempts' outcomes in batches: each outcome (delivered, retry
 * later, dead) and its audit entry is written conditional on the row's
 * lease owner, together with the others known by then, in one transaction —
 * after `flushIntervalMs`, at once when `flushBatch` are waiting, on
 * flush(), or in the claim's transaction through take(). A batch whose
 * commit fails writes nothing, and every one of its waiters is told 'lost':
 * the rows stay leased and are sent again, with the same webhook-id, when
 * their leases expire (at least once, never lost). Metrics and logs follow
 * the commit, never precede it.
 */
export function createOutcomeBatch(deps: OutcomeBatchDeps): OutcomeBatch {
  const { storage, audit, clock, log } = deps;
  const flushBatch = Math.max(1, deps.flushBatch);
  const waiting: Waiting[] = [];
  let flushTimer: NodeJS.Timeout | undefined;

  function record(settled: Settled): Promise<Outcome> {
    return new Promise((resolve) => {
      waiting.push({ settled, resolve });
      if (waiting.length >= flushBatch) void flush();
      else flushTimer ??= setTimeout(() => void flush(), deps.flushIntervalMs);
    });
  }

  /** Writes one outcome (conditional on the lease) and its audit entry; false when the lease was lost. */
  async function write(tx: Transaction, p: Settled, now: number): Promise<boolean> {
    const { row, outcome } = p;
    const owner = row.lease_owner!;
    const changed =
      outcome === 'delivered'
        ? await tx.outbox.markDelivered(row.id, owner, now, p.status!)
        : outcome === 'retried'
          ? await tx.outbox.markRetry(row.id, owner, now, { status: p.status, error: p.error!, nextAttemptAt: p.nextAttemptAt! })
          : await tx.outbox.markDead(row.id, owner, now, { status: p.status, error: p.error! });
    if (changed) {
      await audit.append(
        tx,
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
  async function writeAll(tx: Transaction, batch: Waiting[], now: number): Promise<boolean[]> {
    const changed: boolean[] = [];
    for (const w of batch) changed.push(await write(tx, w.settled, now));
    return changed;
  }

  /** After the commit. */
  function settle(batch: Waiting[], changed: boolean[]): void {
    batch.forEach((w, i) => w.resolve(report(w.settled, changed[i]!)));
  }

  async function flush(): Promise<void> {
    const batch = takeWaiting();
    if (batch.length === 0) return;
    let changed: boolean[];
    try {
      changed = await storage.transaction((tx) => writeAll(tx, batch, clock.now()));
    } catch (err) {
      // Nothing of the batch was written: the rows stay leased, and are sent again when the leases expire.
      log.error({ err, event_ids: batch.map((w) => w.settled.row.id) }, 'could not record webhook outcomes; those events are sent again, with the same webhook-id, when their leases expire');
      for (const w of batch) w.resolve('lost');
      return;
    }
    settle(batch, changed);
  }

  function take(): TakenOutcomes {
    const batch = takeWaiting();
    let changed: boolean[] = [];
    return {
      write: async (tx, now) => {
        changed = await writeAll(tx, batch, now);
      },
      committed: () => settle(batch, changed),
      rolledBack: () => {
        waiting.unshift(...batch);
        void flush();
      },
    };
  }

  return { record, flush, take };
}
