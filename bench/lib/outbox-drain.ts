/**
 * Outbox drain rate: `events` decision events are recorded through the
 * webhooks module's outbox sink (as the broker's deciding transactions
 * do), then its dispatcher delivers them, signed, to a receiver process on
 * 127.0.0.1. Measured from the dispatcher's start to the last delivery
 * recorded in the database. SQLite in a temporary file, or a PostgreSQL
 * database given by URL.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { PolicySet } from '../../src/broker/policy/types.ts';
import type { RequestRow } from '../../src/broker/rows.ts';
import { openSqliteStorage } from '../../src/storage/sqlite/index.ts';
import { openPostgresStorage } from '../../src/storage/postgres/index.ts';
import { systemClock } from '../../src/lib/clock.ts';
import { createIdGenerator } from '../../src/lib/ids.ts';
import { createLogger } from '../../src/lib/logger.ts';
import { createKeyRing } from '../../src/keys/key-ring.ts';
import { createDispatcher, createOutboxSink, DEFAULT_CONCURRENCY } from '../../src/webhooks/index.ts';

export interface DrainResult {
  events: number;
  delivered: number;
  seconds: number;
  eventsPerSecond: number;
  /** Time to record the events (one transaction each, like decisions). */
  recordSeconds: number;
  /** CPU time of this process (the dispatcher: claims, signing, sending, recording) per delivered event, during the drain. */
  cpuMsPerEvent: number;
  concurrency: number;
}

/** Records `events` events for a standard webhook at `receiverUrl` and times their delivery. */
export async function benchOutboxDrain(o: { events: number; receiverUrl: string; concurrency?: number; timeoutMs?: number; databaseUrl?: string }): Promise<DrainResult> {
  const dir = mkdtempSync(join(tmpdir(), 'jit-bench-outbox-'));
  const dbPath = join(dir, 'jit.db');
  // With `databaseUrl`: an empty PostgreSQL database (the signing key file still goes to the temporary directory).
  const storage = o.databaseUrl ? await openPostgresStorage(o.databaseUrl) : openSqliteStorage(dbPath);
  const log = createLogger('silent');
  try {
    const ids = createIdGenerator();
    const policy: PolicySet = {
      agents: new Map([['bench', { name: 'bench', sessions: ['hook:jit:bench*'], webhook: { kind: 'standard', url: `${o.receiverUrl}/events` } }]]),
      rules: [],
      deny: [],
      files: [],
    };
    const config = { publicUrl: 'http://127.0.0.1:8787', openclaw: undefined };
    const sink = createOutboxSink({ storage, policies: { current: () => policy }, ids, log });

    const recordStart = performance.now();
    for (let i = 0; i < o.events; i++) {
      const now = Date.now();
      const row: RequestRow = {
        idempotency_key: null,
        body_hash: null,
        approval_expires_at: null,
        claim_expires_at: null,
        decision_reason: 'no',
        failure: null,
        id: ids.next('req'),
        agent_id: 'agt_bench',
        agent_name: 'bench',
        resource: 'vault',
        tier: 2,
        required_tier: 2,
        status: 'denied',
        reason: 'benchmark event',
        scope: JSON.stringify({ vault_paths: [{ path: 'bench/data/app', capabilities: ['read', 'update'] }] }),
        ttl_seconds: 600,
        session_key: 'hook:jit:bench',
        rules: '["bench-write"]',
        created_at: now,
        updated_at: now,
        decided_by: 'local-cli',
        decided_at: now,
      };
      await storage.transaction(async (tx) => {
        await tx.requests.insert(row);
        await sink.record(tx, row, 'denied', now);
      });
    }
    const recordSeconds = (performance.now() - recordStart) / 1000;

    const store = storage.outbox;
    const keyRing = createKeyRing({ config: { dbPath, signingKey: undefined }, log });
    // The dispatcher as the broker runs it (its defaults), but polling more often so the start is not a poll interval late.
    const concurrency = o.concurrency ?? DEFAULT_CONCURRENCY;
    const dispatcher = createDispatcher({ storage, clock: systemClock, log, keyRing, config, concurrency, pollIntervalMs: 20 });
    const deadline = Date.now() + (o.timeoutMs ?? 60_000);
    const started = performance.now();
    const cpu = process.cpuUsage();
    dispatcher.start();
    try {
      while ((await store.pendingCount()) > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
    } finally {
      await dispatcher.stop();
    }
    const seconds = (performance.now() - started) / 1000;
    const used = process.cpuUsage(cpu);
    const delivered = (await store.countByState()).delivered;
    const cpuMsPerEvent = (used.user + used.system) / 1000 / Math.max(1, delivered);
    return { events: o.events, delivered, seconds, eventsPerSecond: delivered / seconds, recordSeconds, cpuMsPerEvent, concurrency };
  } finally {
    await storage.close();
    rmSync(dir, { recursive: true, force: true });
  }
}
