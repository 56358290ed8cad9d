import type { Config } from './config/config.ts';
import { createAgentStore } from './broker/agents.ts';
import { createAuditLog } from './broker/audit.ts';
import type { BrokerDeps, StorageDeps } from './broker/deps.ts';
import { noDecisionSink, type DecisionSink } from './broker/events.ts';
import type { PolicyStore } from './broker/policy/index.ts';
import type { Storage } from './storage/storage.ts';
import { systemClock, type Clock } from './lib/clock.ts';
import { createIdGenerator, type IdGenerator } from './lib/ids.ts';
import type { Logger } from './lib/logger.ts';
import { createMetrics, instrumentVault, metricsDecisionSink, type BrokerMetrics } from './metrics/index.ts';
import type { VaultClient } from './vault/types.ts';
import { createKeyRing, type KeyRing } from './keys/key-ring.ts';

export type { StorageDeps };

/**
 * The database side of the broker: what the service and the offline CLI
 * commands (agent, approve, deny, requests, audit) share, so both write
 * state, audit and outbox the same way.
 */
export function createStorageDeps(parts: { config: Config; storage: Storage; clock?: Clock; ids?: IdGenerator; events?: DecisionSink; onAuditCommit?: () => void }): StorageDeps {
  const clock = parts.clock ?? systemClock;
  const ids = parts.ids ?? createIdGenerator(() => clock.now());
  const audit = createAuditLog(parts.storage, parts.onAuditCommit ? { onCommit: parts.onAuditCommit } : {});
  return {
    config: parts.config,
    storage: parts.storage,
    audit,
    agents: createAgentStore({ storage: parts.storage, audit, clock, ids }),
    clock,
    ids,
    events: parts.events ?? noDecisionSink,
  };
}

/** Wires the broker's parts together; main.ts and the tests both build deps here. */
export function createDeps(parts: {
  config: Config;
  storage: Storage;
  vault: VaultClient;
  policies: PolicyStore;
  log: Logger;
  clock?: Clock;
  ids?: IdGenerator;
  events?: DecisionSink;
  keys?: KeyRing;
  /** Default: a fresh registry for this broker. Vault calls and recorded decisions are counted into it. */
  metrics?: BrokerMetrics;
  /** Runs after each commit that wrote an audit entry about a request (wakes the decision streams). */
  onAuditCommit?: () => void;
  /** The serving broker's node id (broker/node.ts), when it holds a node lease. */
  nodeId?: string;
}): BrokerDeps {
  const metrics = parts.metrics ?? createMetrics({ storage: parts.storage });
  const storage = createStorageDeps({ ...parts, events: metricsDecisionSink(parts.events ?? noDecisionSink, metrics) });
  return {
    ...storage,
    policies: parts.policies,
    vault: instrumentVault(parts.vault, metrics),
    keys: parts.keys ?? createKeyRing({ config: parts.config, clock: storage.clock, log: parts.log }),
    log: parts.log,
    metrics,
    ...(parts.nodeId ? { nodeId: parts.nodeId } : {}),
  };
}
