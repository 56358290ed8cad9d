import type { Config } from '../config/config.ts';
import type { Db } from '../db/open.ts';
import type { Clock } from '../lib/clock.ts';
import type { IdGenerator } from '../lib/ids.ts';
import type { Logger } from '../lib/logger.ts';
import type { BrokerMetrics } from '../metrics/metrics.ts';
import type { VaultClient } from '../vault/types.ts';
import type { KeyRing } from '../keys/key-ring.ts';
import type { AgentStore } from './agents.ts';
import type { AuditLog } from './audit.ts';
import type { DecisionSink } from './events.ts';
import type { PolicyStore } from './policy/index.ts';
import type { Repository } from './repository.ts';

/** Everything the verbs need, built once in main.ts (or a test) and passed down. */
export interface BrokerDeps {
  config: Config;
  db: Db;
  repo: Repository;
  audit: AuditLog;
  agents: AgentStore;
  policies: PolicyStore;
  vault: VaultClient;
  /** Ed25519 keys: gate credentials (EdDSA JWTs) and webhook signatures. */
  keys: KeyRing;
  clock: Clock;
  ids: IdGenerator;
  log: Logger;
  /** Decision events, written in the deciding transaction (the webhook outbox). */
  events: DecisionSink;
  /** Prometheus metrics of this broker (its own registry), served at GET /metrics. */
  metrics: BrokerMetrics;
}
