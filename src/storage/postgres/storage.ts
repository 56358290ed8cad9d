import type pg from 'pg';
import type { Logger } from '../../lib/logger.ts';
import { StorageBusyError, StorageOpenError, StorageUnavailableError, TransactionEndedError } from '../errors.ts';
import { FifoLock } from '../lock.ts';
import type { Repositories, Storage, Transaction } from '../storage.ts';
import { ViewTransaction, afterGroupCommit, assertNotInTransaction, endedRepositories, groupOutcome, nesting, rolledBackWithGroup, runCallback, runHooks, warnHookError, type GroupOutcome, type HookErrorReporter } from '../transaction-kit.ts';
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

/**
 * At most this many transactions share one PostgreSQL transaction (GROUP
 * COMMIT): it bounds how long the first waits for the COMMIT, and the
 * subtransactions of one (PostgreSQL keeps 64 per session in shared memory).
 */
const GROUP_MAX = 16;
const SAVEPOINT = 'SAVEPOINT jit_member';
const RELEASE = 'RELEASE SAVEPOINT jit_member';
const UNDO = 'ROLLBACK TO SAVEPOINT jit_member; RELEASE SAVEPOINT jit_member';

/** A transaction of a group: what it sent whose answer nobody awaits, and the first of its statements that failed. */
interface Member {
  failed?: { err: unknown };
  readonly pending: Promise<unknown>[];
  /** Those of `pending` that may fail in normal operation (Exec.later's `fallible`): answered before it ends. */
  readonly fallible: Promise<unknown>[];
}

/** Why a group was not committed: the failure, and the member whose statement it was (none: the group's own). */
interface GroupFailure {
  err: unknown;
  by?: Member;
}

/** Transactions of this process sharing one PostgreSQL transaction (GROUP COMMIT: createPostgresStorage). */
interface Group extends GroupOutcome<GroupFailure> {
  readonly client: pg.PoolClient;
  /** What the last member to succeed left its repositories knowing (the audit chain's head), for the next. */
  carried: TransactionState;
  members: number;
  /** The member whose callback runs, if any. */
  current: Member | undefined;
  /** Every statement sent ahead, of every member. */
  readonly pending: Promise<unknown>[];
  /** A failure no savepoint can undo: nothing of the group can commit. */
  broken: GroupFailure | undefined;
  ended: boolean;
}

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
 *
 * GROUP COMMIT. A transaction that ends while others of this process wait
 * for the lock hands the lock, its connection and its open PostgreSQL
 * transaction to the next: up to GROUP_MAX transactions share one BEGIN,
 * one write lock and one COMMIT (one flush of the WAL), each after the
 * first inside a savepoint of its own. The lock is held for round trips, so
 * under load a queue is always there. What the Storage interface promises
 * holds per transaction, as in SQLite's group commit (sqlite/storage.ts):
 * - one that fails goes back to its savepoint once its own statements are
 *   answered, and rejects; the others keep their writes (the first, with
 *   no savepoint and nobody before it, rolls back the transaction);
 * - one that succeeded resolves after the COMMIT, and rejects with its
 *   rollback hooks run if the group was not committed;
 * - a statement sent ahead (Exec.later) whose failure is answered after
 *   its transaction ended cannot be undone alone: the whole group rolls
 *   back, that transaction rejects with the failure, the others with
 *   StorageBusyError (retry). Those statements fail only on a uniqueness
 *   rule over random ids or a broken audit chain;
 * - each runs alone, in the lock's order, and sees what those before it
 *   wrote; a call outside a transaction reads committed data, or, taking
 *   the lock (a write, close), commits the group first;
 * - nothing outside the database happens before a transaction's COMMIT:
 *   its caller learns of it only after (credential-issue.ts's crash-safety
 *   order holds as it is).
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
      // A group the last transaction passed the lock on to this call: committed first (this call never joins one).
      if (group) await endGroup(group);
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

  /** The group open on its connection, while its members hand the lock on to each other (GROUP COMMIT above). */
  let group: Group | undefined;
  const openGroup = async (): Promise<Group> => ({ ...groupOutcome<GroupFailure>(), client: await connect(), carried: {}, members: 0, current: undefined, pending: [], broken: undefined, ended: false });
  /**
   * `p`, a statement sent for member `m` (undefined: the group's own, SAVEPOINT or RELEASE), with its failure
   * recorded: while `m` runs it is `m`'s (its savepoint undoes it); after, or the group's own, nothing of the
   * group can commit. Answers come back in the order the statements went out.
   */
  const sent = <R>(g: Group, m: Member | undefined, p: Promise<R>): Promise<R> =>
    p.catch((err: unknown) => {
      // A lost connection is nobody's failure: every transaction of the group is told the database is unavailable.
      const by = pgStorageError(err, g.client) instanceof StorageUnavailableError ? undefined : m;
      // Every statement after the first failure fails with "transaction aborted": the first is what is thrown.
      const first = m && g.current === m ? (m.failed ??= { err }) : (g.broken ??= { err, by });
      throw pgStorageError(first.err, g.client);
    });
  /** A statement whose answer nobody awaits (BEGIN, Exec.later, SAVEPOINT, RELEASE): it settles before COMMIT's answer. */
  const sentAhead = (g: Group, m: Member | undefined, p: Promise<unknown>, fallible = false): void => {
    const settled = sent(g, m, p).catch(() => {});
    g.pending.push(settled);
    m?.pending.push(settled);
    if (fallible) m?.fallible.push(settled);
  };
  /** Commits the group (rolls it back if it cannot commit) and settles its members; the caller holds the lock. */
  const endGroup = async (g: Group): Promise<void> => {
    if (g.ended) return;
    g.ended = true;
    if (group === g) group = undefined;
    try {
      if (!g.broken) {
        const commit = await g.client.query('COMMIT').then(
          (value: unknown) => ({ status: 'fulfilled', value }) as const,
          (err: unknown) => void (g.broken ??= { err }),
        );
        // A statement sent ahead that failed: its answer came before COMMIT's, which PostgreSQL then carried out as a ROLLBACK.
        await Promise.all(g.pending);
        if (commit && !g.broken) {
          try {
            assertCommitted(commit);
          } catch (err) {
            g.broken = { err };
          }
        }
      }
      if (g.broken) await rollbackQuietly(g.client);
    } finally {
      release(g.client);
    }
    if (g.broken) g.reject(g.broken);
    else g.resolve();
  };
  /**
   * After a member: the lock passes to the next in the queue, who joins the group (a transaction) or commits it
   * first (anything else); with nobody waiting, a full group or one that cannot commit, the group ends now.
   */
  const passOn = async (g: Group): Promise<void> => {
    if (!g.broken && g.members < GROUP_MAX && lock.waiting > 0) return lock.release();
    try {
      await endGroup(g);
    } finally {
      lock.release();
    }
  };
  /** What a member whose group was not committed rejects with: its own failure, or that another's took the group down. */
  const groupError = (f: GroupFailure, m: Member, client: pg.PoolClient) => (f.by && f.by !== m ? rolledBackWithGroup(pgStorageError(f.err)) : pgStorageError(f.err, client));

  const transaction = async <T>(fn: (tx: Transaction) => Promise<T>): Promise<T> => {
    if (nesting) assertNotInTransaction('storage.transaction');
    if (!lock.tryAcquire()) await lock.acquire();
    let g: Group;
    try {
      g = group ??= await openGroup();
    } catch (err) {
      lock.release();
      throw err;
    }
    const { client } = g;
    const m: Member = { pending: [], fallible: [] };
    g.current = m;
    const first = ++g.members === 1;
    // Its own copy: one that fails leaves the next knowing what it knew before.
    const state: TransactionState = { auditHead: g.carried.auditHead, auditHeadAsked: g.carried.auditHeadAsked };
    let open = true;
    const q: Query = async (s, values) => {
      if (!open) throw new TransactionEndedError();
      oneWritePerBurst(client);
      return sent(g, m, run(client, s, values));
    };
    const later = async (s: Parameters<Query>[0], values?: unknown[], fallible?: boolean): Promise<void> => {
      if (!open) throw new TransactionEndedError();
      oneWritePerBurst(client);
      sentAhead(g, m, run(client, s, values), fallible);
    };
    // The first member sends BEGIN, the write lock and the audit chain's head with its first statements, in one
    // write (the connection pipelines: pool.ts); each later one its savepoint. If BEGIN or the lock fail, the
    // statements after them fail with their error (their own is "transaction aborted").
    oneWritePerBurst(client);
    if (first) {
      sentAhead(g, m, client.query(BEGIN_LOCKED));
      const asked = askAuditHead(q, state).catch(() => {});
      g.pending.push(asked);
      m.pending.push(asked);
    } else {
      sentAhead(g, undefined, client.query(SAVEPOINT));
    }
    const tx = new ViewTransaction(repositories({ read: q, write: q, unlocked: q, later, lease: (f) => f(q), tx: state }), ended);
    let result: T;
    try {
      result = await runCallback(tx, fn);
      // Answered now, while a failure is still this transaction's alone (unless it is the group's last: COMMIT says).
      if (m.fallible.length > 0 && (!first || lock.waiting > 0)) await Promise.all(m.fallible);
      // A callback that caught a failed statement's error and went on: nothing it wrote can commit.
      if (m.failed) throw pgStorageError(m.failed.err, client);
    } catch (err) {
      open = false;
      tx.end();
      const why = await undo(g, m, first, err);
      runHooks(tx.rollbackHooks, 'rollback', reportHook);
      throw why;
    }
    open = false;
    tx.end();
    if (!first) sentAhead(g, undefined, client.query(RELEASE));
    g.carried = { auditHead: state.auditHead, auditHeadAsked: state.auditHeadAsked };
    g.current = undefined;
    await passOn(g);
    return afterGroupCommit(tx, g, result, reportHook, (f) => groupError(f, m, client));
  };
  /**
   * Undoes member `m`, whose callback failed with `err`, and passes the lock on; returns what it rejects with.
   * A later member goes back to its savepoint once its own statements are answered (a failure among them is
   * its own) and the group goes on. The first (nobody else wrote yet), or a member of a group that can no
   * longer commit, ends the group: everything is rolled back.
   */
  const undo = async (g: Group, m: Member, first: boolean, err: unknown): Promise<unknown> => {
    if (!first && !g.broken) {
      await Promise.all(m.pending);
      if (!g.broken) await sent(g, undefined, g.client.query(UNDO)).catch(() => {});
      if (!g.broken) {
        g.current = undefined;
        await passOn(g);
        return err;
      }
    }
    g.broken ??= { err, by: m };
    g.current = undefined;
    await passOn(g);
    // Its own failure, or (if another's took the group down) what the others of the group are told.
    return g.broken.by && g.broken.by !== m ? groupError(g.broken, m, g.client) : err;
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
    if (!stuck && group) await endGroup(group);
    // A transaction still running after the wait: its group can no longer commit. Those of it that ended reject
    // now; the running one ends the group when its callback does (rolling it back and giving its connection
    // back), and pool.end() waits for that connection.
    if (stuck && group) {
      const g = group;
      group = undefined;
      g.reject((g.broken ??= { err: stuck }));
    }
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
