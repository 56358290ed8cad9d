/** Public API of the policy engine: loading, validation, matching and evaluation. */
export type {
  AgentPolicy,
  Capability,
  Decision,
  DenyEntry,
  GateRule,
  LoadResult,
  PairDecision,
  PolicyProblem,
  PolicySet,
  Rule,
  Tier,
  VaultPair,
  VaultRule,
  WebhookTarget,
} from './types.ts';
export { FORBIDDEN_CAPABILITIES, GRANTABLE_CAPABILITIES } from './types.ts';
export { describePolicy, formatProblems, loadPolicyDir, MAX_POLICY_FILE_BYTES } from './load.ts';
export { compilePolicy, evaluateGate, evaluateVault } from './evaluate.ts';
export { validateRefName, validateRepoName, validateVaultPath, checkPattern } from './syntax.ts';
export { PatternSet, sessionAllowed, simpleGlobMatch, vaultGlobMatch } from './glob.ts';
export { DEFAULT_MAX_TTL_SECONDS, MAX_TTL_LIMIT_SECONDS, policyFileSchema } from './schema.ts';
export { InvalidPolicyFiles, PolicyStore, type ReloadResult } from './policy-store.ts';
