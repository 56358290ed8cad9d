import { AsyncLocalStorage } from 'node:async_hooks';
import { StorageBusyError, TransactionEndedError } from './errors.ts';
import type { Repositories, Transaction } from './storage.ts';

/*
 * What every engine's `transaction` shares, whatever its database: the
 * transaction object (repositories that refuse calls once it ended, commit
 * and rollback hooks), running the hooks, and the development nesting check.
 */

export const REPOSITORIES = ['requests', 'idempotency', 'rateLimits', 'credentials', 'grantPolicies', 'votes', 'agents', 'approvers', 'passkeys', 'consoleSessions', 'challenges', 'audit', 'outbox', 'telegram', 'settings', 'leases'] as const;

/**
 * One transaction: `views` while it is open, `ended` (every call rejects
 * with TransactionEndedError) once it ended.
 */
export class ViewTransaction implements Transaction {
  #open = true;
  commitHooks: (() => void)[] | undefined;
  rollbackHooks: (() => void)[] | undefined;

  constructor(
    private readonly views: Repositories,
    private readonly ended: Repositories,
  ) {}

  #of(): Repositories {
    return this.#open ? this.views : this.ended;
  }

  get requests() { return this.#of().requests; }
  get idempotency() { return this.#of().idempotency; }
  get rateLimits() { return this.#of().rateLimits; }
  get credentials() { return this.#of().credentials; }
  get grantPolicies() { return this.#of().grantPolicies; }
  get votes() { return this.#of().votes; }
  get agents() { return this.#of().agents; }
  get approvers() { return this.#of().approvers; }
  get passkeys() { return this.#of().passkeys; }
  get consoleSessions() { return this.#of().consoleSessions; }
  get challenges() { return this.#of().challenges; }
  get audit() { return this.#of().audit; }
  get outbox() { return this.#of().outbox; }
  get telegram() { return this.#of().telegram; }
  get settings() { return this.#of().settings; }
  get leases() { return this.#of().leases; }

  afterCommit(fn: () => void): void {
    if (!this.#open) throw new TransactionEndedError();
    (this.commitHooks ??= []).push(fn);
  }

  afterRollback(fn: () => void): void {
    if (!this.#open) throw new TransactionEndedError();
    (this.rollbackHooks ??= []).push(fn);
  }

  end(): void {
    this.#open = false;
  }

  get open(): boolean {
    return this.#open;
  }
}

/** Repositories whose every method rejects with TransactionEndedError (shaped after `like`). */
export function endedRepositories(like: Repositories): Repositories {
  const reject = () => Promise.reject(new TransactionEndedError());
  return Object.fromEntries(
    REPOSITORIES.map((key) => [key, Object.fromEntries(Object.keys(like[key]).map((method) => [method, reject]))]),
  ) as unknown as Repositories;
}

/** Reports a commit or rollback hook that threw (the transaction's outcome stands). */
export type HookErrorReporter = (err: unknown, after: 'commit' | 'rollback') => void;

export const warnHookError: HookErrorReporter = (err, after) =>
  process.emitWarning(`a storage ${after} hook threw: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`, 'StorageHookWarning');

/** Runs every hook; one that throws is reported and the others still run. Never throws. */
export function runHooks(hooks: (() => void)[] | undefined, after: 'commit' | 'rollback', report: HookErrorReporter): void {
  if (!hooks) return;
  for (const hook of hooks) {
    try {
      hook();
    } catch (err) {
      try {
        report(err, after);
      } catch {
        // A reporter that throws must not turn the transaction's outcome around either.
      }
    }
  }
}

/**
 * A development check (JIT_STORAGE_NESTING_CHECK=1; the test suite sets it):
 * a call on the storage itself, or a second `transaction`, made from inside
 * a transaction callback would wait for that very transaction and fail
 * with StorageBusyError after the lock wait. With the check on, it throws
 * at once, naming the mistake. Off by default: it costs an async context
 * per transaction.
 */
export const nesting = process.env['JIT_STORAGE_NESTING_CHECK'] === '1' ? new AsyncLocalStorage<ViewTransaction>() : undefined;

export function assertNotInTransaction(what: string): void {
  if (nesting?.getStore()?.open) throw new Error(`${what} inside a transaction callback: use the callback's tx (storage transactions are not reentrant)`);
}

/** Runs a transaction callback, inside the nesting check's context when it is on. */
export function runCallback<T>(tx: ViewTransaction, fn: (tx: Transaction) => Promise<T>): Promise<T> {
  return nesting ? nesting.run(tx, () => fn(tx)) : fn(tx);
}

/**
 * GROUP COMMIT, what both engines share: the promise each transaction of a
 * group awaits, settled once the group's COMMIT is done, or rejected with
 * why nothing of the group was written.
 */
export interface GroupOutcome<E = unknown> {
  committed: Promise<void>;
  resolve(): void;
  reject(err: E): void;
}

export function groupOutcome<E = unknown>(): GroupOutcome<E> {
  let resolve!: () => void;
  let reject!: (err: E) => void;
  const committed = new Promise<void>((res, rej) => ((resolve = res), (reject = rej)));
  // Each member awaits it; a group whose members all failed has nobody listening.
  committed.catch(() => {});
  return { committed, resolve, reject };
}

/**
 * GROUP COMMIT, a transaction's last step once its callback succeeded:
 * waits for its group's COMMIT, then runs its commit hooks and returns
 * `result` (a committed transaction resolves whatever a hook does: its
 * caller must not retry done work); if the group was not committed, runs
 * its rollback hooks and throws `why(err)`.
 */
export async function afterGroupCommit<T, E>(tx: ViewTransaction, group: GroupOutcome<E>, result: T, report: HookErrorReporter, why: (err: E) => unknown): Promise<T> {
  try {
    await group.committed;
  } catch (err) {
    runHooks(tx.rollbackHooks, 'rollback', report);
    throw why(err as E);
  }
  runHooks(tx.commitHooks, 'commit', report);
  return result;
}

/** Why a transaction whose callback succeeded was not written: another of its group failed in a way that took the group down. */
export function rolledBackWithGroup(cause?: unknown): StorageBusyError {
  return new StorageBusyError('the transaction was rolled back with another of its group; nothing was written, retry', cause === undefined ? undefined : { cause });
}
