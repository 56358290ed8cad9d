import { setImmediate as atTurnEnd } from 'node:timers';
import type { Logger } from '../../lib/logger.ts';
import { StorageBusyError, StorageUniqueError, TransactionEndedError } from '../errors.ts';
import { FifoLock } from '../lock.ts';
import type { Repositories, Storage, Transaction } from '../storage.ts';
import { REPOSITORIES, ViewTransaction, afterGroupCommit, assertNotInTransaction, groupOutcome, nesting, rolledBackWithGroup, runCallback, runHooks, warnHookError, type GroupOutcome, type HookErrorReporter } from '../transaction-kit.ts';
import { sqliteAgents } from './agents.ts';
import { sqliteApprovers, sqliteChallenges, sqliteConsoleSessions, sqlitePasskeys } from './approvers.ts';
import { sqliteAudit } from './audit.ts';
import { sqliteCredentials, sqliteGrantPolicies } from './credentials.ts';
import { BUSY_TIMEOUT_MS, isBusy, openDatabase, transactionControl, type Db, type OpenOptions } from './open.ts';
import { startSqliteMaintenance } from './maintenance.ts';
import { sqliteOutbox } from './outbox.ts';
import { sqliteIdempotency, sqliteRateLimits, sqliteRequests } from './requests.ts';
import { sqliteSettings } from './settings.ts';
import { sqliteLeases } from './leases.ts';
import type { Sync } from './sync.ts';
import { sqliteTelegram } from './telegram.ts';
import { sqliteVotes } from './votes.ts';

/**
 * SQLite's errors as the storage interface's: busy or locked (another
 * connection held the write lock past the wait) and uniqueness refusals.
 * Anything else is returned as it is.
 */
export function storageError(err: unknown): unknown {
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code !== 'string' || !code.startsWith('SQLITE_')) return err;
  if (/^SQLITE_(BUSY|LOCKED)/.test(code)) return new StorageBusyError('the database is busy (another writer holds it)', { cause: err });
  if (code === 'SQLITE_CONSTRAINT_UNIQUE' || code === 'SQLITE_CONSTRAINT_PRIMARYKEY') return new StorageUniqueError('a uniqueness rule refused the write', { cause: err });
  return err;
}

type SyncRepositories = { [K in keyof Repositories]: Sync<Repositories[K]> };
type Method = (...args: unknown[]) => unknown;
type Runner = (f: Method, args: unknown[]) => Promise<unknown>;

/** The asynchronous face of a synchronous repository: each method runs through `run`. */
function asyncView<T>(impl: Sync<T>, run: Runner): T {
  const view: Record<string, unknown> = {};
  for (const [key, f] of Object.entries(impl as Record<string, unknown>)) {
    view[key] = typeof f === 'function' ? (...args: unknown[]) => run(f as Method, args) : f;
  }
  return view as T;
}

function asyncViews(sync: SyncRepositories, run: Runner): Repositories {
  return Object.fromEntries(REPOSITORIES.map((key) => [key, asyncView(sync[key] as never, run)])) as unknown as Repositories;
}

const handles = new WeakMap<Storage, Db>();

/**
 * The wait between two tries at another connection's write lock: the next
 * turn of the event loop at first (a broker transaction holds the lock for
 * about 0.1 ms), then 1 ms, doubling to 16 ms. Other work of this process
 * goes on meanwhile.
 */
function pause(attempt: number): Promise<void> {
  return new Promise((resolve) => (attempt < 8 ? setImmediate(resolve) : setTimeout(resolve, Math.min(2 ** (attempt - 8), 16))));
}

function busyFor(ms: number): StorageBusyError {
  return new StorageBusyError(`the database stayed busy for ${ms} ms (another process holds its write lock)`);
}

/**
 * The SQLite engine over one better-sqlite3 connection (WAL, migrated:
 * see open.ts). Each repository's statements are prepared once, here.
 *
 * One connection per process, so one transaction at a time: a FIFO lock
 * (lock.ts) is taken around each transaction's callback. When the lock is
 * free nothing queues: the statement runs at once. Across processes (the
 * CLI, another broker), BEGIN IMMEDIATE serialises writers as before.
 *
 * GROUP COMMIT. The transactions that run in one turn of the event loop
 * are committed together, at its end (setImmediate): the first BEGINs and
 * schedules the COMMIT, each runs inside a savepoint of its own, and each
 * resolves only once the COMMIT is done. One commit writes each page the
 * group dirtied to the WAL once; a tier-1 issue's two transactions wrote
 * about 30 (docs/benchmarks.md, issue 22). Per transaction nothing changes
 * that the Storage interface promises:
 * - one that fails is rolled back to its savepoint (the others keep their
 *   writes) and rejects at once, with its rollback hooks run;
 * - one that succeeded resolves after the COMMIT, its commit hooks run then
 *   (so possibly after later transactions of its group ran); should the
 *   COMMIT fail, every transaction of the group rejects with that error,
 *   its rollback hooks run, and nothing of the group is written;
 * - each runs alone, in the group's order: it sees what those before it
 *   wrote, as it would once they committed;
 * - a call outside a transaction never sees a group's uncommitted writes:
 *   it waits for the COMMIT (on this connection it would read them, or a
 *   write would join the group);
 * - nothing outside the database happens between a transaction's writes
 *   and its COMMIT: its caller learns of it only after the COMMIT (the
 *   crash-safety order of credential-issue.ts holds as it is).
 */
export function createSqliteStorage(db: Db, opts: { onHookError?: HookErrorReporter } = {}): Storage {
  const reportHook = opts.onHookError ?? warnHookError;
  const control = transactionControl(db);
  // Waiting for another connection's lock is done here, asynchronously (see pause).
  control.neverWait();
  const lock = new FifoLock(BUSY_TIMEOUT_MS);
  const sync: SyncRepositories = {
    requests: sqliteRequests(db),
    idempotency: sqliteIdempotency(db),
    rateLimits: sqliteRateLimits(db),
    credentials: sqliteCredentials(db),
    grantPolicies: sqliteGrantPolicies(db),
    votes: sqliteVotes(db),
    agents: sqliteAgents(db),
    approvers: sqliteApprovers(db),
    passkeys: sqlitePasskeys(db),
    consoleSessions: sqliteConsoleSessions(db),
    challenges: sqliteChallenges(db),
    audit: sqliteAudit(db),
    outbox: sqliteOutbox(db),
    telegram: sqliteTelegram(db),
    settings: sqliteSettings(db),
    leases: sqliteLeases(db),
  };
  const select1 = db.prepare('SELECT 1');

  /**
   * Runs a call outside any transaction. A write another connection's lock
   * kept out (SQLITE_BUSY: nothing was written) is tried again after a
   * pause, until BUSY_TIMEOUT_MS has passed.
   */
  const runNow = (f: Method, args: unknown[]): Promise<unknown> => {
    try {
      return Promise.resolve(f(...args));
    } catch (err) {
      if (!isBusy(err) || db.inTransaction) return Promise.reject(storageError(err));
      return retryBusy(f, args, performance.now());
    }
  };
  const retryBusy = async (f: Method, args: unknown[], since: number): Promise<unknown> => {
    for (let attempt = 0; ; attempt++) {
      if (performance.now() - since > BUSY_TIMEOUT_MS) throw busyFor(BUSY_TIMEOUT_MS);
      await pause(attempt);
      // Through the lock again: a transaction of this process may have begun meanwhile.
      if (!lock.tryAcquire()) await lock.acquire();
      try {
        return f(...args);
      } catch (err) {
        if (!isBusy(err)) throw storageError(err);
      } finally {
        lock.release();
      }
    }
  };
  /**
   * Outside a transaction: at once when none is open on the connection.
   * Between the transactions of a group, once its COMMIT is done (the end of
   * this turn), looked at again. While a transaction runs (or waits for
   * another process's lock), after it in the lock's queue, as before group
   * commit (a wait that times out with StorageBusyError), committing its
   * group there and then: a call never waits for more than one group.
   */
  const direct: Runner = (f, args) => {
    if (nesting) assertNotInTransaction('a storage call outside the transaction');
    if (!lock.held && !group) return runNow(f, args);
    if (!lock.held) return group!.committed.catch(() => {}).then(() => direct(f, args));
    return lock.acquire().then(() => {
      try {
        commitGroup();
        return runNow(f, args);
      } finally {
        lock.release();
      }
    });
  };
  /** Inside the open transaction (the caller holds the lock). */
  const inTransaction: Runner = (f, args) => {
    try {
      return Promise.resolve(f(...args));
    } catch (err) {
      return Promise.reject(storageError(err));
    }
  };
  /**
   * Closes once the open transaction (and those queued) ended. One still
   * open after the lock wait (a callback that never settles) does not keep
   * the database open: closing rolls it back (its callback's next call
   * fails), and close() rejects to say so.
   */
  let closing: Promise<void> | undefined;
  const closeAfterTransaction = async (): Promise<void> => {
    if (!lock.tryAcquire()) {
      try {
        await lock.acquire();
      } catch (err) {
        if (!(err instanceof StorageBusyError)) throw err;
        const stuck = new StorageBusyError(`closed with a transaction still open after ${BUSY_TIMEOUT_MS} ms (SQLite rolled it back)`, { cause: err });
        abandonGroup(stuck);
        db.close();
        throw stuck;
      }
    }
    commitGroup();
    db.close();
  };
  /** The transactions of this turn, committed together (see GROUP COMMIT above). */
  let group: GroupOutcome | undefined;
  const memberBegin = db.prepare('SAVEPOINT jit_member');
  const memberEnd = db.prepare('RELEASE jit_member');
  const memberUndo = db.prepare('ROLLBACK TO jit_member');
  /** Commits the open group, if any; the caller holds the lock (no member is running). */
  const commitGroup = (): void => {
    const g = group;
    if (!g) return;
    group = undefined;
    try {
      control.commit();
    } catch (err) {
      if (db.open) control.rollback();
      g.reject(storageError(err));
      return;
    }
    g.resolve();
  };
  /** A group that can no longer commit (SQLite ended its transaction on an error): its members reject. */
  const abandonGroup = (err: unknown): void => {
    const g = group;
    if (!g) return;
    group = undefined;
    g.reject(err);
  };
  /** At the end of the turn that opened a group: commits it, once the member running (if any) is done. */
  const commitAtTurnEnd = (): void => {
    const commitAndRelease = () => {
      try {
        commitGroup();
      } finally {
        lock.release();
      }
    };
    // node:timers' own function, not the global one a test may replace with a fake clock (the COMMIT must still come).
    atTurnEnd(() => {
      if (!group) return;
      if (lock.tryAcquire()) return commitAndRelease();
      // A member still running (a callback that awaits more than its own calls): after it, in the lock's queue.
      lock.acquire().then(commitAndRelease, () => commitAtTurnEnd());
    });
  };
  const txViews = asyncViews(sync, inTransaction);
  const endedViews = asyncViews(sync, () => Promise.reject(new TransactionEndedError()));

  const storage = {
    engine: 'sqlite',
    // The signing keys stay in signing-keys.json next to the database file (src/keys/key-file.ts).
    signingKeys: undefined,
    async transaction<T>(fn: (tx: Transaction) => Promise<T>): Promise<T> {
      if (nesting) assertNotInTransaction('storage.transaction');
      if (!lock.tryAcquire()) await lock.acquire();
      let joined: GroupOutcome;
      let tx: ViewTransaction;
      let result: T;
      try {
        // A group whose transaction SQLite ended (an error that rolls back everything) is given up, not joined.
        if (group && !db.inTransaction) abandonGroup(rolledBackWithGroup());
        if (!group) {
          // BEGIN IMMEDIATE: the write lock first (nearly every transaction reads, then writes: open.ts).
          const since = performance.now();
          for (let attempt = 0; !control.tryBegin(); attempt++) {
            if (performance.now() - since > BUSY_TIMEOUT_MS) throw busyFor(BUSY_TIMEOUT_MS);
            await pause(attempt);
          }
          group = groupOutcome();
          commitAtTurnEnd();
        }
        joined = group;
        memberBegin.run();
        tx = new ViewTransaction(txViews, endedViews);
        try {
          result = await runCallback(tx, fn);
          memberEnd.run();
        } catch (err) {
          tx.end();
          // Back to the savepoint: the group's other transactions keep their writes.
          if (db.open && db.inTransaction) {
            memberUndo.run();
            memberEnd.run();
          } else {
            abandonGroup(rolledBackWithGroup(err));
          }
          runHooks(tx.rollbackHooks, 'rollback', reportHook);
          throw storageError(err);
        }
        tx.end();
      } finally {
        lock.release();
      }
      return afterGroupCommit(tx, joined, result, reportHook, (err) => err);
    },
    ping: () => direct(() => void select1.get(), []) as Promise<void>,
    maintain: (log: Logger) => startSqliteMaintenance(db.name, log),
    close: () => (db.open ? (closing ??= closeAfterTransaction()) : Promise.resolve()),
  } as Storage;
  const directViews = asyncViews(sync, direct);
  for (const key of REPOSITORIES) Object.defineProperty(storage, key, { value: directViews[key], enumerable: true });
  handles.set(storage, db);
  return storage;
}

/** Opens (creating and migrating) the database at `path` and returns its storage. */
export function openSqliteStorage(path: string, opts: OpenOptions & { onHookError?: HookErrorReporter } = {}): Storage {
  return createSqliteStorage(openDatabase(path, opts), opts);
}

/**
 * The better-sqlite3 connection behind a SQLite storage. FOR TESTS ONLY
 * (seeding and inspecting tables with SQL) and the SQLite engine itself:
 * nothing in src/ outside src/storage/ may use it.
 */
export function sqliteDatabase(storage: Storage): Db {
  const db = handles.get(storage);
  if (!db) throw new Error(`sqliteDatabase: not a SQLite storage (engine ${storage.engine})`);
  return db;
}
