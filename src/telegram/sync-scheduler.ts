import type { Logger } from '../lib/logger.ts';
import { describeTelegramError } from './errors.ts';
import type { PassResult } from './sync.ts';

/** What the sync scheduler reports for the bot's status. */
export interface SyncHealth {
  /** Epoch ms of the last sync pass that reached Telegram without error. */
  lastSyncOkAt: number | null;
  /** Set while Telegram is failing: log-safe detail of the last failure. */
  lastError: Record<string, unknown> | null;
}

export interface SyncSchedulerOptions {
  /** One sync pass (sync.ts). */
  pass(): Promise<PassResult>;
  log: Logger;
  token: string;
  /** Pass interval when nothing kicks it. */
  intervalMs: number;
  /** Updated after every pass. */
  health: SyncHealth;
}

/**
 * Runs the sync passes: one every `intervalMs`, one at once when kicked (or
 * right after the pass under way, never two at a time), none while Telegram
 * asked to wait (429) or is down (the pass says until when).
 */
export function createSyncScheduler(o: SyncSchedulerOptions) {
  const { log, token, health } = o;
  let started = false;
  let stopped = false;
  let pauseUntil = 0;
  let timer: NodeJS.Timeout | undefined;
  let current: Promise<void> | undefined;
  let queued: Promise<void> | undefined;

  const schedule = () => {
    if (stopped) return;
    if (timer) clearTimeout(timer);
    const now = Date.now();
    const wait = pauseUntil > now ? pauseUntil - now + 5 : o.intervalMs;
    timer = setTimeout(() => void kick(), wait);
    timer.unref();
  };

  async function runPass(): Promise<void> {
    try {
      if (stopped || Date.now() < pauseUntil) return;
      let result: PassResult;
      try {
        result = await o.pass();
      } catch (err) {
        // A database error, most likely; the next pass tries again.
        log.error({ err: describeTelegramError(err, token) }, 'telegram: sync pass failed');
        return;
      }
      if (result.pauseUntil !== undefined) {
        pauseUntil = result.pauseUntil;
        if (!health.lastError) log.warn({ telegram: result.error, retry_in_ms: result.pauseUntil - Date.now() }, 'telegram: Bot API unavailable; approval messages are deferred (requests stay pending)');
        health.lastError = result.error ?? {};
      } else {
        if (health.lastError) log.info('telegram: Bot API reachable again');
        health.lastError = null;
        health.lastSyncOkAt = Date.now();
      }
    } finally {
      schedule();
    }
  }

  /** Runs a pass now (or right after the one under way). Resolves when it is done; never rejects. */
  function kick(): Promise<void> {
    if (stopped || !started) return Promise.resolve();
    if (!current) {
      current = runPass().finally(() => (current = undefined));
      return current;
    }
    queued ??= current.then(() => {
      queued = undefined;
      return kick();
    });
    return queued;
  }

  return {
    kick,
    /** Starts the passes with one at once. */
    start(): void {
      if (started || stopped) return;
      started = true;
      void kick();
    },
    /** No pass starts after this; resolves once the pass under way (and one queued) is done. */
    async stop(): Promise<void> {
      stopped = true;
      if (timer) clearTimeout(timer);
      await current;
      await queued;
    },
  };
}
