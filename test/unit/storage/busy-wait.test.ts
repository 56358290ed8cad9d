import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { openDatabase, type Db } from '../../../src/storage/sqlite/open.ts';

/** Another connection (a worker thread, as another process would be) holds the write lock for `ms`. */
function holdWriteLock(path: string, ms: number): Promise<{ locked: Promise<void>; done: Promise<void> }> {
  const worker = new Worker(
    `const Database = require(${JSON.stringify(require.resolve('better-sqlite3'))});
     const { parentPort, workerData } = require('node:worker_threads');
     const db = new Database(workerData.path);
     db.exec('BEGIN IMMEDIATE');
     parentPort.postMessage('locked');
     Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, workerData.ms);
     db.exec('COMMIT');
     db.close();
     parentPort.postMessage('released');`,
    { eval: true, workerData: { path, ms } },
  );
  let locked!: () => void;
  let released!: () => void;
  const l = new Promise<void>((r) => (locked = r));
  const d = new Promise<void>((r) => (released = r));
  worker.on('message', (m) => (m === 'locked' ? locked() : released()));
  return Promise.resolve({ locked: l, done: d });
}

let dir: string;
let db: Db;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'jit-busy-'));
  db = openDatabase(join(dir, 'jit.db'));
  db.exec('CREATE TABLE t (n INTEGER)');
});
afterEach(() => {
  vi.restoreAllMocks();
  db.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('a transaction waits for another connection\'s write lock', () => {
  it('runs its body once, after the lock is released', async () => {
    const other = await holdWriteLock(join(dir, 'jit.db'), 150);
    await other.locked;
    let runs = 0;
    const started = performance.now();
    db.transaction(() => {
      runs++;
      db.prepare('INSERT INTO t VALUES (1)').run();
    })();
    const waited = performance.now() - started;
    expect(runs).toBe(1);
    expect(waited).toBeGreaterThanOrEqual(100);
    expect(db.prepare('SELECT COUNT(*) FROM t').pluck().get()).toBe(1);
    await other.done;
    // The connection's own busy_timeout is back for statements outside transactions.
    expect(db.pragma('busy_timeout', { simple: true })).toBe(5000);
  });

  it('does not retry a body that itself failed', () => {
    let runs = 0;
    expect(() =>
      db.transaction(() => {
        runs++;
        throw Object.assign(new Error('database is locked'), { code: 'SQLITE_BUSY' });
      })(),
    ).toThrow('database is locked');
    expect(runs).toBe(1);
  });

  it('keeps better-sqlite3\'s transaction semantics: nesting, rollback, no promises', () => {
    const insert = db.prepare('INSERT INTO t VALUES (?)');
    const inner = db.transaction((n: number) => {
      insert.run(n);
      if (n === 2) throw new Error('inner failed');
    });
    db.transaction(() => {
      insert.run(1);
      inner(3);
      expect(() => inner(2)).toThrow('inner failed'); // only the savepoint is rolled back
    })();
    expect(db.prepare('SELECT n FROM t ORDER BY n').pluck().all()).toEqual([1, 3]);

    expect(() => db.transaction(() => { insert.run(9); throw new Error('outer failed'); })()).toThrow('outer failed');
    expect(() => db.transaction(async () => insert.run(10))()).toThrow(/cannot return a promise/);
    expect(db.inTransaction).toBe(false);
    expect(db.prepare('SELECT n FROM t ORDER BY n').pluck().all()).toEqual([1, 3]);
  });
});

describe('the busy wait around BEGIN IMMEDIATE', () => {
  /** better-sqlite3's Statement prototype (run/get are looked up there on every call). */
  const statementProto = () => Object.getPrototypeOf(db.prepare('SELECT 1')) as { run(...a: unknown[]): unknown; get(...a: unknown[]): unknown };

  it('retries an extended SQLITE_BUSY code (another connection running WAL recovery) as SQLite\'s own busy handler did', () => {
    const proto = statementProto();
    const run = proto.run;
    let refused = 0;
    vi.spyOn(proto, 'run').mockImplementation(function (this: { source: string }, ...args: unknown[]) {
      if (this.source === 'BEGIN IMMEDIATE' && refused < 2) {
        refused++;
        throw Object.assign(new Error('database is locked'), { code: 'SQLITE_BUSY_RECOVERY' });
      }
      return run.apply(this, args);
    });
    let runs = 0;
    db.transaction(() => {
      runs++;
      db.prepare('INSERT INTO t VALUES (1)').run();
    })();
    expect(refused).toBe(2);
    expect(runs).toBe(1);
    expect(db.prepare('SELECT COUNT(*) FROM t').pluck().get()).toBe(1);
  });

  it('leaves no transaction open when restoring busy_timeout fails after BEGIN succeeded', () => {
    const proto = statementProto();
    const get = proto.get;
    let failed = false;
    vi.spyOn(proto, 'get').mockImplementation(function (this: { source: string }, ...args: unknown[]) {
      if (!failed && this.source === 'PRAGMA busy_timeout = 5000' && db.inTransaction) {
        failed = true;
        throw Object.assign(new Error('out of memory'), { code: 'SQLITE_NOMEM' });
      }
      return get.apply(this, args);
    });
    let runs = 0;
    expect(() => db.transaction(() => runs++)()).toThrow('out of memory');
    expect(runs).toBe(0);
    expect(db.inTransaction).toBe(false);
    vi.restoreAllMocks();

    // The next transaction is a real one, committed and visible to another connection.
    db.transaction(() => db.prepare('INSERT INTO t VALUES (7)').run())();
    expect(db.inTransaction).toBe(false);
    const other = openDatabase(join(dir, 'jit.db'));
    try {
      expect(other.prepare('SELECT n FROM t').pluck().all()).toEqual([7]);
    } finally {
      other.close();
    }
    expect(db.pragma('busy_timeout', { simple: true })).toBe(5000);
  });
});
