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
 * agree. Another broker takes over within `ttlMs` plus a third of it of
 * the leader's death.
 */
export function createLeadership(o: { storage: Storage; clock: Clock; log: Logger; holder: string; ttlMs: number; onChange(leader: boolean): void }): Leadership {
  const { storage, clock, log, holder, ttlMs } = o;
  let leader = false;
  /** Expiry of our last successful renewal. */
  let heldUntil = 0;
  let timer: NodeJS.Timeout | undefined;
  let stopped = false;
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
    try {
      const held = await storage.leases.acquire(TELEGRAM_LEADER_LEASE, holder, now, now + ttlMs);
      if (stopped) return;
      if (held) heldUntil = now + ttlMs;
      set(held);
    } catch (err) {
      if (stopped) return;
      // The database is unreachable: keep leading only while the last renewal lasts.
      if (leader) log.warn({ err }, 'telegram: could not renew the leader lease');
      if (clock.now() >= heldUntil) set(false);
    }
  };
  const loop = () => {
    running = tick().finally(() => {
      if (!stopped) {
        timer = setTimeout(loop, Math.max(100, Math.floor(ttlMs / 3)));
        timer.unref();
      }
    });
  };

  return {
    isLeader: () => leader && !stopped,
    async start() {
      if (timer || stopped) return;
      loop();
      await running;
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      if (timer) clearTimeout(timer);
      await running;
      if (leader) {
        leader = false;
        await storage.leases.release(TELEGRAM_LEADER_LEASE, holder).catch((err: unknown) => log.warn({ err }, 'telegram: could not release the leader lease; it lapses on its own'));
      }
    },
  };
}
