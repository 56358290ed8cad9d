/**
 * One HTTP worker process of a broker started with JIT_HTTP_WORKERS > 1.
 *
 * A worker serves the HTTP API on the shared port with its own database
 * connection, Vault client and metrics; everything with a single owner stays
 * in the primary (lifecycle sweeps and reconciliation, the webhook
 * dispatcher, the Telegram bot, the database upkeep: storage.maintain). The database is the
 * only shared state: every decision, mint and outbox row is the same
 * BEGIN IMMEDIATE transaction as in a single process, so several writers
 * keep the same guarantees. What a worker must tell the primary goes over
 * IPC (src/cluster/ipc.ts): "an outbox row is due", "run the Telegram sync",
 * and the answers to /metrics and Telegram webhook calls.
 */
import cluster from 'node:cluster';
import { startAuditUpkeep } from '../broker/audit-upkeep.ts';
import { PolicyStore } from '../broker/policy/index.ts';
import { loadConfig, type Config } from '../config/config.ts';
import { createDeps } from '../create-deps.ts';
import { createRequestStreams } from '../broker/request-stream.ts';
import { openStorage } from '../storage/index.ts';
import { listen } from '../http/listen.ts';
import { createServedApp, type ServedTelegram } from '../served-app.ts';
import { systemClock } from '../lib/clock.ts';
import { StartedParts } from '../lib/started-parts.ts';
import { createIdGenerator } from '../lib/ids.ts';
import { createLogger } from '../lib/logger.ts';
import { createMetrics } from '../metrics/index.ts';
import type { ApprovalBotStatus } from '../telegram/index.ts';
import { startVaultClient, vaultClientFromConfig } from '../vault/from-config.ts';
import { createKeyRing } from '../keys/key-ring.ts';
import { createOutboxSink } from '../webhooks/outbox.ts';
import { WORKER_NODE_ID_ENV, createRpc, isIpcMessage, type ForwardedAnswer, type ForwardedUpdate, type IpcMessage } from './ipc.ts';

export interface HttpWorker {
  url: string;
  /** Resolves when the worker has stopped (shutdown from the primary, or the primary gone). */
  stopped: Promise<void>;
  stop(): Promise<void>;
}

export class WorkerStartupError extends Error {}

export async function startHttpWorker(env: Record<string, string | undefined>): Promise<HttpWorker> {
  if (!process.send) throw new WorkerStartupError('an HTTP worker must be started by the broker (node:cluster)');
  // Once the primary is gone (the channel closed) a notice is dropped and a
  // call fails at once; a plain process.send would emit an 'error' nobody
  // hears, an uncaught exception.
  const send = (m: IpcMessage) => {
    if (process.connected) process.send?.(m, undefined, {}, () => {});
  };
  const sendCall = (m: IpcMessage) => {
    if (!process.connected) throw new Error('the primary process is gone');
    send(m);
  };
  const config = loadConfig(env);
  if (!config.vault) throw new WorkerStartupError('an HTTP worker needs VAULT_ADDR (the primary passes it)');
  const started = new StartedParts();
  try {
    return await startWorkerParts(config as WorkerConfig, env[WORKER_NODE_ID_ENV], send, sendCall, started);
  } catch (err) {
    // What started is stopped again: the worker exits instead of holding a Vault client and the database.
    await started.stopAll();
    throw err;
  }
}

type WorkerConfig = Config & { vault: NonNullable<Config['vault']> };

async function startWorkerParts(config: WorkerConfig, nodeId: string | undefined, send: (m: IpcMessage) => void, sendCall: (m: IpcMessage) => void, started: StartedParts): Promise<HttpWorker> {
  const log = createLogger(config.logLevel).child({ http_worker: process.pid });
  // node:cluster reports a failed IPC write here (the worker's own sends and its
  // connection acknowledgements); unheard, it would crash the worker mid-request.
  cluster.worker?.on('error', (err) => log.warn({ err }, 'IPC with the primary failed'));

  // Invalid files throw InvalidPolicyFiles, whose message the serve command prints. The primary logs the warnings.
  const { policies } = PolicyStore.load(config.policiesDir);

  const clock = systemClock;
  const vault = vaultClientFromConfig(config.vault, { log });
  started.add(() => vault.stop());
  await startVaultClient(vault, log);
  const keys = createKeyRing({ config, clock, log });
  // The primary maintains the database (storage.maintain); a worker only uses it.
  const storage = await openStorage(config, { role: 'worker', log });
  started.add(() => storage.close());
  const ids = createIdGenerator(() => clock.now());
  // No database: the figures read from tables (outbox depth, approvals) come from the primary once.
  const ownMetrics = createMetrics({});
  const rpc = createRpc(sendCall, { 'metrics-json': () => ownMetrics.registry.getMetricsAsJSON() });
  started.add(() => rpc.failAll('the worker is stopping'));
  const metrics = { ...ownMetrics, render: async () => (await rpc.call('metrics')) as string };
  const events = createOutboxSink({ storage, policies, ids, log, notify: () => send({ t: 'jit:outbox' }) });
  const streams = createRequestStreams({ storage, log, maxPerAgent: config.maxStreams });
  metrics.setStreamSource(() => streams.openCount());
  const deps = createDeps({ config, storage, vault, policies, log, clock, ids, events, keys, metrics, onAuditCommit: () => streams.wake(), ...(nodeId ? { nodeId } : {}) });

  let telegram: ServedTelegram | undefined;
  if (config.telegram) {
    let status: ApprovalBotStatus = { mode: config.telegram.webhookSecret ? 'webhook' : 'polling', ready: false, leader: false, lastSyncOkAt: null, lastError: null };
    telegram = {
      kick: async () => send({ t: 'jit:kick' }),
      status: () => status,
      async handleWebhook(request) {
        const update: ForwardedUpdate = { headers: Object.fromEntries(request.headers), body: await request.text() };
        const answer = (await rpc.call('telegram-update', update)) as ForwardedAnswer;
        return new Response(answer.body, { status: answer.status, headers: answer.headers });
      },
    };
    process.on('message', (m: unknown) => {
      if (isIpcMessage(m) && m.t === 'jit:telegram-status') status = m.status;
    });
  }

  // This process's coalesced audit counts (the primary signs the chain head); stopped after the HTTP side.
  const auditUpkeep = startAuditUpkeep(deps, { primary: false });
  started.add(() => auditUpkeep.stop());
  const { url, close } = await listen(createServedApp(deps, streams, telegram), config.host, config.port);
  started.add(close);
  started.add(() => streams.close());

  let markStopped!: () => void;
  const stopped = new Promise<void>((r) => (markStopped = r));
  // stopAll runs once, however often it is asked.
  const stop = () => started.stopAll().finally(markStopped);

  process.on('message', (m: unknown) => {
    if (!isIpcMessage(m) || rpc.receive(m)) return;
    if (m.t === 'jit:reload-policies') policies.reloadAndLog(config.policiesDir, log);
    else if (m.t === 'jit:shutdown') {
      void stop();
    }
  });
  // The primary is gone: nobody sweeps, dispatches or answers /metrics any more.
  process.once('disconnect', () => {
    log.error('the primary process is gone; this HTTP worker stops');
    void stop();
  });
  log.info({ url }, 'HTTP worker listening');
  return { url, stopped, stop };
}

/**
 * Tells the primary why this worker could not start, so that `jit serve`
 * reports it as its one line; resolves false when the primary cannot hear
 * it (then the caller prints it). The channel is closed afterwards: nothing
 * else keeps the worker's process alive.
 */
export async function reportStartupFailure(message: string): Promise<boolean> {
  const told = await new Promise<boolean>((resolve) => {
    if (!process.connected || !process.send) return resolve(false);
    process.send({ t: 'jit:startup-failed', message } satisfies IpcMessage, undefined, {}, (err) => resolve(!err));
  });
  if (process.connected) process.disconnect();
  return told;
}
