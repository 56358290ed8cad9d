import type { Config } from '../config/config.ts';
import type { Storage } from '../storage/storage.ts';
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

/** Everything the verbs need, built once in main.ts (or a test) and passed down. */
export interface BrokerDeps {
  config: Config;
  /** The database, behind the storage interface (src/storage/): every read and write goes through it. */
  storage: Storage;
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
  /**
   * This serving broker's node id (node.ts): recorded on the credential rows
   * it mints, whose lease tells the other brokers it is alive. Unset in
   * processes that hold no node lease (the CLI; tests that build deps by hand).
   */
  nodeId?: string;
}

/**
 * The database side of the broker: what the service and the offline CLI
 * commands (agent, approve, deny, requests, audit) share, so both write
 * state, audit and outbox the same way (built by create-deps.ts).
 */
export type StorageDeps = Pick<BrokerDeps, 'config' | 'storage' | 'audit' | 'agents' | 'clock' | 'ids' | 'events'>;
