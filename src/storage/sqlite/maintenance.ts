import type { Logger } from '../../lib/logger.ts';
import type { StorageMaintenance } from '../storage.ts';
import { startCheckpointer } from './checkpointer.ts';
import { looseDatabaseModes } from './open.ts';

/**
 * The SQLite engine's upkeep in the service: a warning for database files
 * other local users can read or write (docs/security.md), and the WAL
 * checkpointer (checkpointer.ts), started for the database at `path`.
 */
export function startSqliteMaintenance(path: string, log: Logger): StorageMaintenance {
  const loose = looseDatabaseModes(path);
  if (loose.length > 0) log.warn({ loose }, 'other local users can read or write the database: chmod 700 its directory and 600 its files, or move JIT_DB to a private directory (docs/security.md)');
  const checkpointer = startCheckpointer({ dbPath: path, log });
  return { stop: () => checkpointer.stop() };
}
