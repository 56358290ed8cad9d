import { chmodSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { StorageBusyError, StorageUniqueError } from '../../src/storage/errors.ts';
import { openStorage } from '../../src/storage/index.ts';
import { BACKGROUND_AUTOCHECKPOINT_PAGES } from '../../src/storage/sqlite/open.ts';
import { FifoLock } from '../../src/storage/lock.ts';
import { BUSY_TIMEOUT_MS, openSqliteStorage, sqliteDatabase } from '../../src/storage/sqlite/index.ts';
import { storageError } from '../../src/storage/sqlite/storage.ts';
import type { Storage } from '../../src/storage/storage.ts';
import { T0, describeStorageConformance, request, transactionHeldOpen } from './conformance.ts';

describeStorageConformance('SQLite, a temporary file', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'jit-storage-'));
  const storage = openSqliteStorage(join(dir, 'jit.db'));
  return {
    storage,
    async dispose() {
      await storage.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
});

describeStorageConformance('SQLite, :memory:', async () => {
  const storage = openSqliteStorage(':memory:');
  return { storage, dispose: () => storage.close() };
});

describe('SQLite engine specifics', () => {
  it('prepares its statements once per connection, never per call', async () => {
    const storage = openSqliteStorage(':memory:');
    const db = sqliteDatabase(storage);
    const round = async () => {
      await storage.transaction(async (tx) => {
        await tx.requests.get('req_a');
        await tx.requests.list({ status: 'pending' });
        await tx.votes.has('req_a', 'alice');
        await tx.votes.countApprovals('req_a');
        await tx.outbox.claim({ now: 1, dueBy: 1, owner: 'w', leaseUntil: 2, limit: 5 });
        await tx.audit.last();
      });
      await storage.requests.get('req_a');
      await storage.ping();
    };
    await round();
    const prepare = vi.spyOn(db, 'prepare');
    await round();
    await round();
    expect(prepare).not.toHaveBeenCalled();
    await storage.close();
  });

  it('translates busy and uniqueness errors into the interface\'s types and leaves others alone', () => {
    const sqlite = (code: string) => Object.assign(new Error('x'), { code });
    expect(storageError(sqlite('SQLITE_BUSY'))).toBeInstanceOf(StorageBusyError);
    expect(storageError(sqlite('SQLITE_BUSY_SNAPSHOT'))).toBeInstanceOf(StorageBusyError);
    expect(storageError(sqlite('SQLITE_LOCKED'))).toBeInstanceOf(StorageBusyError);
    expect(storageError(sqlite('SQLITE_CONSTRAINT_UNIQUE'))).toBeInstanceOf(StorageUniqueError);
    const other = sqlite('SQLITE_CONSTRAINT_CHECK');
    expect(storageError(other)).toBe(other);
    const plain = new Error('plain');
    expect(storageError(plain)).toBe(plain);
  });
});

/*
 * One connection per process: one transaction at a time, and a call outside
 * a transaction waits for the open one. Not part of the conformance suite:
 * an engine with a connection pool and MVCC (PostgreSQL) runs them side by
 * side; what every engine owes is the isolation in the Storage doc.
 */
describe('SQLite engine: one transaction at a time', () => {
  let s: Storage;
  beforeEach(() => {
    s = openSqliteStorage(':memory:');
  });
  afterEach(() => s.close());

  it('makes a call outside the transaction wait until it ends, so it never sees uncommitted writes', async () => {
    const { wrote, release, running } = transactionHeldOpen(s);
    await wrote;
    const outside = s.requests.get('req_a');
    release();
    await running;
    expect((await outside)?.status).toBe('approved');
  });

  it('runs transactions one at a time, in arrival order', async () => {
    await s.grantPolicies.acquire('counter', T0);
    const order: number[] = [];
    await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        s.transaction(async (tx) => {
          const g = await tx.grantPolicies.acquire('counter', T0);
          await tx.grantPolicies.retire('counter', g.generation, T0);
          order.push(i);
        }),
      ),
    );
    expect(order).toEqual(Array.from({ length: 20 }, (_, i) => i));
    expect((await s.grantPolicies.acquire('counter', T0)).generation).toBe(21);
  });
});

describe('SQLite engine: group commit (the transactions of one turn of the event loop commit together)', () => {
  let dir: string;
  let storage: Storage;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'jit-group-'));
    storage = openSqliteStorage(join(dir, 'jit.db'));
  });
  afterEach(async () => {
    await storage.close();
    rmSync(dir, { recursive: true, force: true });
  });
  /**
   * The commits in the WAL file: frames of the current WAL (their salt is
   * the header's) whose "database size after commit" field is set. Counted
   * from the file SQLite wrote, not from the engine's own bookkeeping.
   */
  const walCommits = (): number => {
    let wal: Buffer;
    try {
      wal = readFileSync(join(dir, 'jit.db-wal'));
    } catch {
      return 0;
    }
    if (wal.length < 32) return 0;
    const pageSize = wal.readUInt32BE(8);
    const salt = wal.subarray(16, 24);
    let commits = 0;
    for (let at = 32; at + 24 + pageSize <= wal.length; at += 24 + pageSize) {
      if (!wal.subarray(at + 8, at + 16).equals(salt)) break;
      if (wal.readUInt32BE(at + 4) !== 0) commits++;
    }
    return commits;
  };
  const commitsDuring = async (fn: () => Promise<unknown>): Promise<number> => {
    const before = walCommits();
    await fn();
    return walCommits() - before;
  };

  it('commits transactions started in one turn with one COMMIT; each sees the writes of those before it; each resolves after the COMMIT', async () => {
    const order: string[] = [];
    const commits = await commitsDuring(async () => {
      const a = storage.transaction(async (tx) => tx.requests.insert(request('req_a'))).then(() => order.push('a'));
      const b = storage.transaction(async (tx) => {
        await tx.requests.insert(request('req_b'));
        return (await tx.requests.get('req_a'))?.id;
      });
      const c = storage.transaction(async (tx) => tx.requests.insert(request('req_c'))).then(() => order.push('c'));
      expect(await b).toBe('req_a');
      await Promise.all([a, c]);
    });
    expect(commits).toBe(1);
    expect(order).toEqual(['a', 'c']);
    for (const id of ['req_a', 'req_b', 'req_c']) expect((await storage.requests.get(id))?.id).toBe(id);
  });

  it('rolls back a failing transaction alone: the others of its group commit, its error and rollback hooks are its own', async () => {
    const boom = new Error('boom');
    const hooks: string[] = [];
    const results = await Promise.allSettled([
      storage.transaction(async (tx) => {
        await tx.requests.insert(request('req_a'));
        tx.afterCommit(() => hooks.push('a committed'));
      }),
      storage.transaction(async (tx) => {
        await tx.requests.insert(request('req_b'));
        tx.afterRollback(() => hooks.push('b rolled back'));
        throw boom;
      }),
      storage.transaction(async (tx) => tx.requests.insert(request('req_a'))),
      storage.transaction(async (tx) => tx.requests.insert(request('req_c'))),
    ]);
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'rejected', 'fulfilled']);
    expect((results[1] as PromiseRejectedResult).reason).toBe(boom);
    expect((results[2] as PromiseRejectedResult).reason).toBeInstanceOf(StorageUniqueError);
    expect(hooks.sort()).toEqual(['a committed', 'b rolled back']);
    expect(await storage.requests.get('req_b')).toBeUndefined();
    expect((await storage.requests.get('req_a'))?.id).toBe('req_a');
    expect((await storage.requests.get('req_c'))?.id).toBe('req_c');
  });

  it('a COMMIT that fails rejects every transaction of the group, runs their rollback hooks, and writes nothing of it', async () => {
    const db = sqliteDatabase(storage);
    // A deferred foreign key is checked at COMMIT: a row written by one transaction of the group fails the COMMIT.
    db.exec('CREATE TABLE parent (id TEXT PRIMARY KEY); CREATE TABLE child (id TEXT, parent TEXT REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED)');
    const hooks: string[] = [];
    const results = await Promise.allSettled([
      storage.transaction(async (tx) => {
        await tx.requests.insert(request('req_a'));
        tx.afterRollback(() => hooks.push('a'));
      }),
      storage.transaction(async (tx) => {
        db.prepare("INSERT INTO child VALUES ('c', 'no such parent')").run();
        tx.afterRollback(() => hooks.push('b'));
      }),
    ]);
    expect(results.map((r) => r.status)).toEqual(['rejected', 'rejected']);
    expect(String((results[0] as PromiseRejectedResult).reason)).toMatch(/FOREIGN KEY/);
    expect(hooks).toEqual(['a', 'b']);
    expect(await storage.requests.get('req_a')).toBeUndefined();
    // And the storage goes on.
    await storage.transaction(async (tx) => tx.requests.insert(request('req_d')));
    expect((await storage.requests.get('req_d'))?.id).toBe('req_d');
  });

  it('a call outside a transaction made while a group is open waits for its COMMIT, never reading or joining it', async () => {
    const db = sqliteDatabase(storage);
    const seen: string[] = [];
    const a = storage.transaction(async (tx) => tx.requests.insert(request('req_a'))).then(() => seen.push('a committed'));
    // The group is open (its transaction holds req_a, uncommitted); these wait for its COMMIT.
    expect(db.inTransaction).toBe(true);
    const read = storage.requests.get('req_a').then((r) => seen.push(`read ${r?.id ?? 'nothing'}`));
    const write = storage.requests.insert(request('req_b')).then(() => seen.push(`write, in a transaction: ${db.inTransaction}`));
    await Promise.all([a, read, write]);
    expect(seen).toEqual(['a committed', 'read req_a', 'write, in a transaction: false']);
  });

  it('close() commits an open group first', async () => {
    const a = storage.transaction(async (tx) => tx.requests.insert(request('req_a')));
    await storage.close();
    await a;
    storage = openSqliteStorage(join(dir, 'jit.db'));
    expect((await storage.requests.get('req_a'))?.id).toBe('req_a');
  });

  it('commits even while a test fakes the global setImmediate (the engine schedules with node:timers)', async () => {
    vi.useFakeTimers({ toFake: ['setImmediate'] });
    try {
      await storage.transaction(async (tx) => tx.requests.insert(request('req_a')));
    } finally {
      vi.useRealTimers();
    }
    expect((await storage.requests.get('req_a'))?.id).toBe('req_a');
  });

  it('transactions in separate turns commit separately (the control for the first test)', async () => {
    const commits = await commitsDuring(async () => {
      await storage.transaction(async (tx) => tx.requests.insert(request('req_a')));
      await new Promise((r) => setImmediate(r));
      await storage.transaction(async (tx) => tx.requests.insert(request('req_b')));
    });
    expect(commits).toBe(2);
  });
});

describe('SQLite engine: hooks and close', () => {
  it('a commit hook that throws is reported, the other hooks run, and the committed transaction resolves', async () => {
    const reported: [unknown, string][] = [];
    const storage = openSqliteStorage(':memory:', { onHookError: (err, after) => reported.push([err, after]) });
    const bad = new Error('hook failed');
    const ran: string[] = [];
    const result = await storage.transaction(async (tx) => {
      await tx.requests.insert(request('req_a'));
      tx.afterCommit(() => {
        throw bad;
      });
      tx.afterCommit(() => ran.push('second'));
      return 'done';
    });
    expect(result).toBe('done');
    expect(ran).toEqual(['second']);
    expect(reported).toEqual([[bad, 'commit']]);
    expect((await storage.requests.get('req_a'))?.status).toBe('pending');
    await storage.close();
  });

  it('a rollback hook that throws does not hide the callback\'s error', async () => {
    const reported: [unknown, string][] = [];
    const storage = openSqliteStorage(':memory:', { onHookError: (err, after) => reported.push([err, after]) });
    const original = new Error('the real failure');
    const bad = new Error('hook failed');
    await expect(
      storage.transaction(async (tx) => {
        await tx.requests.insert(request('req_a'));
        tx.afterRollback(() => {
          throw bad;
        });
        throw original;
      }),
    ).rejects.toBe(original);
    expect(reported).toEqual([[bad, 'rollback']]);
    expect(await storage.requests.get('req_a')).toBeUndefined();
    await storage.close();
  });

  it('close() waits for the open transaction, and closes anyway (rolling it back) when it outlasts the lock wait', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'jit-storage-'));
    const path = join(dir, 'jit.db');
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    try {
      const storage = openSqliteStorage(path);
      const { wrote, release, running } = transactionHeldOpen(storage);
      await wrote;
      const closed = storage.close();
      const outcome = closed.then(() => 'closed', (err: unknown) => err);
      await vi.advanceTimersByTimeAsync(BUSY_TIMEOUT_MS - 1);
      expect(sqliteDatabase(storage).open).toBe(true);
      await vi.advanceTimersByTimeAsync(1);
      expect(await outcome).toBeInstanceOf(StorageBusyError);
      expect(sqliteDatabase(storage).open).toBe(false);
      release();
      await expect(running).rejects.toThrow();
      await storage.close(); // again: nothing to do
      const reopened = openSqliteStorage(path);
      expect(await reopened.requests.get('req_a')).toBeUndefined();
      await reopened.close();
    } finally {
      vi.useRealTimers();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('openStorage (the one place the engine is chosen)', () => {
  it('opens SQLite, checkpointing in the background for the service, inline for tools', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'jit-storage-'));
    const config = { dbPath: join(dir, 'jit.db') };
    try {
      for (const [role, pages] of [['service', BACKGROUND_AUTOCHECKPOINT_PAGES], ['tool', 1000], [undefined, 1000]] as const) {
        const storage = await openStorage(config, role ? { role } : {});
        expect(storage.engine).toBe('sqlite');
        expect(sqliteDatabase(storage).pragma('wal_autocheckpoint', { simple: true })).toBe(pages);
        await storage.close();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('reports a throwing hook on the log it was given', async () => {
    const errors: string[] = [];
    const storage = await openStorage({ dbPath: ':memory:' }, { log: { error: (_obj: unknown, msg?: string) => void errors.push(msg ?? '') } as never });
    await storage.transaction(async (tx) => tx.afterCommit(() => {
      throw new Error('hook failed');
    }));
    expect(errors).toEqual([expect.stringContaining('commit hook threw')]);
    await storage.close();
  });

  it('maintains a file database in the service: warns of loose modes, runs the checkpointer until stopped', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'jit-storage-'));
    const path = join(dir, 'jit.db');
    try {
      const storage = await openStorage({ dbPath: path }, { role: 'service' });
      chmodSync(path, 0o644);
      const warnings: unknown[] = [];
      const log = { warn: (obj: unknown) => void warnings.push(obj), error: () => {}, info: () => {} } as never;
      const maintenance = storage.maintain(log);
      expect(warnings).toEqual([{ loose: [`${path} is 0644`] }]);
      await maintenance.stop();
      await maintenance.stop();
      await storage.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('SQLite engine: two connections to one file (two processes)', () => {
  it('wait for each other without stopping the event loop: their transactions serialise and one move wins', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'jit-storage-'));
    const a = openSqliteStorage(join(dir, 'jit.db'));
    const b = openSqliteStorage(join(dir, 'jit.db'));
    try {
      await a.requests.insert({ id: 'req_a', agent_id: 'agt', agent_name: 'n', resource: 'vault', tier: 2, required_tier: 2, status: 'pending', reason: 'r', scope: '{}', ttl_seconds: 60, session_key: null, rules: '[]', idempotency_key: null, body_hash: null, created_at: 1, updated_at: 1, approval_expires_at: null, claim_expires_at: null, decided_by: null, decided_at: null, decision_reason: null, failure: null });
      let ticks = 0;
      const ticker = setInterval(() => ticks++, 1);
      // Each transaction yields between its statements, so the other connection's BEGIN finds the lock taken.
      const results = await Promise.all(
        [a, b, a, b].map((s, i) =>
          s.transaction(async (tx) => {
            const r = await tx.requests.get('req_a');
            await new Promise((resolve) => setTimeout(resolve, 5)); // test only: hold the write lock a while
            return r?.status === 'pending' && (await tx.requests.move('req_a', 'pending', i % 2 ? 'denied' : 'approved', 2));
          }),
        ),
      );
      clearInterval(ticker);
      expect(results.filter(Boolean)).toHaveLength(1);
      expect(['approved', 'denied']).toContain((await b.requests.get('req_a'))?.status);
      expect(ticks).toBeGreaterThan(0);
      // A write outside a transaction waits for the other connection's transaction too.
      await Promise.all([
        a.transaction(async (tx) => {
          await tx.rateLimits.record('agt', 5);
          await new Promise((resolve) => setTimeout(resolve, 20));
        }),
        b.rateLimits.record('agt', 6),
      ]);
      expect(await a.rateLimits.nthNewestSince('agt', 0, 2)).toBe(5);
    } finally {
      await a.close();
      await b.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('SQLite engine: nesting check (JIT_STORAGE_NESTING_CHECK=1, set by vitest.config.ts)', () => {
  it('refuses, at once, a call on the storage or a second transaction from inside a transaction callback', async () => {
    expect(process.env['JIT_STORAGE_NESTING_CHECK']).toBe('1');
    const storage = openSqliteStorage(':memory:');
    await expect(storage.transaction(() => storage.requests.get('req_a'))).rejects.toThrow(/inside a transaction callback/);
    await expect(storage.transaction(() => storage.transaction(async () => 1))).rejects.toThrow(/not reentrant/);
    // Outside any callback, both work.
    expect(await storage.requests.get('req_a')).toBeUndefined();
    expect(await storage.transaction(async (tx) => tx.requests.get('req_a'))).toBeUndefined();
    await storage.close();
  });
});

describe('FifoLock', () => {
  it('hands the lock over in arrival order, and a waiter past its wait gets StorageBusyError', async () => {
    const lock = new FifoLock(50);
    expect(lock.tryAcquire()).toBe(true);
    expect(lock.tryAcquire()).toBe(false);
    const order: number[] = [];
    const waiters = [1, 2, 3].map((n) => lock.acquire().then(() => order.push(n)));
    lock.release();
    await waiters[0];
    lock.release();
    await waiters[1];
    lock.release();
    await waiters[2];
    expect(order).toEqual([1, 2, 3]);
    const late = lock.acquire();
    await expect(late).rejects.toBeInstanceOf(StorageBusyError);
    lock.release();
    expect(lock.held).toBe(false);
  });
});
