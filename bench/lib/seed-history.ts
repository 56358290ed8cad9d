/**
 * Fills a broker database with finished historical requests, as a broker
 * that has run for a long time would have: one request row per past
 * request (spread over the previous 30 days and over all agents, all
 * settled), its ended
 * credential row and its audit entry (hash-chained, so the log stays
 * valid). Written straight into SQLite in large transactions before the
 * broker starts.
 */
import { createAuditLog } from '../../src/broker/audit.ts';
import { openSqliteStorage, sqliteDatabase } from '../../src/storage/sqlite/index.ts';
import { createIdGenerator } from '../../src/lib/ids.ts';
import { BENCH_PATH } from './vault-work.ts';

const STATUSES = ['expired', 'expired', 'expired', 'revoked', 'denied', 'timed_out'] as const;
const BATCH = 50_000;

/** Inserts `rows` historical requests, spread over every agent in the database at `dbPath`; returns the seconds it took. */
export async function seedHistory(dbPath: string, rows: number): Promise<number> {
  const started = performance.now();
  const storage = openSqliteStorage(dbPath);
  const db = sqliteDatabase(storage);
  try {
    db.pragma('synchronous = OFF');
    const agents = db.prepare('SELECT id, name FROM agents ORDER BY name').all() as { id: string; name: string }[];
    if (agents.length === 0) throw new Error(`no agents in ${dbPath}`);
    const audit = createAuditLog(storage);
    const now = Date.now();
    const span = 30 * 24 * 3600 * 1000;
    const start = now - span - 3600_000;
    let t = start;
    const ids = createIdGenerator(() => t);
    const insertRequest = db.prepare(`INSERT INTO requests (id, agent_id, agent_name, resource, tier, required_tier, status, reason, scope,
      ttl_seconds, session_key, rules, idempotency_key, body_hash, created_at, updated_at, approval_expires_at, claim_expires_at,
      decided_by, decided_at, decision_reason, failure)
      VALUES (?, ?, ?, 'vault', 1, ?, ?, 'historical request seeded by the benchmark', ?, 600, 'hook:jit:bench', '["bench-read"]',
      NULL, NULL, ?, ?, NULL, NULL, ?, ?, NULL, NULL)`);
    const insertCredential = db.prepare(`INSERT INTO credentials (id, request_id, type, state, vault_policy, accessor, jti, issued_at,
      expires_at, ended_at, end_reason) VALUES (?, ?, 'vault_token', 'ended', ?, ?, NULL, ?, ?, ?, 'expired')`);
    const scope = JSON.stringify({ vault_paths: [{ path: BENCH_PATH, capabilities: ['read'] }] });

    for (let done = 0; done < rows; ) {
      const n = Math.min(BATCH, rows - done);
      await storage.transaction(async (tx) => {
        for (let i = 0; i < n; i++) {
          t = start + Math.floor(((done + i) / rows) * span);
          const status = STATUSES[(done + i) % STATUSES.length]!;
          const agent = agents[(done + i) % agents.length]!;
          const id = ids.next('req');
          const tier = status === 'denied' || status === 'timed_out' ? 2 : 1;
          const decidedBy = tier === 1 ? 'policy' : status === 'denied' ? 'local-cli' : 'timeout';
          insertRequest.run(id, agent.id, agent.name, tier, status, scope, t, t + 600_000, decidedBy, t);
          if (tier === 1) {
            insertCredential.run(ids.next('cred'), id, `jit-${id}`, `acc${(done + i).toString(36).padStart(20, '0')}`, t, t + 600_000, t + 600_000);
          }
          await audit.append(tx, { event: 'request.created', actor: `agent:${agent.name}`, requestId: id, data: { agent: agent.name, tier, status } }, t);
        }
      });
      done += n;
    }
    db.pragma('wal_checkpoint(TRUNCATE)');
  } finally {
    await storage.close();
  }
  return (performance.now() - started) / 1000;
}

/**
 * Fills agent `agentName`'s rate-limit window with `events` requests spread
 * over the last 50 s, as an agent busy for the last minute would have left
 * it (the broker records one `rate_events` row per request). The limit's
 * check should cost the same with a full window as with an empty one: it
 * once walked the whole window on every request. Returns the seconds it took.
 */
export async function seedRateWindow(dbPath: string, agentName: string, events: number): Promise<number> {
  const started = performance.now();
  const storage = openSqliteStorage(dbPath);
  const db = sqliteDatabase(storage);
  try {
    const agent = db.prepare('SELECT id FROM agents WHERE name = ?').pluck().get(agentName) as string | undefined;
    if (agent === undefined) throw new Error(`no agent "${agentName}" in ${dbPath}`);
    const insert = db.prepare('INSERT INTO rate_events (agent_id, seq, at) VALUES (?, ?, ?)');
    const now = Date.now();
    await storage.transaction(async () => {
      for (let i = 0; i < events; i++) insert.run(agent, i + 1, now - 50_000 + Math.floor((i / events) * 50_000));
    });
  } finally {
    await storage.close();
  }
  return (performance.now() - started) / 1000;
}
