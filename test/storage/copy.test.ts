import Database from 'better-sqlite3';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createAuditLog, verifyAuditChain } from '../../src/broker/audit.ts';
import { COPY_PLAN, CopyRefused, copySqliteToPostgres, postgresTables, sqliteTables, unknownTables } from '../../src/storage/copy.ts';
import { openPostgresStorage, postgresPool } from '../../src/storage/postgres/index.ts';
import { openDatabase } from '../../src/storage/sqlite/open.ts';
import { openSqliteStorage } from '../../src/storage/sqlite/index.ts';
import type { Storage } from '../../src/storage/storage.ts';
import { freePort } from '../helpers/net.ts';
import { postgresSchemas } from '../helpers/postgres.ts';
import { T0, request } from './conformance.ts';

/*
 * The copy engine (src/storage/copy.ts) against real SQLite files and the
 * run's real PostgreSQL: what it copies, what it refuses, and the guard that
 * makes a table added by a later migration fail here until COPY_PLAN names it.
 * Each test gets an empty schema of one database (CREATE DATABASE is slow).
 */
const freshSchema = postgresSchemas('jitcopy', 'c');

let dir: string;
let files = 0;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'jit-copy-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** An SQLite database with a little of everything, written through the storage interface and the broker's audit log. */
async function seededSource(): Promise<{ path: string; installationId: string }> {
  const path = join(dir, `src-${++files}.db`);
  const s = await openSqliteStorage(path);
  try {
    await s.agents.insert({ id: 'agt_1', name: 'moltbot', token_id: 'tid1', token_hash: 'h'.repeat(64), session_key: null, created_at: T0 });
    const audit = createAuditLog(s);
    for (let i = 0; i < 7; i++) {
      await s.transaction(async (tx) => {
        await tx.requests.insert(request(`req_${i}`, { created_at: T0 + i, updated_at: T0 + i, tier: 3, required_tier: 3 }));
        await audit.append(tx, { event: 'request.created', actor: 'agent:moltbot', requestId: `req_${i}`, data: { i } }, T0 + i);
      });
    }
    await s.votes.insert({ request_id: 'req_1', approver: 'telegram:1', decision: 'approve', reason: null, at: T0 + 10, grant_scope: null, grant_ttl_seconds: null });
    await s.votes.insert({ request_id: 'req_1', approver: 'telegram:2', decision: 'approve', reason: null, at: T0 + 11, grant_scope: null, grant_ttl_seconds: null });
    await s.credentials.insert({ id: 'crd_a', request_id: 'req_1', type: 'vault_token', state: 'minting', vault_policy: 'jit-x-1', accessor: null, jti: null, issued_at: null, expires_at: T0 + 1000, reserved_at: T0 + 12 });
    await s.credentials.markLive('crd_a', 'acc_1', T0 + 13, T0 + 1000);
    await s.audit.insertHead({ seq: 7, hash: (await s.audit.last())!.hash, at: T0 + 20, kid: 'k1', signature: 'x' });
    await s.telegram.rememberName('telegram:1', 'Alice', T0);
    await s.rateLimits.record('agt_1', T0 + 30);
    await s.approvers.insert({ id: 'apr_1', name: 'alice', telegram_id: '1', created_at: T0, removed_at: null });
    await s.approvers.insert({ id: 'apr_0', name: 'alice', telegram_id: null, created_at: T0 - 5, removed_at: T0 - 1 });
    await s.approvers.addEnrolment({ token_hash: 'e'.repeat(64), approver_id: 'apr_1', created_at: T0, expires_at: T0 + 900_000, used_at: null });
    await s.passkeys.insert({ id: 'cred_1', approver_id: 'apr_1', public_key: 'pk', sign_count: 3, transports: '["internal"]', created_at: T0, last_used_at: T0 + 1 });
    await s.consoleSessions.insert({ id_hash: 's'.repeat(64), approver_id: 'apr_1', created_at: T0, last_seen_at: T0 + 2 });
    return { path, installationId: await s.settings.installationId() };
  } finally {
    await s.close();
  }
}

async function rowsIn(url: string, table: string): Promise<number> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    const r = await c.query(`SELECT COUNT(*)::int AS n FROM ${table}`);
    return r.rows[0].n as number;
  } finally {
    await c.end();
  }
}

async function tablesIn(url: string): Promise<string[]> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    return (await c.query(`SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() ORDER BY 1`)).rows.map((r) => r.table_name as string);
  } finally {
    await c.end();
  }
}

describe('COPY_PLAN names every table of both engines (a migration that adds one fails here until the plan says what to do)', () => {
  it('SQLite: every table of the current migrations is copied or skipped', () => {
    const db = openDatabase(':memory:');
    try {
      expect(unknownTables(sqliteTables(db), COPY_PLAN, 'source')).toEqual([]);
    } finally {
      db.close();
    }
  });

  it('PostgreSQL: every table of the current migrations is copied or the target\'s own', async () => {
    const storage = await openPostgresStorage(await freshSchema());
    try {
      const client = await postgresPool(storage).connect();
      try {
        expect(unknownTables(await postgresTables(client), COPY_PLAN, 'target')).toEqual([]);
      } finally {
        client.release();
      }
    } finally {
      await storage.close();
    }
  });
});

describe('copySqliteToPostgres', () => {
  it('copies every row in one transaction, keeps the installation id, sets sequences past the copied values, and the audit chain verifies there', async () => {
    const { path, installationId } = await seededSource();
    const url = await freshSchema();
    const seen: string[] = [];
    const progress: string[] = [];
    const result = await copySqliteToPostgres({
      sourcePath: path,
      targetUrl: url,
      batchRows: 3,
      onTable: (t) => seen.push(t.table),
      progressRows: 4,
      onProgress: (table, n) => progress.push(`${table} ${n}`),
    });
    expect(seen).toEqual(COPY_PLAN.map((p) => p.name));
    expect(progress).toEqual(['requests 6', 'audit_log 6']);
    const byName = Object.fromEntries(result.tables.map((t) => [t.table, t]));
    expect(byName.requests).toMatchObject({ kind: 'copy', source: 7, target: 7 });
    expect(byName.audit_log).toMatchObject({ source: 7, target: 7 });
    expect(byName.votes).toMatchObject({ source: 2, target: 2 });
    expect(byName.schema_migrations?.kind).toBe('skip');
    expect(result.installationId).toBe(installationId);

    const target: Storage = await openPostgresStorage(url);
    try {
      expect(await target.settings.installationId()).toBe(installationId);
      expect((await target.credentials.forRequest('req_1'))).toMatchObject({ id: 'crd_a', state: 'live', accessor: 'acc_1', expires_at: T0 + 1000 });
      expect((await target.votes.of('req_1')).map((v) => v.approver)).toEqual(['telegram:1', 'telegram:2']);
      expect(await target.votes.newestSeq()).toBe(2);
      expect((await target.approvers.list()).map((a) => [a.id, a.name, a.telegram_id, a.passkeys, a.sessions])).toEqual([['apr_1', 'alice', '1', 1, 1]]);
      expect(await target.approvers.get('apr_0')).toMatchObject({ removed_at: T0 - 1 });
      expect(await target.approvers.enrolment('e'.repeat(64), T0)).toMatchObject({ approver_id: 'apr_1' });
      expect(await target.passkeys.get('cred_1')).toMatchObject({ sign_count: 3, last_used_at: T0 + 1 });
      expect(await target.consoleSessions.get('s'.repeat(64))).toMatchObject({ last_seen_at: T0 + 2 });
      const verdict = await verifyAuditChain(target);
      expect(verdict).toMatchObject({ ok: true, entries: 7 });
      // The chain goes on where it stopped; identities continue past the copied rows.
      await target.transaction(async (tx) => void (await createAuditLog(target).append(tx, { event: 'request.created', actor: 'x', data: {} }, T0 + 99)));
      expect(await verifyAuditChain(target)).toMatchObject({ ok: true, entries: 8 });
      await target.audit.insertHead({ seq: 8, hash: (await target.audit.last())!.hash, at: T0 + 100, kid: 'k1', signature: 'y' });
      expect((await target.audit.heads()).map((h) => h.seq)).toEqual([7, 8]);
      await target.votes.insert({ request_id: 'req_2', approver: 'telegram:1', decision: 'deny', reason: null, at: T0 + 50, grant_scope: null, grant_ttl_seconds: null });
      expect(await target.votes.newestSeq()).toBe(3);
      const ids = await postgresPool(target).query('SELECT id FROM audit_heads ORDER BY id');
      expect(ids.rows.map((r) => r.id)).toEqual([1, 2]);
    } finally {
      await target.close();
    }
  });

  it('refuses a target that is not empty, naming the table, and writes nothing', async () => {
    const { path } = await seededSource();
    const url = await freshSchema();
    const s = await openPostgresStorage(url);
    await s.telegram.rememberName('telegram:9', 'Zed', T0);
    await s.close();
    const err = await copySqliteToPostgres({ sourcePath: path, targetUrl: url }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CopyRefused);
    expect((err as CopyRefused).exitCode).toBe(1);
    expect((err as Error).message).toMatch(/not empty: table telegram_users has rows/);
    expect(await rowsIn(url, 'agents')).toBe(0);
  });

  it("refuses another application's database without creating a table in it", async () => {
    const { path } = await seededSource();
    const url = await freshSchema();
    const c = new pg.Client({ connectionString: url });
    await c.connect();
    try {
      await c.query('CREATE TABLE customers (id INTEGER PRIMARY KEY)');
      await expect(copySqliteToPostgres({ sourcePath: path, targetUrl: url })).rejects.toThrow(/target has table\(s\) the copy does not know: customers\. Another application's database\?/);
      expect(await tablesIn(url)).toEqual(['customers']);
    } finally {
      await c.end();
    }
  });

  it('a copied target is not empty: a second copy is refused', async () => {
    const { path } = await seededSource();
    const url = await freshSchema();
    await copySqliteToPostgres({ sourcePath: path, targetUrl: url });
    await expect(copySqliteToPostgres({ sourcePath: path, targetUrl: url })).rejects.toThrow(/not empty: table agents has rows/);
  });

  it('fails loudly on a source table it does not know, before writing anything', async () => {
    const { path } = await seededSource();
    const db = new Database(path);
    db.exec('CREATE TABLE scratch_cache (name TEXT PRIMARY KEY, owner TEXT NOT NULL)');
    db.close();
    const url = await freshSchema();
    await expect(copySqliteToPostgres({ sourcePath: path, targetUrl: url })).rejects.toThrow(/source has table\(s\) the copy does not know: scratch_cache\. .*COPY_PLAN/);
    expect(await tablesIn(url)).toEqual([]); // refused before the target was even migrated

    // Named as skipped (ephemeral), it is counted and left behind; the rest is copied.
    const withScratch = new Database(path);
    withScratch.prepare("INSERT INTO scratch_cache (name, owner) VALUES ('k', 'v')").run();
    withScratch.close();
    const plan = [...COPY_PLAN, { name: 'scratch_cache', kind: 'skip' as const, why: 'ephemeral' }];
    const result = await copySqliteToPostgres({ sourcePath: path, targetUrl: url, plan });
    expect(result.tables.find((t) => t.table === 'scratch_cache')).toMatchObject({ kind: 'skip', source: 1, target: 0 });
    expect(await rowsIn(url, 'agents')).toBe(1);
  });

  it('fails loudly on a target table it does not know (a PostgreSQL migration added it), and accepts it named as the target\'s own', async () => {
    const { path } = await seededSource();
    const url = await freshSchema();
    const s = await openPostgresStorage(url);
    await postgresPool(s).query('CREATE TABLE later_table (id TEXT PRIMARY KEY, v TEXT NOT NULL)');
    await s.close();
    await expect(copySqliteToPostgres({ sourcePath: path, targetUrl: url })).rejects.toThrow(/target has table\(s\) the copy does not know: later_table/);
    expect(await rowsIn(url, 'agents')).toBe(0);
    const plan = [...COPY_PLAN, { name: 'later_table', kind: 'target' as const, why: 'a PostgreSQL-only table (made by a later migration)' }];
    await copySqliteToPostgres({ sourcePath: path, targetUrl: url, plan });
    expect(await rowsIn(url, 'requests')).toBe(7);
  });

  it('fails loudly on a source column the target lacks', async () => {
    const { path } = await seededSource();
    const db = new Database(path);
    db.exec('ALTER TABLE agents ADD COLUMN nickname TEXT');
    db.close();
    const url = await freshSchema();
    await expect(copySqliteToPostgres({ sourcePath: path, targetUrl: url })).rejects.toThrow(/table agents: the source has column\(s\) nickname that the target lacks/);
    expect(await rowsIn(url, 'requests')).toBe(0);
  });

  it('converts by the target column type: 0/1 to boolean, JSON text to jsonb, integers past 2^53 exactly; a value that does not fit stops the copy', async () => {
    const { path } = await seededSource();
    const db = new Database(path);
    db.exec('CREATE TABLE flags (id INTEGER PRIMARY KEY, enabled INTEGER NOT NULL, doc TEXT, big INTEGER) STRICT');
    db.prepare('INSERT INTO flags (id, enabled, doc, big) VALUES (?, ?, ?, ?)').run(1, 1, '{"a":[1,2]}', 9007199254740993n);
    db.prepare('INSERT INTO flags (id, enabled, doc, big) VALUES (?, ?, ?, ?)').run(2, 0, null, -5);
    db.close();
    const plan = [...COPY_PLAN, { name: 'flags', kind: 'copy' as const }];
    const withFlags = async () => {
      const url = await freshSchema();
      const c = new pg.Client({ connectionString: url });
      await c.connect();
      await c.query('CREATE TABLE flags (id BIGINT PRIMARY KEY, enabled BOOLEAN NOT NULL, doc JSONB, big BIGINT)');
      return { url, c };
    };
    const { url, c } = await withFlags();
    try {
      // flags is made outside the migrations, on both sides; the plan given here names it, so neither side refuses it.
      await copySqliteToPostgres({ sourcePath: path, targetUrl: url, plan });
      const rows = (await c.query('SELECT id::text, enabled, doc, big::text FROM flags ORDER BY id')).rows;
      expect(rows).toEqual([
        { id: '1', enabled: true, doc: { a: [1, 2] }, big: '9007199254740993' },
        { id: '2', enabled: false, doc: null, big: '-5' },
      ]);
    } finally {
      await c.end();
    }

    const bad = new Database(path);
    bad.prepare('INSERT INTO flags (id, enabled, doc, big) VALUES (?, ?, ?, ?)').run(3, 2, null, null);
    bad.close();
    const second = await withFlags();
    try {
      await expect(copySqliteToPostgres({ sourcePath: path, targetUrl: second.url, plan })).rejects.toThrow(/^flags\.enabled: the source holds a value of type number that does not fit PostgreSQL's boolean$/);
      expect((await second.c.query('SELECT COUNT(*)::int AS n FROM agents')).rows[0].n).toBe(0);
    } finally {
      await second.c.end();
    }
  });

  it('refuses when the source changes during the copy (a broker still writing) and leaves the target empty', async () => {
    const { path } = await seededSource();
    const url = await freshSchema();
    const writer = new Database(path);
    try {
      const copy = copySqliteToPostgres({
        sourcePath: path,
        targetUrl: url,
        onTable: (t) => {
          if (t.table === 'requests') writer.prepare('INSERT INTO rate_events (agent_id, seq, at) VALUES (?, ?, ?)').run('agt_1', 99, T0 + 99);
        },
      });
      await expect(copy).rejects.toThrow(/source database changed during the copy/);
    } finally {
      writer.close();
    }
    expect(await rowsIn(url, 'requests')).toBe(0);
    expect(await rowsIn(url, 'audit_log')).toBe(0);
  });

  it('a missing source and an unreachable target are refused with exit 2, the target shown without its password', async () => {
    const missing = await copySqliteToPostgres({ sourcePath: join(dir, 'nope.db'), targetUrl: 'postgres://u:pw@127.0.0.1:1/x' }).catch((e: unknown) => e);
    expect(missing).toMatchObject({ exitCode: 2 });
    expect((missing as Error).message).toMatch(/nope\.db \(JIT_DB\) does not exist/);
    const { path } = await seededSource();
    const port = await freePort();
    const err = await copySqliteToPostgres({ sourcePath: path, targetUrl: `postgres://jit:Secr3tPassw0rd@127.0.0.1:${port}/jit` }).catch((e: unknown) => e);
    expect(err).toMatchObject({ exitCode: 2 });
    expect((err as Error).message).toBe(`cannot open the target database at postgres://127.0.0.1:${port}/jit: connection refused (is PostgreSQL running and listening there?)`);
  });
});
