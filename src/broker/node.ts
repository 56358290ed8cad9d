import { randomBytes } from 'node:crypto';
import type { Clock } from '../lib/clock.ts';
import type { Logger } from '../lib/logger.ts';
import type { Storage, Transaction } from '../storage/storage.ts';

/*
 * Node identity (docs/architecture.md, "Several brokers on one database").
 * Each serving broker process is a node with a random id, made at start and
 * logged, and holds the lease `node:<id>` in the database, renewed on a
 * timer. A credential row being minted records its node; another node
 * settles that mint as interrupted only once the lease has expired or is
 * gone (lifecycle.ts), i.e. when the node is provably dead.
 */

/** The default lease of a node and of the Telegram leader (JIT_NODE_LEASE), in seconds. */
export const DEFAULT_NODE_LEASE_SECONDS = 15;

export const newNodeId = (): string => `node_${randomBytes(8).toString('hex')}`;

export const nodeLeaseName = (nodeId: string): string => `node:${nodeId}`;

/** A lease renewed every third of its TTL: two renewals may fail (a database blip, a stalled event loop) before it lapses. */
export const renewIntervalMs = (ttlMs: number): number => Math.max(100, Math.floor(ttlMs / 3));

/** Whether node `nodeId`'s lease is held and not expired at `now` (read in the caller's transaction). */
export async function nodeAlive(tx: Pick<Transaction, 'leases'>, nodeId: string, now: number): Promise<boolean> {
  const lease = await tx.leases.get(nodeLeaseName(nodeId));
  return lease !== undefined && lease.holder === nodeId && lease.expires_at > now;
}

export interface NodeLease {
  readonly id: string;
  /** Stops renewing and releases the lease (after everything that mints has stopped). Idempotent. */
  stop(): Promise<void>;
}

/**
 * Takes this node's lease (throws if the database refuses: the broker does
 * not serve without it), then renews it every third of `ttlMs` until
 * stopped. A renewal that fails is logged and retried at the next tick; a
 * node whose lease lapsed meanwhile takes it back at the next renewal (its
 * mints the others settled in between are safe: see STALE_MINT_MS in
 * credential-issue.ts, a mint that finishes late revokes its token).
 */
export async function startNodeLease(o: { storage: Storage; clock: Clock; log: Logger; id: string; ttlMs: number }): Promise<NodeLease> {
  const { storage, clock, log, id, ttlMs } = o;
  const name = nodeLeaseName(id);
  const renew = () => {
    const now = clock.now();
    return storage.leases.acquire(name, id, now, now + ttlMs);
  };
  if (!(await renew())) throw new Error(`node lease ${name} is held by another process`);
  let failing = false;
  let stopped = false;
  let running: Promise<unknown> = Promise.resolve();
  let inFlight = false;
  const timer = setInterval(() => {
    // One renewal at a time: a renewal that hangs (a stalled connection) is not joined by another every tick.
    if (inFlight) return;
    inFlight = true;
    running = renew().then(
      (held) => {
        if (!held) log.error({ node_id: id }, 'node lease: held by another process (two brokers with one node id?)');
        else if (failing) log.info({ node_id: id }, 'node lease: renewed again');
        failing = !held;
      },
      (err: unknown) => {
        if (!failing) log.warn({ err, node_id: id, ttl_ms: ttlMs }, 'node lease: could not renew; other brokers will settle this node\'s mints if it lapses');
        failing = true;
      },
    ).finally(() => {
      inFlight = false;
    });
  }, renewIntervalMs(ttlMs));
  timer.unref();
  return {
    id,
    async stop() {
      if (stopped) return;
      stopped = true;
      clearInterval(timer);
      await running;
      await storage.leases.release(name, id).catch((err: unknown) => log.warn({ err, node_id: id }, 'node lease: could not release it; it lapses on its own'));
    },
  };
}
