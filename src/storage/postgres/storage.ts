import type pg from 'pg';
import type { Logger } from '../../lib/logger.ts';
import { StorageBusyError, StorageOpenError, TransactionEndedError } from '../errors.ts';
import { FifoLock } from '../lock.ts';
import type { Repositories, Storage, Transaction } from '../storage.ts';
import { ViewTransaction, assertNotInTransaction, endedRepositories, nesting, runCallback, runHooks, warnHookError, type HookErrorReporter } from '../transaction-kit.ts';
import { pgAgents } from './agents.ts';
import { pgApprovers, pgChallenges, pgConsoleSessions, pgPasskeys } from './approvers.ts';
import { askAuditHead, pgAudit } from './audit.ts';
import { pgCredentials, pgGrantPolicies } from './credentials.ts';
import { oneWritePerBurst, run, sql, type Exec, type Query, type Result, type TransactionState } from './exec.ts';
import { startPostgresMaintenance } from './maintenance.ts';
import { pgOutbox } from './outbox.ts';
import { BEGIN_LOCKED, CONNECT_TIMEOUT_MS, LOCK_TIMEOUT_MS, createPool, isBroken, migrate, pgStorageError, shownDatabaseUrl, unavailable, whyNotOpened } from './pool.ts';
import { pgIdempotency, pgRateLimits, pgRequests } from './requests.ts';
import { pgSettings } from './settings.ts';
import { pgSigningKeys } from './signing-keys.ts';
import { pgLeases } from './leases.ts';
import { pgTelegram } from './telegram.ts';
import { pgVotes } from './votes.ts';

function repositories(x: Exec): Repositories {
  return {
    requests: pgRequests(x),
    idempotency: pgIdempotency(x),
    rateLimits: pgRateLimits(x),
    credentials: pgCredentials(x),
    grantPolicies: pgGrantPolicies(x),
    votes: pgVotes(x),
    agents: pgAgents(x),
    approvers: pgApprovers(x),
    passkeys: pgPasskeys(x),
    consoleSessions: pgConsoleSessions(x),
    challenges: pgChallenges(x),
    audit: pgAudit(x),
    outbox: pgOutbox(x),
    telegram: pgTelegram(x),
    settings: pgSettings(x),
    leases: pgLeases(x),
  };
}

const SELECT_1 = sql('ping', 'SELECT 1');

/**
 * PostgreSQL answers COMMIT of an aborted transaction with the tag
 * ROLLBACK, not an error: whatever failed before must have been seen; this
 * is the backstop should it not have been.
 */
function assertCommitted(c: PromiseSettledResult<unknown>): void {
  const command = c.status === 'fulfilled' ? (c.value as { command?: unknown } | undefined)?.command : undefined;
  if (command !== 'COMMIT') throw new Error(`COMMIT was answered with ${String(command)}: the transaction was rolled back`);
}

const pools = new WeakMap<Storage, pg.Pool>();

export interface PostgresStorageOptions {
  onHookError?: HookErrorReporter;
}

/**
 * The PostgreSQL engine over a pg Pool (docs/architecture.md, "Storage":
 * the transaction model and why it keeps every rule of the interface).
 *
 * - `transaction(fn)`: BEGIN and `pg_advisory_xact_lock(WRITE_LOCK_KEY)` in
 *   one round trip, held to COMMIT or ROLLBACK: one writing transaction at
 *   a time on the database, across every broker on it, as SQLite's BEGIN
 *   IMMEDIATE does on one file. Within the process a FIFO lock (lock.ts)
 *   lets one transaction at a time take a connection and queue for the
 *   write lock, so waiting writers never use up the pool that reads need.
 * - A write outside a transaction: a one-statement transaction under the
 *   same locks. A read outside one: straight to the pool (committed data).
 * - Exceptions, none of which ever waits for the write lock: the outbox
 *   claim (its own short transaction, FOR UPDATE SKIP LOCKED) and the
 *   owner-conditional outbox marks (single conditional UPDATEs).
 */
export function createPostgresStorage(url: string, pool: pg.Pool, opts: PostgresStorageOptions = {}): Storage {
  const reportHook = opts.onHookError ?? warnHookError;
  const lock = new FifoLock(LOCK_TIMEOUT_MS);

  const connect = async (): Promise<pg.PoolClient> => {
    try {
      return await pool.connect();
    } catch (err) {
      // Every connection of the pool in use for the whole wait: this process is busy, the database may be fine.
      if (pool.totalCount >= (pool.options.max ?? 0) && pgStorageError(err) === err) {
        throw new StorageBusyError(`every connection of this process stayed in use for ${CONNECT_TIMEOUT_MS} ms`, { cause: err });
      }
      // No connection to be had: refused, timed out, the server starting or shutting down, the pool ended.
      throw unavailable(err);
    }
  };
  /** Back to the pool, or destroyed when its connection failed. */
  const release = (client: pg.PoolClient) => client.release(isBroken(client) || undefined);
  const rollbackQuietly = async (client: pg.PoolClient) => {
    if (!isBroken(client)) await client.query('ROLLBACK').catch(() => {});
  };
  const withClient = async <T>(fn: (client: pg.PoolClient) => Promise<T>): Promise<T> => {
    const client = await connect();
    try {
      return await fn(client);
    } catch (err) {
      throw pgStorageError(err, client);
    } finally {
      release(client);
    }
  };
  /** Holds the process's turn at the write lock around `fn` (see FifoLock). */
  const inTurn = async <T>(fn: () => Promise<T>): Promise<T> => {
    if (!lock.tryAcquire()) await lock.acquire();
    try {
      return await fn();
    } finally {
      lock.release();
    }
  };

  const read: Query = (s, values) => {
    if (nesting) assertNotInTransaction('a storage call outside the transaction');
    return withClient((client) => run(client, s, values));
  };
  const write: Query = (s, values) => {
    if (nesting) assertNotInTransaction('a storage call outside the transaction');
    return inTurn(() =>
      withClient(async (client) => {
        // BEGIN with the lock, the statement and COMMIT in one round trip (the connection pipelines: pool.ts).
        // Should BEGIN or the statement fail, the transaction is aborted and PostgreSQL answers the COMMIT
        // with a ROLLBACK: nothing of it is written, and the first failure is what is thrown.
        oneWritePerBurst(client);
        const begun = client.query(BEGIN_LOCKED);
        const done = run<never>(client, s, values);
        const committed = client.query('COMMIT');
        const [b, d, c] = await Promise.allSettled([begun, done, committed]);
        const failure = [b, d, c].find((r) => r.status === 'rejected');
        if (failure) {
          await rollbackQuietly(client);
          throw failure.reason;
        }
        assertCommitted(c);
        return (d as PromiseFulfilledResult<Result<never>>).value;
      }),
    );
  };
  const lease = <T>(fn: (q: Query) => Promise<T>): Promise<T> => {
    if (nesting) assertNotInTransaction('a storage call outside the transaction');
    return withClient(async (client) => {
      try {
        await client.query('BEGIN');
        const result = await fn((s, values) => run(client, s, values));
        await client.query('COMMIT');
        return result;
      } catch (err) {
        await rollbackQuietly(client);
        throw err;
      }
    });
  };
  const later = async (s: Parameters<Query>[0], values?: unknown[]) => void (await write(s, values));
  const direct = repositories({ read, write, unlocked: read, later, lease });
  const ended = endedRepositories(direct);

  const transaction = <T>(fn: (tx: Transaction) => Promise<T>): Promise<T> => {
    if (nesting) assertNotInTransaction('storage.transaction');
    return inTurn(async () => {
      const client = await connect();
      try {
        let open = true;
        /**
         * The first statement that failed: PostgreSQL aborted the transaction then, so it cannot commit.
         * Answers come back in the order the statements went out, so it is the first in that order too.
         */
        let failed: { err: unknown } | undefined;
        /** Statements sent whose answers nobody awaits (BEGIN, Exec.later): they settle before COMMIT's answer. */
        const pending: Promise<unknown>[] = [];
        const send = <R>(p: Promise<R>): Promise<R> =>
          p.catch((err: unknown) => {
            failed ??= { err };
            throw pgStorageError(failed.err, client);
          });
        const q: Query = async (s, values) => {
          if (!open) throw new TransactionEndedError();
          oneWritePerBurst(client);
          return send(run(client, s, values));
        };
        const later = async (s: Parameters<Query>[0], values?: unknown[]): Promise<void> => {
          if (!open) throw new TransactionEndedError();
          oneWritePerBurst(client);
          pending.push(send(run(client, s, values)).catch(() => {}));
        };
        const state: TransactionState = {};
        // BEGIN, the write lock and the audit chain's head go out with the callback's first statements, in one
        // write (the connection pipelines: pool.ts). If BEGIN or the lock fail, the statements after them fail
        // with their error (their own is "transaction aborted").
        oneWritePerBurst(client);
        pending.push(send(client.query(BEGIN_LOCKED)).catch(() => {}));
        pending.push(askAuditHead(q, state).catch(() => {}));
        const tx = new ViewTransaction(repositories({ read: q, write: q, unlocked: q, later, lease: (f) => f(q), tx: state }), ended);
        let result: T;
        try {
          result = await runCallback(tx, fn);
          // A callback that caught a failed statement's error and went on: nothing it wrote can commit.
          if (failed) throw pgStorageError(failed.err, client);
          let commit: Result<unknown>;
          try {
            commit = await send(client.query('COMMIT') as unknown as Promise<Result<unknown>>);
          } catch (err) {
            throw pgStorageError(err, client);
          }
          // A statement sent without waiting (BEGIN, Exec.later) that failed: its answer came before COMMIT's,
          // which PostgreSQL then carried out as a ROLLBACK.
          await Promise.all(pending);
          const late = failed as { err: unknown } | undefined;
          if (late) throw pgStorageError(late.err, client);
          assertCommitted({ status: 'fulfilled', value: commit });
        } catch (err) {
          open = false;
          tx.end();
          await rollbackQuietly(client);
          runHooks(tx.rollbackHooks, 'rollback', reportHook);
          throw err;
        }
        open = false;
        tx.end();
        // Committed: the transaction resolves whatever a hook does (a caller must not retry done work).
        runHooks(tx.commitHooks, 'commit', reportHook);
        return result;
      } finally {
        release(client);
      }
    });
  };

  let closing: Promise<void> | undefined;
  const closeAfterTransaction = async (): Promise<void> => {
    let stuck: unknown;
    if (!lock.tryAcquire()) {
      try {
        await lock.acquire();
      } catch (err) {
        if (!(err instanceof StorageBusyError)) throw err;
        stuck = err;
      }
    }
    // With a transaction still open after the wait, ending the pool closes its connection: the server rolls it back.
    await pool.end();
    if (stuck) throw new StorageBusyError(`closed with a transaction still open after ${LOCK_TIMEOUT_MS} ms (PostgreSQL rolled it back)`, { cause: stuck });
  };

  const storage = {
    engine: 'postgres',
    signingKeys: pgSigningKeys({ read, write, unlocked: read, later, lease }),
    transaction,
    ping: async () => void (await read(SELECT_1)),
    maintain: (log: Logger) => startPostgresMaintenance(pool, url, log),
    close: () => (closing ??= closeAfterTransaction()),
    ...direct,
  } as Storage;
  pools.set(storage, pool);
  return storage;
}

/**
 * Opens the database at `url` (postgres:// or postgresql://), applying
 * pending migrations, and returns its storage. Rejects with
 * StorageOpenError (one line, no password) when the server cannot be
 * reached, refuses the login or the migrations; the pool is closed then.
 */
export async function openPostgresStorage(url: string, opts: PostgresStorageOptions & { poolSize?: number } = {}): Promise<Storage> {
  const pool = createPool(url, opts.poolSize === undefined ? {} : { max: opts.poolSize });
  try {
    await migrate(pool);
  } catch (err) {
    await pool.end().catch(() => {});
    throw new StorageOpenError('JIT_DATABASE_URL', `cannot open the database at ${shownDatabaseUrl(url)}: ${whyNotOpened(err)}`, { cause: err });
  }
  return createPostgresStorage(url, pool, opts);
}

/**
 * The pg Pool behind a PostgreSQL storage. FOR TESTS ONLY (seeding and
 * inspecting tables with SQL) and the engine itself: nothing in src/
 * outside src/storage/ may use it.
 */
export function postgresPool(storage: Storage): pg.Pool {
  const pool = pools.get(storage);
  if (!pool) throw new Error(`postgresPool: not a PostgreSQL storage (engine ${storage.engine})`);
  return pool;
}
