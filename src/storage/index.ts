import type { Logger } from '../lib/logger.ts';
import { openSqliteStorage } from './sqlite/index.ts';
import type { Storage } from './storage.ts';

export * from './rows.ts';
export * from './errors.ts';
export type * from './storage.ts';

/** What opening the database takes from the configuration (config/: JIT_DB). */
export interface StorageConfig {
  readonly dbPath: string;
}

export interface OpenStorageOptions {
  /**
   * Who opens it. `'service'`: the broker's primary, which also runs the
   * engine's upkeep (`storage.maintain`). `'worker'`: an HTTP worker beside
   * a primary that does. `'tool'` (the default): the CLI and tests, short
   * runs; the engine does what upkeep it needs as it goes.
   */
  role?: 'service' | 'worker' | 'tool';
  /** Where a commit or rollback hook that threw is reported (default: a process warning). */
  log?: Pick<Logger, 'error'>;
}

/**
 * Opens (creating and migrating) the configured database: the one place
 * the broker's processes (main.ts, cluster/worker.ts, cli/context.ts)
 * choose the storage engine. SQLite today.
 */
export function openStorage(config: StorageConfig, opts: OpenStorageOptions = {}): Storage {
  const { log } = opts;
  return openSqliteStorage(config.dbPath, {
    // A long-running service checkpoints SQLite's WAL off the event loop (the primary's maintenance).
    checkpoint: opts.role === 'service' || opts.role === 'worker' ? 'background' : 'auto',
    ...(log ? { onHookError: (err: unknown, after: 'commit' | 'rollback') => log.error({ err }, `a storage ${after} hook threw (the transaction's outcome stands)`) } : {}),
  });
}
