import type { Clock } from '../lib/clock.ts';
import type { Logger } from '../lib/logger.ts';
import type { Storage } from '../storage/storage.ts';

/** The lease of the one broker that polls Telegram and runs the sync passes (docs/telegram.md, "Several brokers"). */
export const TELEGRAM_LEADER_LEASE = 'telegram:leader';

export interface Leadership {
  isLeader(): boolean;
  /** Tries to take (or renew) the lease now, then every third of its TTL. Resolves after the first try. */
  start(): Promise<void>;
  /** Stops renewing and releases the lease if held. Idempotent. */
  stop(): Promise<void>;
}

/**
 * Leadership by a lease row (storage LeasesRepository), not
 * pg_advisory_lock: it works on both engines and needs no database
 * session pinned for as long as the leader lives (docs/architecture.md).
 * Every broker tries to take `telegram:leader` every third of `ttlMs`; the
 * holder renews it. A leader that cannot renew steps down by itself once
 * its last renewal has run out, before any other broker can take the lease,
 * so two brokers never act as leader at the same time while their clocks
 * agree: `isLeader()` reads the monotonic clock, and a watchdog steps down on time
 * even while a renewal hangs (a stalled connection, a row lock), without
 * waiting for it. Another broker takes over within `ttlMs` plus a third of
 * it of the leader's death.
 */
export function createLeadership(o: { storage: Storage; clock: Clock; log: Logger; holder: string; ttlMs: number; onChange(leader: boolean): void }): Leadership {
  const { storage, clock, log, holder, ttlMs } = o;
  let leader = false;
  /**
   * When our last successful renewal runs out, on this process's monotonic
   * clock, counted from when the renewal was sent: what this broker acts on,
   * so a jump of the wall clock (or of a test's manual clock) neither ends
   * nor stretches its leadership. The lease row's expiry, which the other
   * brokers compare with their own clocks, is written from `clock`.
   */
  let heldUntil = 0;
  let timer: NodeJS.Timeout | undefined;
  /** Steps down when the lease ran out, whether or not a renewal is still under way. */
  let watchdog: NodeJS.Timeout | undefined;
  let stopped = false;
  const period = Math.max(100, Math.floor(ttlMs / 3));
  const holds = () => leader && performance.now() < heldUntil;
  let running: Promise<void> = Promise.resolve();

  const set = (now: boolean) => {
    if (now === leader) return;
    leader = now;
    log.info({ holder, lease: TELEGRAM_LEADER_LEASE }, now ? 'telegram: this broker is the leader (polls and posts)' : 'telegram: no longer the leader');
    o.onChange(now);
  };

  const tick = async () => {
    if (stopped) return;
    const now = clock.now();
    const sent = performance.now();
    try {
      const held = await storage.leases.acquire(TELEGRAM_LEADER_LEASE, holder, now, now + ttlMs);
      if (stopped) return;
      if (held) heldUntil = sent + ttlMs;
      // A renewal that answered only after its own lease ran out holds nothing.
      set(held && performance.now() < heldUntil);
    } catch (err) {
      if (stopped) return;
      // The database is unreachable: keep leading only while the last renewal lasts.
      if (leader) log.warn({ err }, 'telegram: could not renew the leader lease');
      if (performance.now() >= heldUntil) set(false);
    }
  };
  const loop = () => {
    running = tick().finally(() => {
      if (!stopped) {
        timer = setTimeout(loop, period);
        timer.unref();
      }
    });
  };

  return {
    isLeader: () => holds() && !stopped,
    async start() {
      if (timer || stopped) return;
      watchdog = setInterval(() => {
        if (leader && !holds()) {
          log.warn({ holder, lease: TELEGRAM_LEADER_LEASE }, 'telegram: the leader lease ran out before a renewal answered; stepping down');
          set(false);
        }
      }, Math.min(period, 1_000));
      watchdog.unref();
      loop();
      await running;
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      if (timer) clearTimeout(timer);
      if (watchdog) clearInterval(watchdog);
      // A renewal that hangs does not hold up shutdown past the lease (which then lapses on its own).
      let bound: NodeJS.Timeout | undefined;
      await Promise.race([running, new Promise<void>((r) => (bound = setTimeout(r, ttlMs)))]);
      clearTimeout(bound);
      if (leader) {
        leader = false;
        await storage.leases.release(TELEGRAM_LEADER_LEASE, holder).catch((err: unknown) => log.warn({ err }, 'telegram: could not release the leader lease; it lapses on its own'));
      }
    },
  };
}
