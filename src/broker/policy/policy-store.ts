import { loadPolicyDir } from './load.ts';
import type { PolicyProblem, PolicySet } from './types.ts';

export type ReloadResult =
  | { ok: true; warnings: PolicyProblem[] }
  | { ok: false; problems: PolicyProblem[] };

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
