import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { StorageBusyError, StorageError, StorageUnavailableError, StorageUniqueError } from '../errors.ts';

const MIGRATIONS_DIR = join(dirname(fileURLToPath(import.meta.url)), 'migrations');

/**
 * THE write lock: the transaction-level advisory lock every write
 * transaction takes first (`pg_advisory_xact_lock(WRITE_LOCK_KEY)`), so that
 * one writer at a time runs on the database, across every broker on it
 * (docs/architecture.md, "Storage"). A fixed key ("jitwrite" in ASCII);
 * advisory locks are per database, so two installations on two databases of
 * one server never contend.
 */
export const WRITE_LOCK_KEY = '7667787896944424037';

/** BEGIN and the write lock in one round trip (a simple-protocol query of two statements). */
export const BEGIN_LOCKED = `BEGIN; SELECT pg_advisory_xact_lock(${WRITE_LOCK_KEY})`;

/** How long a statement waits for a lock (the write lock, a row) before StorageBusyError: SQLite's busy wait. */
export const LOCK_TIMEOUT_MS = 5_000;

/**
 * A session idle inside a transaction this long is ended by the server,
 * which rolls the transaction back and frees the write lock: a wedged or
 * paused broker cannot hold every other broker's writes for longer. A
 * transaction's callback awaits only its own statements, a millisecond
 * apart; this leaves room for a long GC pause on a busy host.
 */
export const IDLE_IN_TRANSACTION_TIMEOUT_MS = 15_000;

/** How long getting a connection may take before StorageUnavailableError (an unreachable host). */
export const CONNECT_TIMEOUT_MS = 5_000;

/** Statements wait for the lock longer while migrating: another broker may be migrating the same database. */
const MIGRATION_LOCK_TIMEOUT = '60s';

/** The connections of one broker process (transactions take one at a time: storage.ts). */
const POOL_SIZE = 10;

/** Clients whose connection failed (an 'error' event): what they were running failed for want of the database. */
const broken = new WeakSet<pg.ClientBase>();

/**
 * int8 (bigint: epoch-ms columns, COUNT(*), identities) as a JS number; the
 * values fit in 2^53. Set on this engine's pools only, never pg's global
 * parsers, so another user of `pg` in the process is unaffected.
 */
const types = {
  getTypeParser(oid: number, format?: 'text' | 'binary') {
    if (oid === pg.types.builtins.INT8 && format !== 'binary') return (value: string) => Number(value);
    return pg.types.getTypeParser(oid, format);
  },
};

/** The URL with this engine's session settings added to any `options` it names. */
function withSessionSettings(url: string): string {
  const u = new URL(url);
  const mine = `-c lock_timeout=${LOCK_TIMEOUT_MS} -c idle_in_transaction_session_timeout=${IDLE_IN_TRANSACTION_TIMEOUT_MS}`;
  const theirs = u.searchParams.get('options');
  u.searchParams.set('options', theirs ? `${theirs} ${mine}` : mine);
  return u.href;
}

/**
 * A pool on `url` (a postgres:// URL). A connection that fails while idle in
 * the pool, or while checked out between two statements, emits 'error': both
 * are listened to here, so a database that goes away never crashes the
 * process; the pool drops the connection and the next call connects anew.
 */
export function createPool(url: string, opts: { max?: number } = {}): pg.Pool {
  const pool = new pg.Pool({
    connectionString: withSessionSettings(url),
    max: opts.max ?? POOL_SIZE,
    connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
    idleTimeoutMillis: 30_000,
    // Idle connections never keep the process alive: a CLI command that returns exits at once.
    allowExitOnIdle: true,
    keepAlive: true,
    application_name: 'jit-broker',
    // Statements go out without waiting for the answer of the one before
    // (each still with its own Sync, so answers and errors stay per
    // statement): a transaction's BEGIN and first statement, or its last
    // writes and COMMIT, share one round trip (storage.ts, Exec.later).
    pipeline: true,
    types,
  });
  pool.on('error', (_err, client) => void broken.add(client));
  pool.on('connect', (client) => {
    client.on('error', () => void broken.add(client));
  });
  return pool;
}

const UNAVAILABLE_ERRNO = new Set(['ECONNREFUSED', 'ECONNRESET', 'ECONNABORTED', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN']);

/**
 * PostgreSQL's errors as the storage interface's, by SQLSTATE or socket
 * error code (never by message text):
 * - 23505 unique_violation → StorageUniqueError;
 * - 55P03 lock_not_available (lock_timeout), 40P01 deadlock, 40001
 *   serialization failure → StorageBusyError (nothing was changed: retry);
 * - the server going away or refusing (57P01-57P03 shutdown and startup,
 *   class 08 connection exceptions, 53300 too many connections, 25P03 an idle
 *   transaction ended by the server), a socket error, or any failure of a
 *   client whose connection broke → StorageUnavailableError.
 * Anything else is returned as it is.
 */
export function pgStorageError(err: unknown, client?: pg.ClientBase): unknown {
  if (err instanceof StorageError) return err;
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code === 'string') {
    if (code === '23505') return new StorageUniqueError('a uniqueness rule refused the write', { cause: err });
    if (code === '55P03' || code === '40P01' || code === '40001') return new StorageBusyError('the database is busy (another writer holds it)', { cause: err });
    if (/^(57P0[123]|08...|53300|25P03)$/.test(code) || UNAVAILABLE_ERRNO.has(code)) return unavailable(err);
  }
  if (client && broken.has(client)) return unavailable(err);
  return err;
}

export function unavailable(err: unknown): StorageUnavailableError {
  return new StorageUnavailableError('the database is unavailable (connection refused or lost)', { cause: err });
}

/**
 * The URL as it may be shown (logs, error lines): scheme, host, port and
 * database; never the user, the password or the query (which may carry a
 * password too).
 */
export function shownDatabaseUrl(url: string): string {
  try {
    const u = new URL(url);
    return `${u.protocol}//${u.host}${u.pathname}`;
  } catch {
    return '(an unparsable URL)';
  }
}

const CONNECT_FAILURES: Record<string, string> = {
  ECONNREFUSED: 'connection refused (is PostgreSQL running and listening there?)',
  ECONNRESET: 'the connection was reset',
  ETIMEDOUT: 'the connection timed out',
  EHOSTUNREACH: 'the host is unreachable',
  ENETUNREACH: 'the network is unreachable',
  ENOTFOUND: 'the host name does not resolve',
  EAI_AGAIN: 'the host name could not be resolved (DNS)',
  '28P01': 'the password was refused',
  '28000': 'the role may not log in (pg_hba.conf or a role without LOGIN)',
  '3D000': 'the database does not exist (create it first: docs/operations.md)',
  '42501': 'the role may not create tables there (grant it CREATE on the database\'s schema: docs/operations.md)',
  '57P03': 'the server is starting up or shutting down',
  '53300': 'the server has too many connections',
};

/**
 * Why a start could not open the database, in words an operator acts on:
 * by error code; a server's own message otherwise (it never holds the
 * password); the error's name for anything else (a timeout).
 */
export function whyNotOpened(err: unknown): string {
  const cause = err instanceof StorageError && err.cause !== undefined ? err.cause : err;
  const code = (cause as { code?: unknown } | null)?.code;
  if (typeof code === 'string' && CONNECT_FAILURES[code]) return CONNECT_FAILURES[code];
  if (cause instanceof pg.DatabaseError) return `the server refused: ${cause.message} (SQLSTATE ${cause.code})`;
  if (cause instanceof AggregateError) return whyNotOpened(cause.errors[0]);
  return `no answer within ${CONNECT_TIMEOUT_MS / 1000} s, or the connection failed (${cause instanceof Error ? cause.name : 'unknown error'})`;
}

/** Whether the client's connection failed: it must be destroyed, not returned to the pool. */
export function isBroken(client: pg.ClientBase): boolean {
  return broken.has(client);
}

/**
 * Applies pending numbered migrations (migrations/NNNN_name.sql) in ONE
 * transaction under the write lock: brokers starting together on an empty
 * database migrate it once (the others wait, then find nothing to do), and
 * no broker writes while the schema changes.
 */
export async function migrate(pool: pg.Pool): Promise<void> {
  let client: pg.PoolClient;
  try {
    client = await pool.connect();
  } catch (err) {
    throw unavailable(err);
  }
  try {
    await client.query(`BEGIN; SET LOCAL lock_timeout = '${MIGRATION_LOCK_TIMEOUT}'; SELECT pg_advisory_xact_lock(${WRITE_LOCK_KEY})`);
    try {
      await client.query(`CREATE TABLE IF NOT EXISTS schema_migrations (
        version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)`);
      const applied = new Set((await client.query<{ version: number }>('SELECT version FROM schema_migrations')).rows.map((r) => r.version));
      const files = readdirSync(MIGRATIONS_DIR).filter((f) => /^\d{4}_[a-z0-9_]+\.sql$/.test(f)).sort();
      for (const file of files) {
        const version = Number(file.slice(0, 4));
        if (applied.has(version)) continue;
        await client.query(readFileSync(join(MIGRATIONS_DIR, file), 'utf8'));
        await client.query('INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)', [version, file.slice(5, -4), Date.now()]);
      }
      await client.query('COMMIT');
    } catch (err) {
      await client.query('ROLLBACK').catch(() => {});
      throw err;
    }
  } catch (err) {
    client.release(isBroken(client) || undefined);
    throw pgStorageError(err, client);
  }
  client.release();
}
