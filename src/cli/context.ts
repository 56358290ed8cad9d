import { loadConfig, type Config } from '../config/config.ts';
import { InvalidPolicyFiles, PolicyStore } from '../broker/policy/index.ts';
import { createStorageDeps, type StorageDeps } from '../create-deps.ts';
import { openDatabase, type Db } from '../db/open.ts';
import { createIdGenerator } from '../lib/ids.ts';
import { createLogger } from '../lib/logger.ts';
import { createOutboxSink } from '../webhooks/outbox.ts';
import type { CliIo } from './io.ts';

export type CliContext = {
  config: Config;
  db: Db;
  deps: StorageDeps;
  /** With `decisions`: the policy in force, loaded once for the outbox and for re-checking grants. */
  policies?: PolicyStore;
  close(): void;
} & Pick<StorageDeps, 'agents' | 'repo' | 'audit'>;

/**
 * The database-side parts an offline CLI command needs, from the service's
 * own environment. With `decisions`, decisions made here (jit approve/deny)
 * write their webhook event to the outbox in the same transaction, exactly
 * as the service does; the running service's dispatcher delivers it. That
 * needs the policy (it names each agent's webhook target), so a broken
 * policy directory refuses the command rather than lose the event.
 */
export function openCliContext(io: CliIo, opts: { decisions: true }): CliContext & { policies: PolicyStore };
export function openCliContext(io: CliIo, opts?: { decisions?: boolean }): CliContext;
export function openCliContext(io: CliIo, opts: { decisions?: boolean } = {}): CliContext {
  const config = loadConfig(io.env);
  let events;
  let policies: PolicyStore | undefined;
  let db: Db | undefined;
  if (opts.decisions) {
    try {
      ({ policies } = PolicyStore.load(config.policiesDir));
    } catch (err) {
      if (!(err instanceof InvalidPolicyFiles)) throw err;
      throw new UnaddressableWebhooks(config.policiesDir, err.problems);
    }
    db = openDatabase(config.dbPath);
    events = createOutboxSink({ db, config, policies, ids: createIdGenerator(), log: createLogger('warn', process.stderr) });
  }
  db ??= openDatabase(config.dbPath);
  const deps = createStorageDeps({ config, db, ...(events ? { events } : {}) });
  const opened = db;
  return { config, db, deps, ...(policies ? { policies } : {}), agents: deps.agents, repo: deps.repo, audit: deps.audit, close: () => opened.close() };
}

/** The policy files are invalid, so decision webhooks (addressed by the agents' policy entries) cannot be written. */
export class UnaddressableWebhooks extends Error {
  constructor(
    readonly policiesDir: string,
    readonly problems: readonly string[],
  ) {
    super(`the policy files in ${policiesDir} are invalid, so the decision's webhook could not be addressed; fix them first:\n  ${problems.join('\n  ')}`);
  }
}
