import type { Capability } from '../../wire/capabilities.ts';
import type { Tier } from '../../wire/schemas.ts';

export { FORBIDDEN_CAPABILITIES, GRANTABLE_CAPABILITIES, type Capability } from '../../wire/capabilities.ts';
/** The tier type is the wire's (src/wire/schemas.ts), so the agent side need not import the broker for it. */
export type { Tier } from '../../wire/schemas.ts';

export type WebhookTarget =
  /** `url` set when the policy gives `{url, format: openclaw}`; otherwise `OPENCLAW_HOOKS_URL`. */
  | { kind: 'openclaw'; agentId?: string; sessionMode?: string; url?: string }
  | { kind: 'standard'; url: string };

export interface AgentPolicy {
  name: string;
  /** Glob patterns (`*` = any characters) the agent may name as session_key. */
  sessions: string[];
  defaultSession?: string;
  webhook?: WebhookTarget;
  /** The policy file that defines the agent. */
  file?: string;
}

export interface VaultRule {
  name: string;
  file: string;
  agents: string[];
  resource: 'vault';
  paths: string[];
  capabilities: Capability[];
  tier: Tier;
  maxTtlSeconds: number;
}

export interface GateRule {
  name: string;
  file: string;
  agents: string[];
  resource: 'gate';
  repos: string[];
  refs: string[];
  tier: Tier;
  maxTtlSeconds: number;
}

export type Rule = VaultRule | GateRule;

export interface DenyEntry {
  file: string;
  paths: string[];
  repos: string[];
  refs: string[];
}

/** The merged, validated content of every file in the policies directory. */
export interface PolicySet {
  agents: Map<string, AgentPolicy>;
  rules: Rule[];
  deny: DenyEntry[];
  files: string[];
}

export interface VaultPair {
  path: string;
  capabilities: string[];
}

export type Decision =
  | {
      ok: true;
      requiredTier: Tier;
      /** min(requested ttl, smallest max_ttl among the rules used). */
      ttlSeconds: number;
      /** Names of the rules that decided each pair, deduplicated, in order. */
      rules: string[];
      /** Per distinct pair (`path:capability` or `repo:ref`): its required tier and the rule used. */
      pairs?: PairDecision[];
    }
  | {
      ok: false;
      code: 'DENIED_BY_POLICY' | 'NOT_COVERED' | 'FORBIDDEN_CAPABILITY' | 'INVALID_PATH';
      /** The offending pair, e.g. `homelab/data/x:update` or `homelab/repo:refs/heads/main`. */
      pair: string;
      message: string;
    };

/** One problem found while loading policy files; `jit policy check` prints these. */
export interface PolicyProblem {
  file: string;
  /** Rule name or `rules[3]`, `agents.moltbot`, `deny[0]` when unnamed. */
  rule?: string;
  /** Dotted field path inside the rule, e.g. `max_ttl`, `capabilities[2]`. */
  field?: string;
  message: string;
  /** 1-based line in the file, when known. */
  line?: number;
  /** `yaml_syntax`: the file is not YAML; the message already names the line and column. */
  kind?: 'yaml_syntax';
}

export interface PairDecision {
  pair: string;
  tier: Tier;
  rule: string;
  maxTtlSeconds: number;
}

/**
 * `warnings` (when present) are things worth telling the operator that do
 * not stop the policy from loading, e.g. a rule naming an agent no file
 * defines.
 */
export type LoadResult =
  | { ok: true; policy: PolicySet; warnings?: PolicyProblem[] }
  | { ok: false; problems: PolicyProblem[] };
