import type { Config } from './config/config.ts';
import { createAgentStore } from './broker/agents.ts';
import { createAuditLog } from './broker/audit.ts';
import type { BrokerDeps } from './broker/deps.ts';
import { PolicyStore } from './broker/policy/index.ts';
import { createRepository } from './broker/repository.ts';
import type { Db } from './db/open.ts';
import { systemClock, type Clock } from './lib/clock.ts';
import { createIdGenerator, type IdGenerator } from './lib/ids.ts';
import type { Logger } from './lib/logger.ts';
import type { VaultClient } from './vault/types.ts';

/** Wires the broker's parts together; main.ts and the tests both build deps here. */
export function createDeps(parts: {
  config: Config;
  db: Db;
  vault: VaultClient;
  policies: PolicyStore;
  log: Logger;
  clock?: Clock;
  ids?: IdGenerator;
}): BrokerDeps {
  const clock = parts.clock ?? systemClock;
  const ids = parts.ids ?? createIdGenerator(() => clock.now());
  const audit = createAuditLog(parts.db);
  return {
    config: parts.config,
    db: parts.db,
    repo: createRepository(parts.db),
    audit,
    agents: createAgentStore({ db: parts.db, audit, clock, ids }),
    policies: parts.policies,
    vault: parts.vault,
    clock,
    ids,
    log: parts.log,
  };
}
