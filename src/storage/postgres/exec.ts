import type pg from 'pg';

/**
 * A statement, prepared by name on each connection the first time it runs
 * there (pg keeps the names per connection). Names are global: each
 * statement is made once, at module level, by {@link sql}.
 */
export interface Statement {
  readonly name: string;
  readonly text: string;
}

const names = new Set<string>();

export function sql(name: string, text: string): Statement {
  if (names.has(name)) throw new Error(`statement name ${name} used twice`);
  names.add(name);
  return { name: `jit_${name}`, text };
}

export interface Result<R> {
  rows: R[];
  rowCount: number;
}

/** Runs one statement (`values` are its $1, $2, …). */
export type Query = <R = Record<string, unknown>>(s: Statement, values?: unknown[]) => Promise<Result<R>>;

/**
 * How a repository's statements run: inside a transaction every kind goes
 * to the transaction's connection; outside one (storage.ts):
 * - `read`: straight to the pool (committed data only);
 * - `write`: a one-statement transaction under the write lock;
 * - `unlocked`: a single conditional write on the pool WITHOUT the write
 *   lock (the outbox's owner-conditional marks: docs/architecture.md);
 * - `lease(fn)`: `fn`'s statements in a short transaction of their own
 *   WITHOUT the write lock (the outbox claim, FOR UPDATE SKIP LOCKED).
 * - `later`: a write whose answer its caller does not use. Inside a
 *   transaction it goes out at once and resolves without waiting for the
 *   server, so the transaction's next statement (or its COMMIT) travels in
 *   the same round trip (the connections pipeline: pool.ts); should it
 *   fail, the transaction fails with its error at the next statement or at
 *   COMMIT, and nothing it wrote commits. Outside a transaction: `write`.
 *   Only for statements whose failure no caller handles inside the
 *   transaction: the audit chain's inserts, the rate limit's events, and the
 *   request and credential inserts, whose one failure (a uniqueness rule) the caller handles for
 *   the whole transaction (Storage, "TRANSACTIONS"). `fallible`: the
 *   statement may fail in normal operation (that uniqueness rule can be
 *   met), not only through a bug: its transaction learns the answer before
 *   it ends, since under group commit (storage.ts) a failure answered after
 *   would take the transactions after it down too.
 * - `tx`: state that lives as long as the transaction (absent outside one).
 */
export interface Exec {
  read: Query;
  write: Query;
  unlocked: Query;
  later(s: Statement, values?: unknown[], fallible?: boolean): Promise<void>;
  lease<T>(fn: (q: Query) => Promise<T>): Promise<T>;
  tx?: TransactionState;
}

/** What a transaction's repositories remember while it runs. */
export interface TransactionState {
  /**
   * The audit chain's newest entry as this transaction knows it: read once,
   * then each entry it inserts. A transaction holds the database-wide write
   * lock, so no one else can append meanwhile.
   */
  auditHead?: { seq: number; hash: string };
  /**
   * The chain head as asked for with the transaction's BEGIN and write lock
   * (`askAuditHead` in audit.ts): the first `last()` awaits this answer instead of
   * making a round trip of its own.
   */
  auditHeadAsked?: Promise<{ seq: number; hash: string } | undefined>;
  /**
   * The requests this transaction inserted: a credential inserted for one
   * of them cannot meet another of its request (the uniqueness rule of
   * credentials), so its insert is not `fallible` (Exec.later).
   */
  insertedRequests?: Set<string>;
}

/** Runs `s` on `client`, by name. */
export function run<R>(client: pg.ClientBase | pg.Pool, s: Statement, values: unknown[] = []): Promise<Result<R>> {
  return client.query({ name: s.name, text: s.text, values }) as unknown as Promise<Result<R>>;
}

/** Sockets whose writes are held until the current burst of work ends (see {@link oneWritePerBurst}). */
const held = new WeakSet<object>();

/**
 * Holds what is written to `client`'s connection until the end of the
 * current burst of synchronous code and promise callbacks (process.nextTick
 * runs once the microtask queue is empty, before the event loop polls for
 * I/O), then sends it in one system call. pg writes each pipelined statement
 * on its own: a transaction's BEGIN and its first statements, or an audit
 * insert and the statement after it, were one write each, and each write to
 * the server costs a system call and a wake-up of its process. Nothing waits
 * longer for it: the statements go out before this process could read any
 * answer.
 */
export function oneWritePerBurst(client: pg.ClientBase): void {
  const stream = (client as unknown as { connection?: { stream?: { cork?(): void; uncork?(): void } } }).connection?.stream;
  if (!stream?.cork || !stream.uncork || held.has(stream)) return;
  held.add(stream);
  stream.cork();
  process.nextTick(() => {
    held.delete(stream);
    stream.uncork!();
  });
}

/** The first row, or undefined. */
export async function one<R>(p: Promise<Result<R>>): Promise<R | undefined> {
  return (await p).rows[0];
}

export async function all<R>(p: Promise<Result<R>>): Promise<R[]> {
  return (await p).rows;
}

/** Whether the statement changed exactly one row. */
export async function changedOne(p: Promise<Result<unknown>>): Promise<boolean> {
  return (await p).rowCount === 1;
}

/** A COUNT(*) or other single number in column `n`. */
export async function count(p: Promise<Result<{ n: number }>>): Promise<number> {
  return (await p).rows[0]?.n ?? 0;
}
