import { setMaxListeners } from 'node:events';
import { createAuditLog } from '../broker/audit.ts';
import type { PolicySet } from '../broker/policy/types.ts';
import type { Config } from '../config/config.ts';
import { StorageBusyError } from '../storage/errors.ts';
import type { Storage } from '../storage/storage.ts';
import type { Clock } from '../lib/clock.ts';
import type { Logger } from '../lib/logger.ts';
import { createAttempt, RELEASED } from './attempt.ts';
import type { KeyRing } from '../keys/key-ring.ts';
import { createLeases } from './leases.ts';
import { createOutcomeBatch, type Outcome } from './outcome-batch.ts';
import type { OutboxRow } from './outbox.ts';
import { createReceiverSlots } from './receiver-slots.ts';
import { DEFAULT_RETRY_SCHEDULE_MS } from './retry.ts';
import { createHttpTransport, type Transport } from './transport.ts';

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
  pendingCount(): Promise<number>;
}

export interface DispatcherDeps {
  storage: Storage;
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

/** Parallel deliveries in all, by default. */
export const DEFAULT_CONCURRENCY = 32;

/**
 * Delivers the webhook outbox: at least once, signed, with retries. This is
 * the loop; it wires the pieces that do the work:
 *
 * - {@link createLeases} (leases.ts) claims due rows: one transaction leases
 *   up to as many as there are free slots, so concurrent dispatchers — even
 *   in two processes — never send one row at the same time, and a row whose
 *   sender crashed becomes due again when its lease runs out. Rows are
 *   claimed only for free slots, never queued in memory, so a row's lease
 *   runs while it is actually being sent.
 * - {@link createReceiverSlots} (receiver-slots.ts) counts attempts in
 *   flight, in all and per URL: no URL gets more than
 *   `perTargetConcurrency` slots, so a backlog for a hung receiver cannot
 *   take them all.
 * - {@link createAttempt} (attempt.ts) sends one row and classifies the answer.
 * - {@link createOutcomeBatch} (outcome-batch.ts) commits outcomes, with
 *   their audit entries, in one transaction together with the others known
 *   by then — in the next claim's transaction, or within `flushIntervalMs`,
 *   or at once when nothing else is in flight, and on stop(). Each write is
 *   conditional on the lease owner. Until it commits the row stays
 *   `delivering` under its lease, so an outcome lost in a crash (or in a
 *   failed commit) means the event is sent again, with the same webhook-id,
 *   once the lease expires: at least once, never lost. Progress lives only
 *   in the table, so a restart resumes where it stopped.
 */
export function createDispatcher(deps: DispatcherDeps): Dispatcher {
  const { storage, clock, log } = deps;
  const audit = createAuditLog(storage);
  const ownTransport = deps.transport ? undefined : createHttpTransport();
  const concurrency = Math.max(1, deps.concurrency ?? DEFAULT_CONCURRENCY);
  const perTarget = Math.min(concurrency, Math.max(1, deps.perTargetConcurrency ?? Math.ceil(concurrency / 2)));
  const timeoutMs = deps.timeoutMs ?? 15_000;
  const pollIntervalMs = deps.pollIntervalMs ?? 1_000;
  const batchSize = deps.batchSize ?? 100;

  const attempt = createAttempt({
    clock,
    log,
    keyRing: deps.keyRing,
    config: deps.config,
    transport: deps.transport ?? ownTransport!,
    timeoutMs,
    schedule: deps.schedule ?? DEFAULT_RETRY_SCHEDULE_MS,
    ...(deps.jitter !== undefined ? { jitter: deps.jitter } : {}),
    ...(deps.random ? { random: deps.random } : {}),
  });
  const outcomes = createOutcomeBatch({
    storage,
    audit,
    clock,
    log,
    ...(deps.onOutcome ? { onOutcome: deps.onOutcome } : {}),
    flushIntervalMs: deps.flushIntervalMs ?? 5,
    flushBatch: deps.flushBatch ?? 100,
  });
  const leases = createLeases({ storage, audit, clock, log, ...(deps.policies ? { policies: deps.policies } : {}), leaseMs: deps.leaseMs ?? timeoutMs + 45_000, outcomes });
  const sleepers = new Set<() => void>();
  const wakeAll = (): void => {
    for (const wake of [...sleepers]) wake();
  };
  const slots = createReceiverSlots({ concurrency, perTarget, wake: wakeAll });

  let running = false;
  /** Aborted by stop(): attempts in flight are cut short and their rows released. */
  const newStopper = (): AbortController => {
    const c = new AbortController();
    // Each attempt in flight listens on it (and stops listening when it ends): at most one per slot.
    setMaxListeners(concurrency, c.signal);
    return c;
  };
  let stopper = newStopper();
  let pump: Promise<void> | undefined;
  /** Each attempt in flight; settles when its slot is free again. */
  const attempts = new Set<Promise<void>>();

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

  function claim(dueBy: number, limit: number): Promise<OutboxRow[]> {
    slots.claiming();
    return leases.claim(dueBy, limit, slots.room);
  }

  /** Starts one attempt in a slot; `done` settles when the slot is free again, `outcome` once the outcome is committed. */
  function launch(row: OutboxRow): { done: Promise<void>; outcome: Promise<Outcome> } {
    const url = row.url ?? '';
    slots.take(url);
    const result = attempt(row, stopper.signal)
      .then((r) => {
        if (r === RELEASED) void leases.release(row).catch((err: unknown) => log.warn({ err, event_id: row.id }, 'could not release a leased webhook event; it is sent again when its lease expires'));
        return r;
      })
      .catch((err: unknown): Outcome => {
        log.error({ err, event_id: row.id }, 'webhook delivery crashed; the row is retried when its lease expires');
        return 'lost';
      });
    // Queued for the next commit before the slot counts as free, so whoever waits for the slot finds the outcome waiting.
    const outcome = result.then((r) => (typeof r === 'string' ? r : outcomes.record(r)));
    const done = result.then(() => {
      slots.give(url);
      attempts.delete(done);
      // Nothing else in flight to wait for: commit now rather than after flushIntervalMs.
      if (slots.inFlight() === 0) void outcomes.flush();
      slots.slotFreed();
    });
    attempts.add(done);
    return { done, outcome };
  }

  /** Fills free slots with due rows until stop(); sleeps when there is nothing to claim or no slot free. */
  async function run(): Promise<void> {
    while (running) {
      const free = slots.free();
      if (free > 0) {
        try {
          for (const row of await claim(clock.now(), free)) launch(row);
        } catch (err) {
          // Busy: another process held the database past the wait; the next poll tries again.
          if (err instanceof StorageBusyError) log.warn({ err }, 'webhook outbox busy; will retry');
          else log.error({ err }, 'webhook outbox query failed');
        }
      }
      if (!running) break;
      await sleep(pollIntervalMs);
    }
  }

  /** Attempts launched from now on run to completion (after a stop()). */
  function resume(): void {
    if (stopper.signal.aborted) stopper = newStopper();
  }

  return {
    start() {
      if (running) return;
      running = true;
      resume();
      pump = run();
    },
    async stop() {
      running = false;
      stopper.abort(new Error('dispatcher stopping'));
      wakeAll();
      await pump;
      pump = undefined;
      await Promise.all([...attempts]);
      slots.close();
      await outcomes.flush();
      ownTransport?.close();
    },
    notify: wakeAll,
    async drainOnce() {
      resume();
      const dueBy = clock.now();
      const mine = new Set<Promise<void>>();
      const pending: Promise<Outcome>[] = [];
      let claimed = 0;
      while (claimed < batchSize) {
        const free = slots.free();
        const rows = free > 0 ? await claim(dueBy, Math.min(free, batchSize - claimed)) : [];
        for (const row of rows) {
          const { done, outcome } = launch(row);
          mine.add(done);
          void done.then(() => mine.delete(done));
          pending.push(outcome);
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
      await outcomes.flush();
      const summary: DrainSummary = { delivered: 0, retried: 0, dead: 0 };
      for (const o of await Promise.all(pending)) if (o === 'delivered' || o === 'retried' || o === 'dead') summary[o]++;
      return summary;
    },
    pendingCount: () => storage.outbox.pendingCount(),
  };
}
