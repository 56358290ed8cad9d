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
 */
export interface Exec {
  read: Query;
  write: Query;
  unlocked: Query;
  lease<T>(fn: (q: Query) => Promise<T>): Promise<T>;
}

/** Runs `s` on `client`, by name. */
export function run<R>(client: pg.ClientBase | pg.Pool, s: Statement, values: unknown[] = []): Promise<Result<R>> {
  return client.query({ name: s.name, text: s.text, values }) as unknown as Promise<Result<R>>;
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
