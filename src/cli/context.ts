import { loadConfig, type Config } from '../config/config.ts';
import { createStorageDeps, type StorageDeps } from '../create-deps.ts';
import { openDatabase, type Db } from '../db/open.ts';
import type { CliIo } from './io.ts';

/** The database-side parts an offline CLI command needs, from the service's own environment. */
export function openCliContext(io: CliIo): { config: Config; db: Db; deps: StorageDeps; close(): void } & Pick<StorageDeps, 'agents' | 'repo' | 'audit'> {
  const config = loadConfig(io.env);
  const db = openDatabase(config.dbPath);
  const deps = createStorageDeps({ config, db });
  return { config, db, deps, agents: deps.agents, repo: deps.repo, audit: deps.audit, close: () => db.close() };
}
