import type { Storage } from '../storage/storage.ts';
import type { Clock } from '../lib/clock.ts';
import type { Logger } from '../lib/logger.ts';
import type { KeyRing } from '../keys/key-ring.ts';
import { signAuditHead, type AuditLog } from './audit.ts';
import { RATE_WINDOW_MS } from './request-credential.ts';

/** How often the chain head is signed while it moves (and at every shutdown). */
export const AUDIT_HEAD_INTERVAL_MS = 60_000;
/** How often closed coalescing windows are written out and the rate limit's old events pruned. */
export const AUDIT_WINDOW_CHECK_MS = 10_000;
/**
 * How long the rate limit's events are kept: five windows, not one. Every
 * broker on a database prunes by its own clock, and the limit's check reads
 * one event (the agent's n-th newest): an event pruned early by a broker
 * whose clock runs ahead would let the agent past its limit. Brokers whose
 * clocks disagree by less than four minutes cannot do that.
 */
export const RATE_EVENTS_KEPT_MS = 5 * RATE_WINDOW_MS;
/** Rate-limit events deleted per write when pruning (about 1 ms of write lock on SQLite). */
export const RATE_PRUNE_BATCH = 1_000;

/**
 * The audit log's timers in one process: writes the suppressed-count
 * entries of this process's coalescing windows that closed; and in the
 * `primary` process of each broker (not its HTTP workers), prunes the rate
 * limit's events older than {@link RATE_EVENTS_KEPT_MS} and signs the chain head every
 * {@link AUDIT_HEAD_INTERVAL_MS} when it moved or the signing key changed.
 * `stop()` closes every open window and (primary) signs the head one last
 * time: call it after everything else that writes audit entries has
 * stopped and before the database is closed.
 */
export function startAuditUpkeep(deps: { storage: Storage; audit: AuditLog; clock: Clock; log: Logger; keys: KeyRing }, opts: { primary: boolean }): { stop(): Promise<void> } {
  const { storage, audit, clock, log } = deps;
  const closeWindows = async (all: boolean) => {
    try {
      await audit.closeWindows(clock.now(), { all });
    } catch (err) {
      log.warn({ err }, 'could not write the audit log’s suppressed counts; will retry');
    }
    if (!opts.primary) return;
    try {
      const expired = clock.now() - RATE_EVENTS_KEPT_MS;
      // In batches, each its own short write: one DELETE of 10 s of a busy broker's events (15,000 at 1,500
      // issues/s) held the write lock, and on SQLite the event loop, for 17 ms.
      while ((await storage.rateLimits.prune(expired, RATE_PRUNE_BATCH)) === RATE_PRUNE_BATCH);
    } catch (err) {
      log.warn({ err }, 'could not prune the rate limit’s old events; will retry');
    }
  };
  const signHead = async () => {
    if (!opts.primary) return;
    try {
      const head = await signAuditHead(storage, deps.keys.current(), clock.now());
      // The log line is a copy of the head outside the database (shipped logs survive a rewritten file).
      if (head) log.info({ audit_head: head }, 'audit chain head signed');
    } catch (err) {
      log.warn({ err }, 'could not sign the audit chain head; will retry');
    }
  };
  const windowTask = oneAtATime(() => closeWindows(false));
  const headTask = oneAtATime(signHead);
  const windowTimer = setInterval(windowTask.tick, AUDIT_WINDOW_CHECK_MS);
  const headTimer = setInterval(headTask.tick, AUDIT_HEAD_INTERVAL_MS);
  windowTimer.unref();
  headTimer.unref();
  return {
    async stop() {
      clearInterval(windowTimer);
      clearInterval(headTimer);
      await windowTask.idle();
      await headTask.idle();
      await closeWindows(true);
      await signHead();
    },
  };
}

/**
 * A timer's task that never overlaps itself: a tick while the previous run
 * is still going (a slow database) is skipped. `idle()` waits for the run
 * in progress, if any.
 */
export function oneAtATime(task: () => Promise<void>): { tick(): void; idle(): Promise<void> } {
  let running: Promise<void> | undefined;
  return {
    tick() {
      if (running) return;
      running = task().finally(() => (running = undefined));
    },
    idle: () => running ?? Promise.resolve(),
  };
}
