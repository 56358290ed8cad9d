import type { Logger } from '../../lib/logger.ts';
import { formatProblems, loadPolicyDir } from './load.ts';
import type { PolicyProblem, PolicySet } from './types.ts';

export type ReloadResult =
  | { ok: true; warnings: PolicyProblem[] }
  | { ok: false; problems: PolicyProblem[] };

/** Policy files that cannot be loaded at all: the message lists every problem. */
export class InvalidPolicyFiles extends Error {
  constructor(
    readonly dir: string,
    /** One line per problem (formatProblems). */
    readonly problems: string[],
  ) {
    super(`policy files in ${dir} are invalid:\n  ${problems.join('\n  ')}`);
    this.name = 'InvalidPolicyFiles';
  }
}

/**
 * Holds the policy in force. A reload that finds any problem leaves the
 * current policy in place (SPEC §5: a bad file keeps the old policy), so the
 * caller only has to log the problems.
 */
export class PolicyStore {
  #policy: PolicySet | undefined;

  constructor(initial?: PolicySet) {
    this.#policy = initial;
  }

  /** A store holding the policy in `dir`, with its warnings; throws {@link InvalidPolicyFiles} if the files are invalid. */
  static load(dir: string): { policies: PolicyStore; warnings: PolicyProblem[] } {
    const policies = new PolicyStore();
    const loaded = policies.reload(dir);
    if (!loaded.ok) throw new InvalidPolicyFiles(dir, formatProblems(loaded.problems));
    return { policies, warnings: loaded.warnings };
  }

  /** A reload asked for while running (SIGHUP), its outcome logged; false if the previous policy stays in force. */
  reloadAndLog(dir: string, log: Pick<Logger, 'info' | 'error'>): boolean {
    const r = this.reload(dir);
    if (r.ok) log.info({ dir, warnings: formatProblems(r.warnings) }, 'policies reloaded');
    else log.error({ problems: formatProblems(r.problems) }, 'policy reload failed; the previous policy stays in force');
    return r.ok;
  }

  /**
   * Loads `dir` and, if it is valid, makes it the current policy. On
   * failure the previous policy (if any) stays current.
   */
  reload(dir: string): ReloadResult {
    const result = loadPolicyDir(dir);
    if (!result.ok) return { ok: false, problems: result.problems };
    this.#policy = result.policy;
    return { ok: true, warnings: result.warnings ?? [] };
  }

  /** Whether a policy has been loaded. */
  get loaded(): boolean {
    return this.#policy !== undefined;
  }

  /**
   * The policy in force. Read it once per request and use that value
   * throughout, so a concurrent reload cannot mix two policies.
   *
   * @throws Error when no policy was ever loaded.
   */
  current(): PolicySet {
    if (!this.#policy) throw new Error('no policy loaded');
    return this.#policy;
  }
}
