import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { DecisionEventType } from '../../../src/broker/events.ts';
import type { WebhookTarget } from '../../../src/broker/policy/types.ts';
import type { RequestRow } from '../../../src/broker/rows.ts';
import { loadConfig, type Config } from '../../../src/config/config.ts';
import { openSqliteStorage, sqliteDatabase, type Db } from '../../../src/storage/sqlite/index.ts';
import type { Storage } from '../../../src/storage/storage.ts';
import { ManualClock } from '../../../src/lib/clock.ts';
import { createIdGenerator } from '../../../src/lib/ids.ts';
import { createDispatcher, type DispatcherDeps } from '../../../src/webhooks/dispatcher.ts';
import { createKeyRing, type KeyRing } from '../../../src/keys/key-ring.ts';
import { createOutboxSink, type OutboxRow } from '../../../src/webhooks/outbox.ts';
import { startWebhookReceiver, type WebhookReceiver } from '../../fakes/webhook-receiver.ts';
import { until as untilEvent } from '../../helpers/chaos-process.ts';
import { HOOKS_TOKEN, captureLogger, insertRequest, policiesWith } from '../../unit/webhooks/helpers.ts';

export { HOOKS_TOKEN };

export interface World {
  dir: string;
  dbPath: string;
  storage: Storage;
  /** The storage's SQLite connection, for inspecting tables. */
  db: Db;
  clock: ManualClock;
  keyRing: KeyRing;
  /** OpenClaw-shaped: checks the bearer token. */
  openclaw: WebhookReceiver;
  /** A generic Standard Webhooks receiver (agent `ci`). */
  standard: WebhookReceiver;
  /** Another generic receiver (agent `slow`), for timeouts. */
  slow: WebhookReceiver;
  env: Record<string, string>;
  config: Config;
  logs: ReturnType<typeof captureLogger>;
  record(agent: string, type?: DecisionEventType, over?: Partial<RequestRow>): Promise<OutboxRow>;
  row(id: string): Promise<OutboxRow>;
  dispatcher(over?: Partial<DispatcherDeps>): ReturnType<typeof createDispatcher>;
  audit(event?: string): { event: string; request_id: string; data: Record<string, unknown> }[];
  extraReceiver(): Promise<WebhookReceiver>;
  close(): Promise<void>;
}

/** A temp database file, a key ring beside it, two real receivers on loopback, and a manual clock. */
export async function makeWorld(
  envOver: Record<string, string | undefined> = {},
  /** More agents and their webhook targets, beside moltbot, ci and slow; may name the receivers. */
  moreAgents: (rx: { openclaw: WebhookReceiver; standard: WebhookReceiver; slow: WebhookReceiver }) => Record<string, WebhookTarget> = () => ({}),
): Promise<World> {
  const dir = mkdtempSync(join(tmpdir(), 'jit-webhooks-'));
  const dbPath = join(dir, 'jit.db');
  const clock = new ManualClock(Date.UTC(2026, 0, 1, 12));
  const logs = captureLogger();
  const keyRing = createKeyRing({ config: { dbPath }, clock, log: logs.log });
  const now = () => clock.now();
  const openclaw = await startWebhookReceiver({ jwks: () => keyRing.jwks(), now, bearer: HOOKS_TOKEN });
  const standard = await startWebhookReceiver({ jwks: () => keyRing.jwks(), now });
  const extra: WebhookReceiver[] = [];
  const slow = await startWebhookReceiver({ jwks: () => keyRing.jwks(), now });
  extra.push(slow);
  const env = Object.fromEntries(
    Object.entries({
      JIT_DB: dbPath,
      JIT_PUBLIC_URL: 'https://jit.example.net',
      OPENCLAW_HOOKS_URL: `${openclaw.url}/hooks`,
      OPENCLAW_HOOKS_TOKEN: HOOKS_TOKEN,
      ...envOver,
    }).filter((e): e is [string, string] => e[1] !== undefined),
  );
  const config = loadConfig(env);
  const storage = openSqliteStorage(dbPath);
  const db = sqliteDatabase(storage);
  const policies = policiesWith({
    moltbot: { kind: 'openclaw' },
    ci: { kind: 'standard', url: `${standard.url}/events` },
    slow: { kind: 'standard', url: `${slow.url}/events` },
    ...moreAgents({ openclaw, standard, slow }),
  });
  const sink = createOutboxSink({ storage, policies, ids: createIdGenerator(now), log: logs.log });
  const dispatchers: ReturnType<typeof createDispatcher>[] = [];

  const world: World = {
    dir,
    dbPath,
    storage,
    db,
    clock,
    keyRing,
    openclaw,
    standard,
    slow,
    env,
    config,
    logs,
    async record(agent, type = 'approved', over = {}) {
      const r = await insertRequest(storage, { agent_name: agent, session_key: `hook:jit:${agent}`, created_at: clock.now(), ...over });
      await storage.transaction((tx) => sink.record(tx, r, type, clock.now()));
      return (await storage.outbox.list({ limit: 10_000 })).find((x) => x.request_id === r.id)!;
    },
    row: async (id) => (await storage.outbox.get(id))!,
    dispatcher(over = {}) {
      const d = createDispatcher({ storage, clock, log: logs.log, keyRing, config, random: () => 0.5, ...over });
      dispatchers.push(d);
      return d;
    },
    audit(event) {
      const rows = db.prepare(`SELECT event, request_id, data FROM audit_log ${event ? 'WHERE event = ?' : ''} ORDER BY seq`).all(...(event ? [event] : [])) as {
        event: string;
        request_id: string;
        data: string;
      }[];
      return rows.map((r) => ({ ...r, data: JSON.parse(r.data) as Record<string, unknown> }));
    },
    async extraReceiver() {
      const rx = await startWebhookReceiver({ jwks: () => keyRing.jwks(), now });
      extra.push(rx);
      return rx;
    },
    async close() {
      await Promise.all(dispatchers.map((d) => d.stop()));
      await Promise.all([openclaw.close(), standard.close(), ...extra.map((r) => r.close())]);
      if (db.open) await storage.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
  return world;
}

/** Raw bytes of the database and its WAL, for secret greps. */
export function databaseBytes(dbPath: string): string {
  return [dbPath, `${dbPath}-wal`]
    .map((f) => {
      try {
        return readFileSync(f).toString('latin1');
      } catch {
        return '';
      }
    })
    .join('');
}

/**
 * Polls every 10 ms until `check` holds, with no deadline of its own (the
 * test's timeout is the bound, so a slow machine is waited for); the
 * timeout argument callers pass is ignored, as in test/helpers.
 */
export async function until(check: () => boolean | Promise<boolean>, _timeoutMs?: number): Promise<void> {
  await untilEvent(async () => (await check()) || undefined, undefined, 'the condition', 10);
}
