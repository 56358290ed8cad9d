import { ConfigError, loadConfig, type Config } from './config/config.ts';
import { requireStepUpReachable } from './broker/passkeys.ts';
import { recordServiceSettings } from './config/service-settings.ts';
import { createApprovalBot, type ApprovalBot, type ApprovalBotOptions } from './telegram/index.ts';
import { startAuditUpkeep } from './broker/audit-upkeep.ts';
import { startLifecycle } from './broker/lifecycle.ts';
import { newNodeId, startNodeLease } from './broker/node.ts';
import { InvalidPolicyFiles, PolicyStore, formatProblems } from './broker/policy/index.ts';
import { createDeps } from './create-deps.ts';
import type { BrokerDeps } from './broker/deps.ts';
import { describeDatabase, openStorage } from './storage/index.ts';
import { createServedApp } from './served-app.ts';
import { ListenError, listen, toListenError } from './http/listen.ts';
import type { Clock } from './lib/clock.ts';
import { createLogger, type Logger } from './lib/logger.ts';
import { randomToken } from './lib/secrets.ts';
import { StartedParts } from './lib/started-parts.ts';
import { startDevVault } from './vault/dev/index.ts';
import { createVaultClient } from './vault/node-vault-client.ts';
import { startVaultClient, vaultClientFromConfig } from './vault/from-config.ts';
import type { VaultClient } from './vault/types.ts';
import { systemClock } from './lib/clock.ts';
import { createIdGenerator } from './lib/ids.ts';
import { createDispatcher, type Dispatcher } from './webhooks/dispatcher.ts';
import { createMetrics } from './metrics/index.ts';
import { KeyRingError } from './keys/key-ring.ts';
import { openKeyRing, requireKeyEncryptionKey } from './keys/key-ring-db.ts';
import { createOutboxSink } from './webhooks/outbox.ts';
import { createRequestStreams, type RequestStreamOptions, type RequestStreams } from './broker/request-stream.ts';

export interface RunningBroker {
  url: string;
  deps: BrokerDeps;
  /** The webhook outbox dispatcher (tests drain it by hand). */
  dispatcher: Dispatcher;
  /** The Telegram approval bot, when configured. */
  telegram?: ApprovalBot;
  /** Set in dev mode: the in-process development Vault. */
  devVault?: { url: string; rootToken: string };
  /** In dev mode on first start: the token of agent `dev`. */
  devAgentToken?: string;
  /** This process's decision streams (GET /jit/requests/{id}/events). */
  streams: RequestStreams;
  reloadPolicies(): boolean;
  stop(): Promise<void>;
}

export interface StartOptions {
  /** Overrides for tests: a clock, a logger, the sweep interval. */
  clock?: Clock;
  log?: Logger;
  sweepIntervalMs?: number;
  /** Overrides of the approval bot's timings (tests make them short). */
  telegram?: Partial<Pick<ApprovalBotOptions, 'syncIntervalMs' | 'pollTimeoutSeconds' | 'callTimeoutSeconds' | 'retry' | 'restartDelayMs' | 'errorBackoffMs'>>;
  /** Where dev-mode banners go (the console for `jit serve`). */
  print?: (line: string) => void;
  /** The decision streams' audit poll and heartbeat intervals (tests make the heartbeat short). */
  streams?: Pick<RequestStreamOptions, 'pollMs' | 'heartbeatMs'>;
}

/** The dev agent's session key: policies/homelab.yaml's `default_session` for it, inside its `hook:jit:dev:*`. */
export const DEV_SESSION_KEY = 'hook:jit:dev:main';

/** The demo secret dev mode seeds so the README walkthrough has something to read. */
export const DEV_SEED = { path: 'homelab/data/docker/registry', data: { username: 'demo', password: 'dev-only-not-a-secret' } };

/**
 * Starts the broker: loadConfig → (dev Vault) → createDeps → createApp →
 * listen, then the lifecycle timers. The only place that reads
 * `process.env` is the caller, which passes it in.
 */
export async function startBroker(env: Record<string, string | undefined>, opts: StartOptions = {}): Promise<RunningBroker> {
  const config = loadConfig(env);
  requireKeyEncryptionKey(config);
  requireStepUpReachable(config);
  // Dev mode is a convenience for trying the broker; reached by accident in production it would issue
  // credentials from an in-memory Vault nobody else trusts, and print a fresh agent token to the journal.
  if (!config.vault && config.production) {
    throw new ConfigError('VAULT_ADDR', 'not set, and NODE_ENV=production: dev mode never starts in production; set VAULT_ADDR and the broker\'s Vault credentials (unset NODE_ENV to try dev mode)');
  }
  const started = new StartedParts();
  try {
    return await startParts(env, config, opts, started);
  } catch (err) {
    // A start that fails half-way releases every port, timer and file it took, so the process can exit.
    await started.stopAll();
    throw err;
  }
}

/** startBroker after the configuration: each part is added to `started` as soon as it runs. */
async function startParts(env: Record<string, string | undefined>, config: Config, opts: StartOptions, started: StartedParts): Promise<RunningBroker> {
  const log = opts.log ?? createLogger(config.logLevel);
  const print = opts.print ?? (() => {});

  let loaded;
  try {
    loaded = PolicyStore.load(config.policiesDir);
  } catch (err) {
    if (err instanceof InvalidPolicyFiles) throw new StartupError(err.message);
    throw err;
  }
  const { policies } = loaded;
  if (loaded.warnings.length > 0) log.warn({ warnings: formatProblems(loaded.warnings) }, 'policy warnings');

  let devVault: Awaited<ReturnType<typeof startDevVault>> | undefined;
  let vault: VaultClient;
  if (config.vault) {
    vault = vaultClientFromConfig(config.vault, { log, ...(opts.clock ? { clock: opts.clock } : {}) });
  } else {
    const host = '127.0.0.1';
    const dev = await startDevVault({ host, port: config.devVaultPort, rootToken: `hvs.dev-${randomToken(12)}`, ...(opts.clock ? { clock: opts.clock } : {}) }).catch((err: unknown) => {
      throw toStartupError(toListenError(err, host, config.devVaultPort, { what: 'the development Vault', hint: 'set JIT_DEV_VAULT_PORT' }));
    });
    started.add(() => dev.close());
    devVault = dev;
    await seedDevVault(devVault.url, devVault.rootToken);
    vault = createVaultClient({ endpoint: devVault.url, token: devVault.rootToken }, { log, ...(opts.clock ? { clock: opts.clock } : {}) });
    print(`DEVELOPMENT MODE: in-memory development Vault at ${devVault.url} (not for production; set VAULT_ADDR to use a real Vault)`);
  }
  started.add(() => vault.stop());
  await startVaultClient(vault, log);

  const clock = opts.clock ?? systemClock;
  const storage = await openStorage(config, { role: 'service', log });
  started.add(() => storage.close());
  let keys;
  try {
    // PostgreSQL: the ring shared by every broker on the database (sealed under JIT_KEY_ENCRYPTION_KEY); SQLite: the key file.
    keys = await openKeyRing({ config, store: storage.signingKeys, clock, log });
  } catch (err) {
    if (err instanceof KeyRingError) throw new StartupError(`signing keys: ${err.message}`);
    throw err;
  }
  const ring = keys;
  started.add(() => ring.stop());
  // This broker's node id and lease (broker/node.ts): released last, once nothing of this node mints any more.
  const node = await startNodeLease({ storage, clock, log, id: newNodeId(), ttlMs: config.nodeLeaseSeconds * 1000 });
  started.add(() => node.stop());
  log.info({ node_id: node.id, lease_seconds: config.nodeLeaseSeconds }, 'node lease taken');
  const maintenance = storage.maintain(log);
  started.add(() => maintenance.stop());
  const ids = createIdGenerator(() => clock.now());
  const metrics = createMetrics({ storage });
  const dispatcher = createDispatcher({ storage, clock, log, keyRing: keys, config, policies, onOutcome: (outcome, target) => metrics.webhookDelivery(outcome, target) });
  const events = createOutboxSink({ storage, policies, ids, log, notify: () => dispatcher.notify() });
  const streams = createRequestStreams({ storage, log, maxPerAgent: config.maxStreams, ...opts.streams });
  metrics.setStreamSource(() => streams.openCount());
  const deps = createDeps({ config, storage, vault, policies, log, clock, ids, events, keys, metrics, onAuditCommit: () => streams.wake(), nodeId: node.id });
  // Stopped after every audit writer (LIFO): the suppressed counts, then the signed chain head.
  const auditUpkeep = startAuditUpkeep(deps, { primary: true });
  started.add(() => auditUpkeep.stop());
  started.add(() => dispatcher.stop());
  let telegram: ApprovalBot | undefined;
  if (config.telegram) {
    let bot: ApprovalBot;
    try {
      bot = createApprovalBot({ deps, ...opts.telegram });
    } catch (err) {
      if (err instanceof ConfigError) throw err;
      throw new StartupError(`telegram: ${(err as Error).message}`);
    }
    started.add(() => bot.stop());
    telegram = bot;
  }

  const lifecycle = startLifecycle(deps, opts.sweepIntervalMs, () => void telegram?.kick());
  started.add(() => lifecycle.stop());
  dispatcher.start();
  // Stopped first: no request arrives while the parts behind it stop.
  let url: string;
  try {
    const server = await listen(createServedApp(deps, streams, telegram), config.host, config.port);
    started.add(() => server.close());
    url = server.url;
  } catch (err) {
    throw toStartupError(err);
  }
  // Before the server: open streams end cleanly (the server's close would cut them) and their timers stop.
  started.add(() => streams.close());

  // Only a broker that serves creates agent "dev": its token is shown once, and a start that fails must not spend it.
  let devAgentToken: string | undefined;
  if (devVault && !(await deps.agents.get('dev'))) {
    devAgentToken = (await deps.agents.add('dev', DEV_SESSION_KEY)).token;
    // One write: a log line (stdout too) cannot land between the heading and the token.
    print(`Created agent "dev". Its token (shown once):\n${devAgentToken}`);
  } else if (devVault) {
    print('Agent "dev" exists; its token was shown on first start (jit agent remove dev && jit agent add dev for a new one).');
  }
  // Operator commands (jit approve/deny/revoke) decide with these, not with their shell's (SPEC §10); recorded
  // only once this broker serves, so a second `jit serve` that fails to start never replaces a live service's.
  await recordServiceSettings(storage, config, clock.now());
  log.info({ url, node_id: node.id, dev_mode: !!devVault, policies: config.policiesDir, db: describeDatabase(config), telegram: telegram?.mode ?? 'disabled' }, 'jit-broker listening');
  await telegram?.start();
  if (devVault && !telegram) {
    print(`Approver: no Telegram bot configured; approve tier-2 requests in the operator console at ${config.publicUrl}/console (\`npx jit approver add NAME\` prints an enrolment link) or with \`npx jit approve ID\`.`);
    print(`Tier 3 needs ${config.tier3Quorum} distinct approvers: \`npx jit approve ID\` counts as one, so enrol console approvers (or configure Telegram) for the others.`);
  }

  return {
    url,
    deps,
    dispatcher,
    ...(telegram ? { telegram } : {}),
    ...(devVault ? { devVault: { url: devVault.url, rootToken: devVault.rootToken } } : {}),
    ...(devAgentToken ? { devAgentToken } : {}),
    streams,
    reloadPolicies() {
      return policies.reloadAndLog(config.policiesDir, log);
    },
    stop: () => started.stopAll(),
  };
}

/** A start that cannot go on: `jit serve` prints the message as one line and exits 1. */
export class StartupError extends Error {}

/** A failure the operator can act on (an address in use) as a StartupError; anything else as it is. */
function toStartupError(err: unknown): unknown {
  return err instanceof ListenError ? new StartupError(err.message) : err;
}

async function seedDevVault(url: string, rootToken: string): Promise<void> {
  const res = await fetch(`${url}/v1/${DEV_SEED.path}`, {
    method: 'POST',
    headers: { 'X-Vault-Token': rootToken, 'content-type': 'application/json' },
    body: JSON.stringify({ data: DEV_SEED.data }),
  });
  if (!res.ok) throw new Error(`could not seed the development Vault: HTTP ${res.status}`);
}

export type { Config };
