import { Worker } from 'node:worker_threads';
import type { Logger } from '../../lib/logger.ts';

/**
 * Moves SQLite's WAL checkpoint (copying WAL pages into the database file
 * and fsyncing it) off the event loop. better-sqlite3 is synchronous, so the
 * automatic checkpoint SQLite runs every 1,000 WAL pages stalls every
 * request while one commit does it. The broker opens its database with
 * `openDatabase(path, { checkpoint: 'background' })`, which pushes that
 * automatic checkpoint out to a backstop, and starts this: a worker thread
 * with its own connection to the same file that runs
 * `PRAGMA wal_checkpoint(PASSIVE)` every `intervalMs` (repeated while
 * commits overtake it, see checkpoint-worker.mjs), and a TRUNCATE when the
 * WAL file is over `truncateBytes` so it shrinks once readers allow.
 *
 * A busy checkpoint is skipped (next interval). A worker that dies is logged
 * and restarted at most `maxRestarts` times; after that the backstop
 * autocheckpoint on the main connection keeps the WAL bounded. The worker is
 * unref'd: a checkpointer nobody stopped never keeps the process alive.
 */
export interface CheckpointerOptions {
  /** The database file (already created and in WAL mode). */
  dbPath: string;
  intervalMs?: number;
  /** WAL size above which the worker asks for a TRUNCATE checkpoint. */
  truncateBytes?: number;
  maxRestarts?: number;
  /** Delay before restarting a dead worker. */
  restartDelayMs?: number;
  log?: Pick<Logger, 'warn' | 'error'>;
  /** The worker's module (tests substitute one that crashes). */
  workerUrl?: URL;
}

export interface CheckpointStats {
  /** Checkpoint attempts reported by the worker (busy ones included). */
  checkpoints: number;
  /** Of those, the ones SQLite reported busy (it did what it could). */
  busy: number;
  /** TRUNCATE checkpoints that succeeded. */
  truncations: number;
  /** Workers started after the first one died. */
  restarts: number;
  /** WAL file size after the latest checkpoint. */
  walBytes: number;
}

export interface Checkpointer {
  /** Stops the worker and waits for its thread to end. Idempotent. */
  stop(): Promise<void>;
  readonly stats: Readonly<CheckpointStats>;
  /** The current worker's thread id; undefined when none is running. */
  readonly threadId: number | undefined;
}

/**
 * A saturated broker writes ≈ 14,000 WAL pages a second (≈ 500 issues/s of
 * ≈ 28 pages, docs/benchmarks.md): ticks a second apart would let the WAL
 * reach the main connection's 10,000-page backstop between them, and the
 * backstop checkpoints on the event loop. An idle tick is a PASSIVE
 * checkpoint with nothing to copy.
 */
export const DEFAULT_CHECKPOINT_INTERVAL_MS = 250;
export const DEFAULT_TRUNCATE_BYTES = 64 * 1024 * 1024;

const WORKER_URL = new URL('./checkpoint-worker.mjs', import.meta.url);
/** How long stop() lets the worker close its connection before terminating it. */
const STOP_GRACE_MS = 2000;

type WorkerMessage =
  | { type: 'ready' }
  | { type: 'checkpoint'; busy: boolean; truncated: boolean; walBytes: number };

export function startCheckpointer(opts: CheckpointerOptions): Checkpointer {
  const { dbPath, log } = opts;
  const intervalMs = opts.intervalMs ?? DEFAULT_CHECKPOINT_INTERVAL_MS;
  const maxRestarts = opts.maxRestarts ?? 3;
  const restartDelayMs = opts.restartDelayMs ?? 1000;
  const stats: CheckpointStats = { checkpoints: 0, busy: 0, truncations: 0, restarts: 0, walBytes: 0 };

  // An in-memory or temporary database has no WAL to checkpoint.
  if (dbPath === ':memory:' || dbPath === '') {
    return { stop: async () => {}, stats, threadId: undefined };
  }

  let worker: Worker | undefined;
  let exited: Promise<void> = Promise.resolve();
  let restartTimer: NodeJS.Timeout | undefined;
  let stopping: Promise<void> | undefined;

  const spawn = (): void => {
    const w = new Worker(opts.workerUrl ?? WORKER_URL, {
      workerData: { dbPath, intervalMs, truncateBytes: opts.truncateBytes ?? DEFAULT_TRUNCATE_BYTES },
    });
    w.unref();
    worker = w;
    exited = new Promise((resolve) => w.once('exit', () => resolve()));
    w.on('message', (msg: WorkerMessage) => {
      if (msg.type !== 'checkpoint') return;
      stats.checkpoints++;
      if (msg.busy) stats.busy++;
      if (msg.truncated) stats.truncations++;
      stats.walBytes = msg.walBytes;
    });
    w.on('error', (err) => log?.error({ err, db: dbPath }, 'WAL checkpointer worker failed'));
    w.once('exit', (code) => {
      if (worker === w) worker = undefined;
      if (stopping) return;
      if (stats.restarts >= maxRestarts) {
        log?.error({ code, db: dbPath, restarts: stats.restarts }, 'WAL checkpointer worker exited; not restarting it again (SQLite\'s backstop autocheckpoint keeps the WAL bounded)');
        return;
      }
      log?.warn({ code, db: dbPath }, 'WAL checkpointer worker exited; restarting it');
      restartTimer = setTimeout(() => {
        restartTimer = undefined;
        if (stopping) return;
        stats.restarts++;
        spawn();
      }, restartDelayMs);
      restartTimer.unref();
    });
  };
  spawn();

  return {
    stats,
    get threadId() {
      return worker?.threadId;
    },
    stop() {
      stopping ??= (async () => {
        if (restartTimer) clearTimeout(restartTimer);
        const w = worker;
        if (!w) return;
        w.postMessage({ type: 'stop' });
        const grace = setTimeout(() => void w.terminate(), STOP_GRACE_MS);
        await exited;
        clearTimeout(grace);
      })();
      return stopping;
    },
  };
}
