import { loadConfig, type Config } from '../config/config.ts';
import { InvalidPolicyFiles, PolicyStore } from '../broker/policy/index.ts';
import { createStorageDeps, type StorageDeps } from '../create-deps.ts';
import { readServiceSettings, settingsOf, withServiceSettings, type RecordedSettings, type ServiceSettings } from '../config/service-settings.ts';
import { describeDatabase, openStorage } from '../storage/index.ts';
import type { Storage } from '../storage/storage.ts';
import { createIdGenerator } from '../lib/ids.ts';
import { createLogger } from '../lib/logger.ts';
import { createOutboxSink } from '../webhooks/outbox.ts';
import type { CliIo } from '../lib/cli-io.ts';

export type CliContext = {
  config: Config;
  storage: Storage;
  deps: StorageDeps;
  /** With `decisions`: the policy in force, loaded once for the outbox and for re-checking grants. */
  policies?: PolicyStore;
  /**
   * The running service's settings as it recorded them (its quorum, whether
   * it runs the development Vault, its Telegram chat), for what a command
   * says about the service; this shell's own when no service recorded any
   * (or, for a command that only shows, none readable). Read on first use,
   * except for a deciding command, which reads them at open.
   */
  settings(): Promise<ServiceSettings>;
  /**
   * The settings as the running service recorded them (undefined when none
   * are), without the shell's fallback; throws when they do not parse. Read
   * on first use.
   */
  recordedSettings(): Promise<RecordedSettings | undefined>;
  close(): Promise<void>;
} & Pick<StorageDeps, 'agents' | 'audit'>;

/**
 * The database-side parts an offline CLI command needs, from the service's
 * own environment.
 *
 * With `decisions`, the command decides (jit approve/deny, revocations) and
 * must have the service's effects, not the shell's (SPEC §10): the settings
 * the running service recorded at start (claim window, quorum, approval
 * timeout, public URL, policy directory; src/config/service-settings.ts)
 * replace the shell's, with a warning for each variable the shell sets to
 * something else. If no service ever recorded them on this database, the
 * shell's environment is used, with a warning saying so. The decision's
 * webhook event goes to the outbox in the same transaction, as facts; the
 * running service's dispatcher resolves its target and token and renders it
 * with the service's configuration. Addressing the event needs the policy
 * (it names each agent's webhook target), so a broken policy directory
 * refuses the command rather than lose the event, unless the caller takes
 * `invalidPolicies` (revocations): the events are then written unaddressed
 * and the service addresses them from the policy it has loaded.
 */
export function openCliContext(io: CliIo, opts: { decisions: true; invalidPolicies?: undefined }): Promise<CliContext & { policies: PolicyStore }>;
export function openCliContext(io: CliIo, opts?: CliContextOptions): Promise<CliContext>;
export async function openCliContext(io: CliIo, opts: CliContextOptions = {}): Promise<CliContext> {
  let config = loadConfig(io.env);
  const storage = await openStorage(config);
  let events;
  let policies: PolicyStore | undefined;
  let settings: ServiceSettings | undefined;
  let recordedOnce: Promise<RecordedSettings | undefined> | undefined;
  const recordedSettings = (): Promise<RecordedSettings | undefined> => (recordedOnce ??= readServiceSettings(storage));
  try {
    if (opts.decisions) {
      const recorded = await recordedSettings();
      settings = recorded?.settings ?? settingsOf(config);
      if (recorded) {
        const merged = withServiceSettings(config, io.env, recorded.settings);
        config = merged.config;
        for (const line of merged.differences) io.err(`warning: ${line}`);
      } else {
        io.err(
          `warning: no jit serve has recorded its settings in ${describeDatabase(config)} (not started since the upgrade?); ` +
            `this decision uses this shell's JIT_CLAIM_WINDOW, JIT_TIER3_QUORUM and JIT_POLICIES, which may differ from the service's`,
        );
      }
      try {
        ({ policies } = PolicyStore.load(config.policiesDir));
      } catch (err) {
        if (!(err instanceof InvalidPolicyFiles)) throw err;
        const problem = new UnaddressableWebhooks(config.policiesDir, err.problems);
        if (!opts.invalidPolicies) throw problem;
        // Events are written unaddressed; the service's dispatcher addresses them from its own policy.
        opts.invalidPolicies(problem);
      }
      events = createOutboxSink({ storage, policies, ids: createIdGenerator(), log: createLogger('warn', process.stderr) });
    }
  } catch (err) {
    await storage.close();
    throw err;
  }
  const deps = createStorageDeps({ config, storage, ...(events ? { events } : {}) });
  const shownConfig = config;
  return {
    config,
    storage,
    deps,
    ...(policies ? { policies } : {}),
    // For a command that only shows: the service's recorded settings, or this shell's when none (or none readable) are recorded.
    async settings(): Promise<ServiceSettings> {
      if (settings === undefined) {
        try {
          settings = (await recordedSettings())?.settings ?? settingsOf(shownConfig);
        } catch {
          settings = settingsOf(shownConfig);
        }
      }
      return settings;
    },
    recordedSettings,
    agents: deps.agents,
    audit: deps.audit,
    close: () => storage.close(),
  };
}

export interface CliContextOptions {
  /** The command decides: the service's settings, the policy, the webhook outbox (see openCliContext). */
  decisions?: boolean;
  /**
   * With `decisions`: go ahead when the policy files are invalid (a
   * revocation must not wait for a policy fix), after calling this. The
   * decision events are then written without a target, and the running
   * service's dispatcher looks up each agent's webhook in the policy it has
   * loaded. Without it, invalid policy files refuse the command.
   */
  invalidPolicies?: (problem: UnaddressableWebhooks) => void;
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
