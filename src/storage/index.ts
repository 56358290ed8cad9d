import type { Logger } from '../lib/logger.ts';
import { openPostgresStorage } from './postgres/index.ts';
import { shownDatabaseUrl } from './postgres/pool.ts';
import { openSqliteStorage } from './sqlite/index.ts';
import type { Storage } from './storage.ts';

export * from './rows.ts';
export * from './errors.ts';
export type * from './storage.ts';

/** What opening the database takes from the configuration (config/: JIT_DATABASE_URL, else JIT_DB). */
export interface StorageConfig {
  readonly dbPath: string;
  /** A postgres:// URL: PostgreSQL instead of the SQLite file at `dbPath`. */
  readonly databaseUrl?: string | undefined;
}

export interface OpenStorageOptions {
  /**
   * Who opens it. `'service'`: the broker (`jit serve`), which also runs the
   * engine's upkeep (`storage.maintain`). `'tool'` (the default): the CLI and tests, short
   * runs; the engine does what upkeep it needs as it goes.
   */
  role?: 'service' | 'tool';
  /** Where a commit or rollback hook that threw is reported (default: a process warning). */
  log?: Pick<Logger, 'error'>;
}

/**
 * Opens (creating and migrating) the configured database: the one place
 * the broker's processes (main.ts, cli/context.ts)
 * choose the storage engine. PostgreSQL when JIT_DATABASE_URL is set
 * (several brokers may share it), else SQLite at JIT_DB. Rejects with
 * StorageOpenError (one line naming JIT_DATABASE_URL, no password) when
 * PostgreSQL cannot be opened.
 */
export async function openStorage(config: StorageConfig, opts: OpenStorageOptions = {}): Promise<Storage> {
  const { log } = opts;
  const onHookError = log ? { onHookError: (err: unknown, after: 'commit' | 'rollback') => log.error({ err }, `a storage ${after} hook threw (the transaction's outcome stands)`) } : {};
  if (config.databaseUrl) return openPostgresStorage(config.databaseUrl, onHookError);
  return openSqliteStorage(config.dbPath, {
    // A long-running service checkpoints SQLite's WAL off the event loop (its maintenance).
    checkpoint: opts.role === 'service' ? 'background' : 'auto',
    ...onHookError,
  });
}

/** Where the configured database is, as it may be shown (logs, warnings): the file, or the URL without user, password or query. */
export function describeDatabase(config: StorageConfig): string {
  return config.databaseUrl ? shownDatabaseUrl(config.databaseUrl) : config.dbPath;
}
