import pg from 'pg';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { StorageBusyError, StorageUnavailableError, StorageUniqueError } from '../../src/storage/errors.ts';
import { openStorage } from '../../src/storage/index.ts';
import { LOCK_TIMEOUT_MS, WRITE_LOCK_KEY, openPostgresStorage, postgresPool } from '../../src/storage/postgres/index.ts';
import { pgStorageError } from '../../src/storage/postgres/pool.ts';
import type { Storage, Transaction } from '../../src/storage/storage.ts';
import { until } from '../helpers/chaos-process.ts';
import { postgresSchemas } from '../helpers/postgres.ts';
import { startPostgres, type PostgresServer } from '../helpers/postgres-server.ts';
import { T0, credential, describeStorageConformance, request } from './conformance.ts';

/*
 * Each test gets an empty schema of its own in one database of this file
 * (test/helpers/postgres.ts, postgresSchemas).
 */
const freshSchema = postgresSchemas('jit', 't');

describeStorageConformance('PostgreSQL, a fresh schema', async () => {
  const storage = await openPostgresStorage(await freshSchema());
  return { storage, dispose: () => storage.close() };
});

const outboxRow = (id: string, requestId: string, at: number) => ({
  id, request_id: requestId, type: 'jit.request.approved' as const, target: 'standard' as const, url: `http://127.0.0.1:1/${id.length % 3}`,
  url_source: 'policy' as const, session_key: null, body_format: 'facts' as const, body: '{}', state: 'pending' as const, next_attempt_at: at, last_error: null, created_at: at,
});

/** Two storages on one database: two brokers, each with its own pool. */
describe('PostgreSQL engine: two brokers on one database', () => {
  let url: string;
  let a: Storage;
  let b: Storage;
  beforeEach(async () => {
    url = await freshSchema();
    // Both open (and migrate) at the same time: the migration runs once, under the lock.
    [a, b] = await Promise.all([openPostgresStorage(url), openPostgresStorage(url)]);
  });
  afterEach(async () => {
    await Promise.all([a.close(), b.close()]);
  });

  it('migrate an empty database once when they start together, and share one installation id', async () => {
    const { rows } = await postgresPool(a).query<{ version: number; n: number }>('SELECT version, COUNT(*) OVER () AS n FROM schema_migrations ORDER BY version');
    // Each migration file applied exactly once.
    const files = readdirSync(join(import.meta.dirname, '..', '..', 'src', 'storage', 'postgres', 'migrations')).filter((f) => /^\d{4}_.*\.sql$/.test(f));
    expect(rows.map((r) => r.version)).toEqual(files.map((f) => Number(f.slice(0, 4))).sort((x, y) => x - y));
    expect(await a.settings.installationId()).toMatch(/^[0-9a-f]{16}$/);
    expect(await b.settings.installationId()).toBe(await a.settings.installationId());
    // A third start finds nothing to do and changes nothing.
    const c = await openPostgresStorage(url);
    expect(await c.settings.installationId()).toBe(await a.settings.installationId());
    await c.close();
  });

  it('of read-then-move transactions racing on both, exactly one wins', async () => {
    for (let i = 0; i < 10; i++) await a.requests.insert(request(`req_${i}`));
    const attempt = (s: Storage, id: string, to: 'approved' | 'denied') =>
      s.transaction(async (tx) => {
        const r = await tx.requests.get(id);
        if (r?.status !== 'pending') return false;
        // Read, then move unconditionally on what was read: right only if no one else moved it in between.
        await tx.votes.insert({ request_id: id, approver: to, decision: to === 'approved' ? 'approve' : 'deny', reason: null, at: T0, grant_scope: null, grant_ttl_seconds: null });
        return tx.requests.move(id, 'pending', to, T0 + 1, { decidedBy: to });
      });
    for (let i = 0; i < 10; i++) {
      const results = await Promise.all([attempt(a, `req_${i}`, 'approved'), attempt(b, `req_${i}`, 'denied'), attempt(b, `req_${i}`, 'approved'), attempt(a, `req_${i}`, 'denied')]);
      expect(results.filter(Boolean)).toHaveLength(1);
      expect(await a.votes.of(`req_${i}`)).toHaveLength(1);
    }
    // And the bare conditional move, outside transactions.
    await a.requests.insert(request('req_bare'));
    const moves = await Promise.all([a.requests.move('req_bare', 'pending', 'approved', T0), b.requests.move('req_bare', 'pending', 'denied', T0), b.requests.move('req_bare', 'pending', 'approved', T0)]);
    expect(moves.filter(Boolean)).toHaveLength(1);
  });

  it('claim the outbox at the same time without ever leasing one row twice, and without the write lock', async () => {
    for (let i = 0; i < 60; i++) {
      await a.requests.insert(request(`req_${i}`));
      await a.outbox.insert(outboxRow(`evt_${String(i).padStart(2, '0')}`, `req_${i}`, T0 + i));
    }
    // A transaction holding the write lock on `a` does not stop claims (they never wait for it).
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    let locked!: () => void;
    const isLocked = new Promise<void>((r) => (locked = r));
    const holder = a.transaction(async (tx) => {
      await tx.requests.get('req_0');
      locked();
      await held; // test only: hold the write lock while the claims run
    });
    await isLocked;
    const claimAll = async (s: Storage, owner: string) => {
      const got: string[] = [];
      for (;;) {
        const rows = await s.outbox.claim({ now: T0 + 1000, dueBy: T0 + 1000, owner, leaseUntil: T0 + 60_000, limit: 4 });
        if (rows.length === 0) return got;
        got.push(...rows.map((r) => r.id));
      }
    };
    const claimed = await Promise.all([claimAll(a, 'a1'), claimAll(b, 'b1'), claimAll(a, 'a2'), claimAll(b, 'b2')]);
    release();
    await holder;
    const all = claimed.flat();
    expect(all).toHaveLength(60);
    expect(new Set(all).size).toBe(60);
    expect((await b.outbox.countByState()).delivering).toBe(60);
    // Each row's lease is its claimer's, attempted once.
    const owners = new Map(claimed.flatMap((ids, i) => ids.map((id) => [id, ['a1', 'b1', 'a2', 'b2'][i]!])));
    for (const id of ['evt_00', 'evt_31', 'evt_59']) expect(await a.outbox.get(id)).toMatchObject({ lease_owner: owners.get(id), attempts: 1 });
  });

  it('append to the audit chain from both at once and keep one chain (each append reads the last seq under the lock)', async () => {
    const append = (s: Storage, who: string) =>
      s.transaction(async (tx) => {
        const last = await tx.audit.last();
        const seq = (last?.seq ?? 0) + 1;
        await tx.audit.insert({ seq, at: T0 + seq, event: 'test.event', actor: who, request_id: null, data: '{}', prev_hash: last?.hash ?? '', hash: `h${seq}` });
      });
    await Promise.all(Array.from({ length: 40 }, (_, i) => append(i % 2 ? a : b, i % 2 ? 'a' : 'b')));
    const rows = await a.audit.page(0, 100);
    expect(rows.map((r) => r.seq)).toEqual(Array.from({ length: 40 }, (_, i) => i + 1));
    for (const [i, r] of rows.entries()) expect(r.prev_hash).toBe(i === 0 ? '' : `h${i}`);
    expect(new Set(rows.map((r) => r.actor))).toEqual(new Set(['a', 'b']));
  });

  it('race for one lease from both (outside and inside transactions): exactly one holds it, each time it is free', async () => {
    for (let round = 0; round < 5; round++) {
      const now = T0 + round * 10_000;
      const tries = [a, b, a, b].map((s, i) =>
        i % 2 === 0
          ? s.leases.acquire('telegram:leader', `n${i}`, now, now + 10_000)
          : s.transaction((tx) => tx.leases.acquire('telegram:leader', `n${i}`, now, now + 10_000)),
      );
      const won = await Promise.all(tries);
      expect(won.filter(Boolean)).toHaveLength(1);
      expect((await b.leases.get('telegram:leader'))!.holder).toBe(`n${won.indexOf(true)}`);
    }
  });

  it('refuse the same Idempotency-Key from both with StorageUniqueError, once', async () => {
    const insert = (s: Storage, id: string) => s.requests.insert(request(id, { idempotency_key: 'k1' }));
    const outcomes = await Promise.allSettled([insert(a, 'req_a'), insert(b, 'req_b'), insert(a, 'req_c'), insert(b, 'req_d')]);
    expect(outcomes.filter((o) => o.status === 'fulfilled')).toHaveLength(1);
    for (const o of outcomes) if (o.status === 'rejected') expect(o.reason).toBeInstanceOf(StorageUniqueError);
  });

  it('a broker that holds the write lock past lock_timeout makes the other\'s write fail with StorageBusyError, nothing written', async () => {
    const raw = new pg.Client({ connectionString: url });
    await raw.connect();
    try {
      await raw.query(`BEGIN; SELECT pg_advisory_xact_lock(${WRITE_LOCK_KEY})`);
      const started = performance.now();
      await expect(b.transaction((tx) => tx.requests.insert(request('req_x')))).rejects.toBeInstanceOf(StorageBusyError);
      expect(performance.now() - started).toBeGreaterThanOrEqual(LOCK_TIMEOUT_MS - 50);
      // Reads go on meanwhile.
      expect(await b.requests.get('req_x')).toBeUndefined();
      await raw.query('ROLLBACK');
      await b.requests.insert(request('req_x'));
      expect((await a.requests.get('req_x'))?.status).toBe('pending');
    } finally {
      await raw.end();
    }
  }, 20_000);
});

describe('PostgreSQL engine specifics', () => {
  let s: Storage;
  beforeEach(async () => {
    s = await openPostgresStorage(await freshSchema());
  });
  afterEach(() => s.close());

  it('never commits a transaction in which a statement failed, even if the callback caught the error', async () => {
    await s.requests.insert(request('req_a', { idempotency_key: 'k' }));
    await expect(
      s.transaction(async (tx) => {
        await tx.requests.insert(request('req_b'));
        await tx.requests.insert(request('req_c', { idempotency_key: 'k' })).catch(() => {});
        return 'carried on';
      }),
    ).rejects.toBeInstanceOf(StorageUniqueError);
    expect(await s.requests.get('req_b')).toBeUndefined();
  });

  it('refuses, at once, a call on the storage or a second transaction from inside a transaction callback (nesting check)', async () => {
    expect(process.env['JIT_STORAGE_NESTING_CHECK']).toBe('1');
    await expect(s.transaction(() => s.requests.get('req_a'))).rejects.toThrow(/inside a transaction callback/);
    await expect(s.transaction(() => s.transaction(async () => 1))).rejects.toThrow(/not reentrant/);
    expect(await s.transaction(async (tx) => tx.requests.get('req_a'))).toBeUndefined();
  });

  it('a process whose every connection stays in use answers StorageBusyError, not unavailable', async () => {
    const small = await openPostgresStorage(await freshSchema(), { poolSize: 1 });
    try {
      let release!: () => void;
      const held = new Promise<void>((r) => (release = r));
      let began!: () => void;
      const inside = new Promise<void>((r) => (began = r));
      const holder = small.transaction(async (tx) => {
        await tx.requests.get('req_a');
        began();
        await held; // test only: keep the one connection
      });
      await inside;
      await expect(small.requests.get('req_a')).rejects.toBeInstanceOf(StorageBusyError);
      release();
      await holder;
      expect(await small.requests.get('req_a')).toBeUndefined();
    } finally {
      await small.close();
    }
  }, 20_000);

  it('reads epoch-ms bigints and counts as numbers', async () => {
    await s.requests.insert(request('req_a', { approval_expires_at: 2 ** 52 }));
    const row = await s.requests.get('req_a');
    expect(row?.approval_expires_at).toBe(2 ** 52);
    expect(typeof row?.created_at).toBe('number');
    expect(await s.requests.pendingCount('agt_1')).toBe(1);
  });

  it('keeps the audit log append-only in the database itself', async () => {
    await s.audit.insert({ seq: 1, at: T0, event: 'e', actor: 'a', request_id: null, data: '{}', prev_hash: '', hash: 'h1' });
    const pool = postgresPool(s);
    await expect(pool.query(`UPDATE audit_log SET actor = 'x'`)).rejects.toThrow(/append-only/);
    await expect(pool.query('DELETE FROM audit_log')).rejects.toThrow(/append-only/);
    await expect(pool.query('TRUNCATE audit_log')).rejects.toThrow(/append-only/);
    expect((await s.audit.page(0, 10)).map((r) => r.actor)).toEqual(['a']);
  });

  it('translates SQLSTATEs and socket errors into the interface\'s types, and leaves others alone', () => {
    const e = (code: string) => Object.assign(new Error('x'), { code });
    expect(pgStorageError(e('23505'))).toBeInstanceOf(StorageUniqueError);
    for (const code of ['55P03', '40P01', '40001']) expect(pgStorageError(e(code))).toBeInstanceOf(StorageBusyError);
    for (const code of ['57P01', '57P03', '08006', '53300', 'ECONNREFUSED', 'ECONNRESET']) expect(pgStorageError(e(code))).toBeInstanceOf(StorageUnavailableError);
    const other = e('23503');
    expect(pgStorageError(other)).toBe(other);
    const plain = new Error('plain');
    expect(pgStorageError(plain)).toBe(plain);
  });

  it('survives its connections being terminated by an administrator: the next calls reconnect', async () => {
    await s.requests.insert(request('req_a'));
    // Every pooled connection is idle now; terminating them makes the pool emit 'error', which must not crash the process.
    const admin = new pg.Client({ connectionString: (postgresPool(s).options as { connectionString: string }).connectionString });
    await admin.connect();
    try {
      const { rows } = await admin.query<{ n: number }>(`SELECT COUNT(pg_terminate_backend(pid))::int AS n FROM pg_stat_activity
        WHERE datname = current_database() AND pid <> pg_backend_pid() AND application_name = 'jit-broker'`);
      expect(rows[0]!.n).toBeGreaterThan(0);
    } finally {
      await admin.end();
    }
    // The pool drops each connection as its end arrives (the 'error' event of an idle client).
    await until(() => postgresPool(s).totalCount === 0, undefined, 'the pool to drop its terminated connections', 20);
    expect((await s.requests.get('req_a'))?.status).toBe('pending');
    expect(await s.requests.move('req_a', 'pending', 'approved', T0)).toBe(true);
  });
});

describe('PostgreSQL engine: group commit (transactions queued behind one share its PostgreSQL transaction)', () => {
  let s: Storage;
  let url: string;
  let admin: pg.Pool;
  beforeEach(async () => {
    url = await freshSchema();
    s = await openPostgresStorage(url);
    admin = postgresPool(s);
  });
  afterEach(() => s.close());

  /** The PostgreSQL transaction id of the session holding the write lock, as the server shows it to another session. */
  const writerXid = async (): Promise<string> => {
    const { rows } = await admin.query<{ xid: string | null }>(`SELECT a.backend_xid::text AS xid FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
      WHERE l.locktype = 'advisory' AND l.granted AND l.objid = (${WRITE_LOCK_KEY}::bigint & 4294967295)::oid AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())`);
    expect(rows).toHaveLength(1);
    return rows[0]!.xid!;
  };
  /** A transaction that runs `fn`, then waits inside (holding the lock) until `release()`, then runs `then`. */
  const heldOpen = <T>(fn: (tx: Transaction) => Promise<T>, then?: () => void) => {
    let entered!: () => void;
    const inside = new Promise<void>((r) => (entered = r));
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const done = s.transaction(async (tx) => {
      const result = await fn(tx);
      // A round trip: the server has carried out everything sent before it (inserts go out without waiting).
      await tx.agents.byName('nobody');
      entered();
      await gate; // test only: a real callback awaits nothing but tx calls
      then?.();
      return result;
    });
    return { inside, release, done };
  };
  /** Appends an entry to the audit chain in `tx`, after the head it knows. */
  const append = async (tx: Transaction, event: string) => {
    const head = await tx.audit.last();
    const seq = (head?.seq ?? 0) + 1;
    await tx.audit.insert({ seq, at: T0 + seq, event, actor: 'test', request_id: null, data: '{}', prev_hash: head?.hash ?? '', hash: `${event}#${seq}` });
  };
  const settledOf = (results: PromiseSettledResult<unknown>[]) => results.map((r) => r.status);

  it('share one BEGIN, write lock and COMMIT: one transaction id on the server, each sees those before it, each resolves after the COMMIT', async () => {
    const resolved: string[] = [];
    const a = heldOpen((tx) => tx.requests.insert(request('req_a')));
    await a.inside;
    const first = await writerXid();
    const b = s.transaction(async (tx) => {
      await tx.requests.insert(request('req_b'));
      return (await tx.requests.get('req_a'))?.id;
    });
    const c = heldOpen((tx) => tx.requests.insert(request('req_c')));
    void a.done.then(() => resolved.push('a'));
    void b.then(() => resolved.push('b'));
    a.release();
    await c.inside;
    // c runs in the transaction a began: b's and a's writes are not committed yet, nor have they resolved.
    expect(await writerXid()).toBe(first);
    expect(resolved).toEqual([]);
    expect(await s.requests.get('req_a')).toBeUndefined();
    c.release();
    expect(await b).toBe('req_a');
    await Promise.all([a.done, c.done]);
    expect(resolved).toEqual(['a', 'b']);
    for (const id of ['req_a', 'req_b', 'req_c']) expect((await s.requests.get(id))?.id).toBe(id);
    // The control: a transaction with nobody before it begins a transaction of its own.
    const d = heldOpen((tx) => tx.requests.insert(request('req_d')));
    await d.inside;
    expect(await writerXid()).not.toBe(first);
    d.release();
    await d.done;
  });

  it('a queued transaction that fails goes back to its savepoint: the others commit, its error and rollback hooks are its own, the audit chain stays whole', async () => {
    await s.requests.insert(request('req_k', { idempotency_key: 'k' }));
    await s.credentials.insert(credential('cred_k', 'req_k'));
    const boom = new Error('boom');
    const hooks: string[] = [];
    const a = heldOpen(async (tx) => {
      await tx.requests.insert(request('req_a'));
      await append(tx, 'a');
      tx.afterCommit(() => hooks.push('a committed'));
    });
    await a.inside;
    const queued = Promise.allSettled([
      s.transaction(async (tx) => {
        await tx.requests.insert(request('req_b'));
        await append(tx, 'b');
        tx.afterRollback(() => hooks.push('b rolled back'));
        throw boom;
      }),
      // A reused idempotency key: the insert's answer comes after the callback returned, and is still its own.
      s.transaction(async (tx) => {
        await append(tx, 'c');
        await tx.requests.insert(request('req_c', { idempotency_key: 'k' }));
        tx.afterRollback(() => hooks.push('c rolled back'));
      }),
      // A second credential for a request: the same, for the credentials' uniqueness rule.
      s.transaction(async (tx) => {
        await tx.credentials.insert(credential('cred_k2', 'req_k'));
        await append(tx, 'e');
      }),
      // A credential for a request of its own cannot meet that rule: sent ahead like an audit entry.
      s.transaction(async (tx) => {
        await tx.requests.insert(request('req_f'));
        await tx.credentials.insert(credential('cred_f', 'req_f'));
      }),
      s.transaction(async (tx) => {
        await tx.requests.insert(request('req_d'));
        await append(tx, 'd');
        tx.afterCommit(() => hooks.push('d committed'));
      }),
    ]);
    a.release();
    const results: PromiseSettledResult<unknown>[] = [...(await Promise.allSettled([a.done])), ...(await queued)];
    expect(settledOf(results)).toEqual(['fulfilled', 'rejected', 'rejected', 'rejected', 'fulfilled', 'fulfilled']);
    expect((results[1] as PromiseRejectedResult).reason).toBe(boom);
    expect((results[2] as PromiseRejectedResult).reason).toBeInstanceOf(StorageUniqueError);
    expect((results[3] as PromiseRejectedResult).reason).toBeInstanceOf(StorageUniqueError);
    expect((await s.credentials.forRequest('req_k'))?.id).toBe('cred_k');
    expect((await s.credentials.forRequest('req_f'))?.id).toBe('cred_f');
    expect(hooks.sort()).toEqual(['a committed', 'b rolled back', 'c rolled back', 'd committed']);
    expect(await s.requests.get('req_b')).toBeUndefined();
    expect(await s.requests.get('req_c')).toBeUndefined();
    expect((await s.requests.get('req_d'))?.id).toBe('req_d');
    // d appended after a, not after the entries b and c made and lost.
    const chain = await s.audit.page(0, 10);
    expect(chain.map((e) => [e.seq, e.event, e.prev_hash])).toEqual([[1, 'a', ''], [2, 'd', 'a#1']]);
  });

  it('the first of a group failing rolls back alone; those queued behind it begin the next', async () => {
    const a = heldOpen((tx) => tx.requests.insert(request('req_a')), () => {
      throw new Error('a fails');
    });
    await a.inside;
    const b = s.transaction((tx) => tx.requests.insert(request('req_b')));
    const c = s.transaction((tx) => tx.requests.insert(request('req_c')));
    a.release();
    await expect(a.done).rejects.toThrow('a fails');
    await Promise.all([b, c]);
    expect(await s.requests.get('req_a')).toBeUndefined();
    for (const id of ['req_b', 'req_c']) expect((await s.requests.get(id))?.id).toBe(id);
  });

  it('a COMMIT that fails (a deferred constraint) rejects every transaction of the group, runs their rollback hooks, and writes nothing of it', async () => {
    // Checked at COMMIT: a request with this id makes the whole transaction fail then.
    await admin.query(`CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'poisoned at commit'; END $$`);
    await admin.query(`CREATE CONSTRAINT TRIGGER poison AFTER INSERT ON requests DEFERRABLE INITIALLY DEFERRED FOR EACH ROW WHEN (NEW.id = 'req_poison') EXECUTE FUNCTION refuse_poison()`);
    const hooks: string[] = [];
    const a = heldOpen(async (tx) => {
      await tx.requests.insert(request('req_a'));
      tx.afterRollback(() => hooks.push('a'));
    });
    await a.inside;
    const rest = Promise.allSettled([
      s.transaction(async (tx) => {
        await tx.requests.insert(request('req_poison'));
        tx.afterRollback(() => hooks.push('b'));
      }),
      s.transaction(async (tx) => {
        await tx.requests.insert(request('req_c'));
        tx.afterRollback(() => hooks.push('c'));
      }),
    ]);
    a.release();
    const results = [await a.done.then(() => 'fulfilled', (err: unknown) => err), ...(await rest).map((r) => (r.status === 'rejected' ? r.reason : 'fulfilled'))];
    for (const err of results) expect(String((err as Error).cause ?? err)).toMatch(/poisoned at commit/);
    expect(hooks).toEqual(['a', 'b', 'c']);
    for (const id of ['req_a', 'req_poison', 'req_c']) expect(await s.requests.get(id)).toBeUndefined();
    // And the storage goes on.
    await s.transaction((tx) => tx.requests.insert(request('req_d')));
    expect((await s.requests.get('req_d'))?.id).toBe('req_d');
  });

  it('a write outside a transaction that the lock passes to commits the group first, and joins none', async () => {
    const seen: string[] = [];
    const a = heldOpen((tx) => tx.requests.insert(request('req_a')));
    await a.inside;
    const b = s.transaction((tx) => tx.requests.insert(request('req_b'))).then(() => seen.push('b committed'));
    const w = s.requests.insert(request('req_w')).then(() => seen.push('write done'));
    const c = heldOpen((tx) => tx.requests.insert(request('req_c')));
    void a.done.then(() => seen.push('a committed'));
    a.release();
    await c.inside;
    // a and b were committed before the write ran; c began a transaction of its own after it.
    expect(seen).toEqual(['a committed', 'b committed', 'write done']);
    for (const id of ['req_a', 'req_b', 'req_w']) expect((await s.requests.get(id))?.id).toBe(id);
    expect(await s.requests.get('req_c')).toBeUndefined();
    c.release();
    await Promise.all([b, w, c.done]);
    expect((await s.requests.get('req_c'))?.id).toBe('req_c');
  });

  it('close() that gives up waiting for a running transaction rejects its group at once, and settles once that transaction ended, nothing written', async () => {
    const a = heldOpen((tx) => tx.requests.insert(request('req_a')));
    await a.inside;
    const b = heldOpen((tx) => tx.requests.insert(request('req_b')));
    a.release();
    await b.inside;
    // a ended and waits for the group's COMMIT; b runs. close() waits for the lock, gives up after LOCK_TIMEOUT_MS.
    const closed = s.close().then(() => 'closed', (err: unknown) => err);
    await expect(a.done).rejects.toBeInstanceOf(StorageBusyError);
    let settled = false;
    void closed.then(() => (settled = true));
    await new Promise((r) => setTimeout(r, 100));
    expect(settled).toBe(false);
    b.release();
    await expect(b.done).rejects.toBeInstanceOf(StorageBusyError);
    expect(await closed).toBeInstanceOf(StorageBusyError);
    s = await openPostgresStorage(url);
    for (const id of ['req_a', 'req_b']) expect(await s.requests.get(id)).toBeUndefined();
    // The write lock is free: the next transaction has it at once.
    await s.transaction((tx) => tx.requests.insert(request('req_c')));
    expect((await s.requests.get('req_c'))?.id).toBe('req_c');
  }, LOCK_TIMEOUT_MS + 15_000);

  it('its connection lost mid-group: every transaction of the group rejects as unavailable, nothing of it is written, the next works', async () => {
    const a = heldOpen((tx) => tx.requests.insert(request('req_a')));
    await a.inside;
    const b = s.transaction((tx) => tx.requests.insert(request('req_b')));
    const c = heldOpen(async (tx) => {
      await tx.requests.insert(request('req_c'));
    });
    a.release();
    await c.inside;
    const { rows } = await admin.query<{ pid: number }>(`SELECT l.pid FROM pg_locks l WHERE l.locktype = 'advisory' AND l.granted AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())`);
    await admin.query('SELECT pg_terminate_backend($1)', [rows[0]!.pid]);
    c.release();
    const results = await Promise.allSettled([a.done, b, c.done]);
    for (const r of results) expect((r as PromiseRejectedResult).reason).toBeInstanceOf(StorageUnavailableError);
    for (const id of ['req_a', 'req_b', 'req_c']) expect(await s.requests.get(id)).toBeUndefined();
    await s.transaction((tx) => tx.requests.insert(request('req_d')));
    expect((await s.requests.get('req_d'))?.id).toBe('req_d');
  }, 20_000);
});

describe('PostgreSQL engine: the server goes away and comes back', () => {
  let server: PostgresServer;
  beforeAll(async () => {
    server = await startPostgres();
  }, 60_000);
  afterAll(() => server?.stop());

  it('answers StorageUnavailableError while it is down (reads, writes, transactions, ping), and works again once it is back', async () => {
    const storage = await openStorage({ dbPath: 'unused', databaseUrl: await server.createDatabase() });
    try {
      await storage.requests.insert(request('req_a'));
      await server.halt();
      await expect(storage.requests.get('req_a')).rejects.toBeInstanceOf(StorageUnavailableError);
      await expect(storage.requests.move('req_a', 'pending', 'approved', T0)).rejects.toBeInstanceOf(StorageUnavailableError);
      await expect(storage.transaction((tx) => tx.requests.get('req_a'))).rejects.toBeInstanceOf(StorageUnavailableError);
      await expect(storage.outbox.claim({ now: T0, dueBy: T0, owner: 'w', leaseUntil: T0 + 1, limit: 5 })).rejects.toBeInstanceOf(StorageUnavailableError);
      await expect(storage.ping()).rejects.toBeInstanceOf(StorageUnavailableError);
      await server.restart();
      await storage.ping();
      expect(await storage.transaction((tx) => tx.requests.move('req_a', 'pending', 'approved', T0))).toBe(true);
      expect((await storage.requests.get('req_a'))?.status).toBe('approved');
    } finally {
      await storage.close();
    }
  }, 60_000);
});
