import { loadConfig, type Config } from '../config/config.ts';
import { createAgentStore } from '../broker/agents.ts';
import { createAuditLog } from '../broker/audit.ts';
import { createRepository } from '../broker/repository.ts';
import { openDatabase, type Db } from '../db/open.ts';
import { systemClock } from '../lib/clock.ts';
import { createIdGenerator } from '../lib/ids.ts';
import type { CliIo } from './io.ts';

/** The database-side parts an offline CLI command needs, from the service's own environment. */
export function openCliContext(io: CliIo): { config: Config; db: Db; close(): void } & ReturnType<typeof stores> {
  const config = loadConfig(io.env);
  const db = openDatabase(config.dbPath);
  return { config, db, ...stores(db), close: () => db.close() };
}

function stores(db: Db) {
  const audit = createAuditLog(db);
  const ids = createIdGenerator();
  return { audit, repo: createRepository(db), agents: createAgentStore({ db, audit, clock: systemClock, ids }) };
}
