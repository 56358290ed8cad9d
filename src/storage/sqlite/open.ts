import Database from 'better-sqlite3';
import { closeSync, mkdirSync, openSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export type Db = Database.Database;

const MIGRATIONS_DIR = join(dirname(fileURLToPath(import.meta.url)), 'migrations');

export interface OpenOptions {
  /**
   * Who checkpoints the WAL. `'auto'` (the default: CLI, tests): SQLite's
   * automatic checkpoint every 1,000 WAL pages, run inside whichever commit
   * crosses the mark. `'background'` (the broker, alongside
   * `startCheckpointer`): this connection's automatic checkpoint moves out
   * to {@link BACKGROUND_AUTOCHECKPOINT_PAGES}, a backstop that bounds the
   * WAL should the checkpointer die; it is not turned off.
   */
  checkpoint?: 'auto' | 'background';
}

/** ≈ 40 MB of 4 KiB pages: the main connection's autocheckpoint when a worker checkpoints. */
export const BACKGROUND_AUTOCHECKPOINT_PAGES = 10_000;

/**
 * Opens (creating if needed) the SQLite database in WAL mode and applies
 * pending numbered migrations, each in its own transaction. `:memory:` works
 * for tests. A database it creates is private to the broker's user: see
 * {@link createPrivately}.
 */
export function openDatabase(path: string, opts: OpenOptions = {}): Db {
  if (isFile(path)) createPrivately(path);
  const db = new Database(path);
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = NORMAL');
  db.pragma('foreign_keys = ON');
  db.pragma(`busy_timeout = ${BUSY_TIMEOUT_MS}`);
  // 16 MB of page cache (SQLite's default is 2 MB), allocated as used.
  db.pragma('cache_size = -16000');
  db.pragma('temp_store = MEMORY');
  if (opts.checkpoint === 'background') db.pragma(`wal_autocheckpoint = ${BACKGROUND_AUTOCHECKPOINT_PAGES}`);
  immediateByDefault(db);
  migrate(db);
  return db;
}

/** `:memory:` and `''` (a temporary database) have no file. */
function isFile(path: string): boolean {
  return path !== ':memory:' && path !== '';
}

/**
 * Creates the database's directory 0700 (and any missing parent) and the
 * database file 0600 if they do not exist, before SQLite would create the
 * file 0644 (less the umask). SQLite gives the -wal and -shm files the mode
 * of the database file, so they are 0600 too. The file holds token hashes,
 * the audit log and every request's reason: no other local user reads it.
 *
 * What exists is never changed: a directory may be shared (`.`, a home
 * directory), and the operator may have chosen its modes. The service warns
 * about loose ones instead ({@link looseDatabaseModes}).
 */
function createPrivately(path: string): void {
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  try {
    // 'wx': O_CREAT | O_EXCL, so an existing file is neither opened for writing nor altered.
    closeSync(openSync(path, 'wx', 0o600));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  }
}

/**
 * The database's directory and files (database, -wal, -shm) that other local
 * users may read or write, each as "PATH is MODE". The service logs them as
 * a warning at start; docs/security.md explains the fix.
 */
export function looseDatabaseModes(path: string): string[] {
  if (!isFile(path)) return [];
  const loose: string[] = [];
  for (const p of [dirname(path), path, `${path}-wal`, `${path}-shm`]) {
    let mode: number;
    try {
      mode = statSync(p).mode & 0o777;
    } catch {
      continue; // -wal and -shm exist only while a connection is open
    }
    if (mode & 0o077) loose.push(`${p} is ${mode.toString(8).padStart(4, '0')}`);
  }
  return loose;
}

/** How long a transaction waits for another connection's write lock before SQLITE_BUSY. */
export const BUSY_TIMEOUT_MS = 5_000;

/**
 * Makes `db.transaction(fn)()` run as BEGIN IMMEDIATE. Nearly every
 * transaction here reads before it writes (a conditional update, the audit
 * chain's last hash), and SQLite refuses to upgrade a deferred transaction's
 * read lock while another connection writes: it fails at once with
 * SQLITE_BUSY instead of waiting `busy_timeout`. Taking the write lock at
 * BEGIN makes a second process (the CLI, another broker) wait its turn.
 *
 * The wait is ours, not SQLite's: its busy handler sleeps 1 ms, then 2, 5,
 * 10 … with the whole event loop stopped, while a broker transaction holds
 * the lock for about 0.1 ms. With two broker processes contending, that halved
 * throughput. Here BEGIN is tried without waiting and retried after 25 µs,
 * doubling to 1 ms, for up to BUSY_TIMEOUT_MS. Only BEGIN waits: in WAL
 * mode a transaction that holds the write lock is never busy again, so a
 * body never runs twice.
 */
function immediateByDefault(db: Db): void {
  const original = db.transaction.bind(db);
  // The busy_timeout statements are prepared on first use, after the migrations: prepared before this
  // connection first read the schema (a database another connection created), they did not take effect.
  let noWait: Database.Statement | undefined;
  let wait: Database.Statement | undefined;
  let waitMs = BUSY_TIMEOUT_MS;
  const begin = db.prepare('BEGIN IMMEDIATE');
  const commit = db.prepare('COMMIT');
  const rollback = db.prepare('ROLLBACK');
  const savepoint = db.prepare('SAVEPOINT jit_nested');
  const release = db.prepare('RELEASE jit_nested');
  const rollbackTo = db.prepare('ROLLBACK TO jit_nested');

  /** BEGIN IMMEDIATE, retried without SQLite's coarse sleeps while another connection writes. */
  const acquire = (): void => {
    (noWait ??= db.prepare('PRAGMA busy_timeout = 0')).get();
    try {
      const deadline = performance.now() + BUSY_TIMEOUT_MS;
      for (let attempt = 0; ; attempt++) {
        try {
          begin.run();
          return;
        } catch (err) {
          // SQLITE_BUSY and its extended codes (SQLITE_BUSY_RECOVERY: another
          // connection is recovering the WAL), all of which SQLite's own busy
          // handler waits out.
          if (!isBusy(err) || performance.now() > deadline) throw err;
          pauseMs(Math.min(0.025 * 2 ** attempt, 1));
        }
      }
    } finally {
      (wait ??= db.prepare(`PRAGMA busy_timeout = ${waitMs}`)).get();
    }
  };

  // What better-sqlite3's transaction() does, without building a transaction
  // object on every call (the broker makes several per request).
  const run = (fn: (...a: unknown[]) => unknown, self: unknown, args: unknown[]): unknown => {
    if (db.inTransaction) {
      // Nested: a savepoint inside the transaction that already holds the lock.
      savepoint.run();
      try {
        const result = fn.apply(self, args);
        release.run();
        return result;
      } catch (err) {
        if (db.inTransaction) {
          rollbackTo.run();
          release.run();
        }
        throw err;
      }
    }
    try {
      // Inside the try: should restoring busy_timeout fail after BEGIN, the transaction is rolled back, not left open.
      acquire();
      const result = fn.apply(self, args);
      if (result !== null && typeof result === 'object' && typeof (result as { then?: unknown }).then === 'function') {
        throw new TypeError('Transaction function cannot return a promise');
      }
      commit.run();
      return result;
    } catch (err) {
      if (db.inTransaction) rollback.run();
      throw err;
    }
  };

  controls.set(db, {
    begin: acquire,
    tryBegin: () => {
      try {
        begin.run();
        return true;
      } catch (err) {
        if (isBusy(err)) return false;
        throw err;
      }
    },
    neverWait: () => {
      waitMs = 0;
      wait = undefined;
      db.pragma('busy_timeout = 0');
    },
    commit: () => commit.run(),
    rollback: () => {
      if (db.inTransaction) rollback.run();
    },
  });

  db.transaction = ((fn: (...a: unknown[]) => unknown) => {
    const immediate = function (this: unknown, ...args: unknown[]) {
      return run(fn, this, args);
    };
    return Object.assign(immediate, {
      default: immediate,
      immediate,
      deferred: (...args: unknown[]) => original(fn).deferred(...args),
      exclusive: (...args: unknown[]) => original(fn).exclusive(...args),
      database: db,
    });
  }) as unknown as Db['transaction'];
}

/** BEGIN IMMEDIATE (with the retry above), COMMIT and ROLLBACK of a connection opened here: what the asynchronous transaction uses. */
export interface TransactionControl {
  begin(): void;
  /** BEGIN IMMEDIATE once, without waiting: false when another connection holds the write lock. */
  tryBegin(): boolean;
  /**
   * From now on no statement of this connection waits for another's lock
   * (busy_timeout 0): the asynchronous storage waits for it without
   * stopping the event loop (storage.ts).
   */
  neverWait(): void;
  commit(): void;
  /** No-op when no transaction is open (SQLite ended it on an error). */
  rollback(): void;
}

const controls = new WeakMap<Db, TransactionControl>();

/** The transaction statements of a connection opened with {@link openDatabase}. */
export function transactionControl(db: Db): TransactionControl {
  const c = controls.get(db);
  if (!c) throw new Error('transactionControl: the connection was not opened with openDatabase');
  return c;
}

/** SQLITE_BUSY and its extended codes (SQLITE_BUSY_RECOVERY: another connection is recovering the WAL). */
export function isBusy(err: unknown): boolean {
  return /^SQLITE_BUSY/.test((err as { code?: unknown } | null)?.code as string);
}

const pauseCell = new Int32Array(new SharedArrayBuffer(4));
/** Blocks the thread for about `ms` (fractions allowed), as SQLite's own busy wait would, but finer. */
function pauseMs(ms: number): void {
  Atomics.wait(pauseCell, 0, 0, ms);
}

export function migrate(db: Db): void {
  db.exec(`CREATE TABLE IF NOT EXISTS schema_migrations (
    version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL) STRICT`);
  const applied = new Set(
    db.prepare('SELECT version FROM schema_migrations').pluck().all() as number[],
  );
  const files = readdirSync(MIGRATIONS_DIR).filter((f) => /^\d{4}_[a-z0-9_]+\.sql$/.test(f)).sort();
  for (const file of files) {
    const version = Number(file.slice(0, 4));
    if (applied.has(version)) continue;
    const sql = readFileSync(join(MIGRATIONS_DIR, file), 'utf8');
    db.transaction(() => {
      db.exec(sql);
      db.prepare('INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)').run(
        version,
        file.slice(5, -4),
        Date.now(),
      );
    })();
  }
}
