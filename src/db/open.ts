import Database from 'better-sqlite3';
import { mkdirSync, readdirSync, readFileSync } from 'node:fs';
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
 * for tests.
 */
export function openDatabase(path: string, opts: OpenOptions = {}): Db {
  if (path !== ':memory:') mkdirSync(dirname(path), { recursive: true });
  const db = new Database(path);
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = NORMAL');
  db.pragma('foreign_keys = ON');
  db.pragma('busy_timeout = 5000');
  // 16 MB of page cache (SQLite's default is 2 MB), allocated as used.
  db.pragma('cache_size = -16000');
  db.pragma('temp_store = MEMORY');
  if (opts.checkpoint === 'background') db.pragma(`wal_autocheckpoint = ${BACKGROUND_AUTOCHECKPOINT_PAGES}`);
  immediateByDefault(db);
  migrate(db);
  return db;
}

/**
 * Makes `db.transaction(fn)()` run as BEGIN IMMEDIATE. Nearly every
 * transaction here reads before it writes (a conditional update, the audit
 * chain's last hash), and SQLite refuses to upgrade a deferred transaction's
 * read lock while another connection writes: it fails at once with
 * SQLITE_BUSY instead of waiting `busy_timeout`. Taking the write lock at
 * BEGIN makes a second process (the CLI, another broker) wait its turn.
 */
function immediateByDefault(db: Db): void {
  const original = db.transaction.bind(db);
  db.transaction = ((fn: Parameters<Db['transaction']>[0]) => {
    const t = original(fn);
    return Object.assign((...args: unknown[]) => t.immediate(...args), {
      default: t.immediate,
      deferred: t.deferred,
      immediate: t.immediate,
      exclusive: t.exclusive,
      database: db,
    });
  }) as Db['transaction'];
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
