/**
 * The primary's side of JIT_HTTP_WORKERS > 1: forks the HTTP workers
 * (`jit serve` again, under node:cluster, sharing one listening port),
 * answers their calls, restarts one that dies, and stops them first on
 * shutdown. See src/cluster/worker.ts for what a worker does.
 */
import cluster, { type Worker } from 'node:cluster';
import { fileURLToPath } from 'node:url';
import { AggregatorRegistry } from 'prom-client';
import type { Logger } from '../lib/logger.ts';
import type { BrokerMetrics } from '../metrics/index.ts';
import type { ApprovalBot } from '../telegram/index.ts';
import { createRpc, isIpcMessage, type ForwardedAnswer, type ForwardedUpdate, type IpcMessage } from './ipc.ts';

const JIT_BIN = fileURLToPath(new URL('../../bin/jit.mjs', import.meta.url));

export interface HttpWorkersOptions {
  count: number;
  /** The broker's environment; each worker gets it (plus `extraEnv`) and reads its own config from it. */
  env: Record<string, string | undefined>;
  /** Added to `env` (dev mode: the in-process development Vault's address and token). */
  extraEnv?: Record<string, string>;
  log: Logger;
  /** Woken when a worker commits an outbox row. */
  dispatcher: { notify(): void };
  telegram?: ApprovalBot | undefined;
  /** The primary's own metrics (dispatcher outcomes, outbox gauges, approvals): summed with the workers'. */
  metrics: BrokerMetrics;
  /** How long the first start of every worker may take (default 60 s). */
  startupTimeoutMs?: number;
}

export interface HttpWorkers {
  url: string;
  /** Workers now running. */
  pids(): number[];
  /** Tells every worker to reload its policy files. */
  reloadPolicies(): void;
  stop(): Promise<void>;
}

export class WorkersStartupError extends Error {}

interface Slot {
  worker: Worker;
  rpc: ReturnType<typeof createRpc>;
  startedAt: number;
  /** Its server is listening (it takes connections and hears 'jit:shutdown'). */
  listening: boolean;
  /** Why it could not start, in its own words ('jit:startup-failed'). */
  startupError?: string;
}

export async function startHttpWorkers(o: HttpWorkersOptions): Promise<HttpWorkers> {
  if (!cluster.isPrimary) throw new WorkersStartupError('HTTP workers are started by the primary process only');
  cluster.setupPrimary({ exec: JIT_BIN, args: ['serve'], execArgv: [] });
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(o.env)) if (v !== undefined) env[k] = v;
  Object.assign(env, o.extraEnv);

  const slots = new Set<Slot>();
  let stopping = false;
  /** Set once the first start succeeded: from then on a worker that exits is replaced. */
  let serving = false;
  let restartDelayMs = 1_000;
  const restartTimers = new Set<NodeJS.Timeout>();

  const aggregatedMetrics = async (): Promise<string> => {
    const parts = await Promise.allSettled([o.metrics.snapshot(), ...[...slots].map((s) => s.rpc.call('metrics-json'))]);
    const ok = parts.flatMap((p) => (p.status === 'fulfilled' ? [p.value as Awaited<ReturnType<BrokerMetrics['snapshot']>>] : []));
    return AggregatorRegistry.aggregate(ok).metrics();
  };
  const telegramUpdate = async (arg: unknown): Promise<ForwardedAnswer> => {
    if (!o.telegram) return { status: 404, headers: {}, body: '' };
    const u = arg as ForwardedUpdate;
    const res = await o.telegram.handleWebhook(new Request('http://127.0.0.1/telegram/webhook', { method: 'POST', headers: u.headers, body: u.body }));
    return { status: res.status, headers: Object.fromEntries(res.headers), body: await res.text() };
  };

  const fork = (): Slot => {
    const worker = cluster.fork(env);
    const send = (m: IpcMessage) => {
      // A call to a worker that is gone fails at once (a reply to one is dropped).
      if (!worker.isConnected()) throw new Error('the HTTP worker is gone');
      worker.send(m);
    };
    const slot: Slot = {
      worker,
      startedAt: Date.now(),
      listening: false,
      rpc: createRpc(send, { metrics: aggregatedMetrics, 'telegram-update': telegramUpdate }),
    };
    slots.add(slot);
    worker.once('listening', () => (slot.listening = true));
    // node:cluster reports a failed send (the worker's channel closed meanwhile)
    // as an 'error' event on the Worker: unheard, it would crash the primary.
    worker.on('error', (err) => o.log.warn({ err, pid: worker.process.pid }, 'IPC with an HTTP worker failed'));
    worker.on('message', (m: unknown) => {
      if (!isIpcMessage(m) || slot.rpc.receive(m)) return;
      if (m.t === 'jit:outbox') o.dispatcher.notify();
      else if (m.t === 'jit:kick') void o.telegram?.kick();
      else if (m.t === 'jit:startup-failed') slot.startupError = m.message;
    });
    worker.once('exit', (code, signal) => {
      slots.delete(slot);
      slot.rpc.failAll('the HTTP worker exited');
      // During the first start a worker that exits fails the start (below) rather than being replaced.
      if (stopping || !serving) return;
      // A worker that ran a while gets a quick replacement; one that keeps dying, slower ones.
      if (Date.now() - slot.startedAt > 60_000) restartDelayMs = 1_000;
      o.log.error({ pid: worker.process.pid, code, signal, restart_in_ms: restartDelayMs }, 'HTTP worker exited; starting another');
      const restartTimer = setTimeout(() => {
        restartTimers.delete(restartTimer);
        if (!stopping) fork();
      }, restartDelayMs);
      restartTimers.add(restartTimer);
      restartDelayMs = Math.min(restartDelayMs * 2, 30_000);
    });
    return slot;
  };

  const stopAll = async () => {
    stopping = true;
    for (const t of restartTimers) clearTimeout(t);
    restartTimers.clear();
    clearInterval(statusTimer);
    await Promise.all(
      [...slots].map(
        (s) =>
          new Promise<void>((resolve) => {
            if (s.worker.isDead()) return resolve();
            const kill = setTimeout(() => s.worker.process.kill('SIGKILL'), 10_000);
            s.worker.once('exit', () => {
              clearTimeout(kill);
              resolve();
            });
            // A worker still starting has nothing to finish, and would not hear 'jit:shutdown' yet.
            if (s.listening && s.worker.isConnected()) s.worker.send({ t: 'jit:shutdown' } satisfies IpcMessage);
            else s.worker.process.kill('SIGTERM');
          }),
      ),
    );
  };

  // Workers show the bot's health on /healthz; they hear it from here.
  const statusTimer = setInterval(() => {
    if (!o.telegram) return;
    const status = o.telegram.status();
    for (const s of slots) if (s.worker.isConnected()) s.worker.send({ t: 'jit:telegram-status', status } satisfies IpcMessage);
  }, 2_000);
  statusTimer.unref();

  // The first start: every worker listening, or a clear error.
  const first = Array.from({ length: o.count }, fork);
  let url: string;
  try {
    url = await new Promise<string>((resolve, reject) => {
      let listening = 0;
      let found: string | undefined;
      const timer = setTimeout(() => done(new WorkersStartupError(`HTTP workers did not start within ${o.startupTimeoutMs ?? 60_000} ms`)), o.startupTimeoutMs ?? 60_000);
      const onListening = (w: Worker, a: { address: string | null; port: number; addressType: number | string }) => {
        if (!first.some((s) => s.worker === w)) return;
        const host = a.address ?? '127.0.0.1';
        found ??= `http://${host.includes(':') ? `[${host}]` : host}:${a.port}`;
        if (++listening === o.count) done();
      };
      const onExit = (w: Worker, code: number | null) => {
        const slot = first.find((s) => s.worker === w);
        if (!slot) return;
        // Its 'jit:startup-failed' is read before the channel's end, which may come after the exit.
        const fail = () => done(new WorkersStartupError(slot.startupError ?? `an HTTP worker exited during startup (code ${code}); its error is above`));
        if (w.isConnected()) w.once('disconnect', fail);
        else fail();
      };
      const done = (err?: Error) => {
        clearTimeout(timer);
        cluster.off('listening', onListening);
        cluster.off('exit', onExit);
        if (err) reject(err);
        else resolve(found!);
      };
      cluster.on('listening', onListening);
      cluster.on('exit', onExit);
    });
  } catch (err) {
    await stopAll();
    throw err;
  }
  serving = true;
  o.log.info({ url, workers: first.map((s) => s.worker.process.pid) }, 'HTTP workers listening');

  return {
    url,
    pids: () => [...slots].flatMap((s) => (s.worker.process.pid ? [s.worker.process.pid] : [])),
    reloadPolicies() {
      for (const s of slots) if (s.worker.isConnected()) s.worker.send({ t: 'jit:reload-policies' } satisfies IpcMessage);
    },
    stop: stopAll,
  };
}
