/**
 * Policy evaluation (SPEC §5). Pure functions over a PolicySet; the indexes
 * they need are built once per PolicySet (and per agent, on first use) and
 * cached, so a PolicySet must not be mutated after it is first evaluated.
 */
import { PatternSet, simpleGlobMatch } from './glob.ts';
import { validateRefName, validateRepoName, validateVaultPath } from './syntax.ts';
import {
  FORBIDDEN_CAPABILITIES,
  GRANTABLE_CAPABILITIES,
  type Capability,
  type Decision,
  type DenyEntry,
  type GateRule,
  type PairDecision,
  type PolicySet,
  type Rule,
  type Tier,
  type VaultPair,
  type VaultRule,
} from './types.ts';

export { validateRefName, validateRepoName, validateVaultPath } from './syntax.ts';

interface Indexed<R extends Rule> {
  rule: R;
  /** Position in PolicySet.rules: the last tie-break. */
  order: number;
}

interface IndexedGateRule extends Indexed<GateRule> {
  refs: PatternSet<true>;
}

interface AgentIndex {
  vault: Map<Capability, PatternSet<Indexed<VaultRule>>>;
  gate: PatternSet<IndexedGateRule>;
}

interface DenyPair {
  entry: DenyEntry;
  repos: PatternSet<string>;
  refs: PatternSet<string>;
}

interface CompiledPolicy {
  /** Rule positions by exact agent name. */
  byAgent: Map<string, number[]>;
  /** Rules whose `agents` contain a glob (including "*"), with those globs. */
  globRules: Array<{ order: number; globs: string[] }>;
  gateRefs: Map<number, PatternSet<true>>;
  denyPaths: PatternSet<{ pattern: string; entry: DenyEntry }>;
  /** Deny entries with repos but no refs: any ref of those repos. */
  denyRepos: PatternSet<{ pattern: string; entry: DenyEntry }>;
  /** Deny entries with refs but no repos: those refs in every repo. */
  denyRefs: PatternSet<{ pattern: string; entry: DenyEntry }>;
  /** Deny entries with both: the pair must match both. */
  denyRepoRefs: DenyPair[];
  agents: Map<string, AgentIndex>;
}

/** Agent indexes kept per policy; agent names come from authenticated agents, so this rarely fills. */
const MAX_CACHED_AGENTS = 1024;

const compiled = new WeakMap<PolicySet, CompiledPolicy>();

/**
 * Builds (once) the indexes evaluation uses for `policy`. Called by the
 * loader; evaluation calls it lazily for PolicySets built by hand.
 */
export function compilePolicy(policy: PolicySet): void {
  getCompiled(policy);
}

function getCompiled(policy: PolicySet): CompiledPolicy {
  let c = compiled.get(policy);
  if (!c) {
    c = build(policy);
    compiled.set(policy, c);
  }
  return c;
}

function build(policy: PolicySet): CompiledPolicy {
  const c: CompiledPolicy = {
    byAgent: new Map(),
    globRules: [],
    gateRefs: new Map(),
    denyPaths: new PatternSet(),
    denyRepos: new PatternSet(),
    denyRefs: new PatternSet(),
    denyRepoRefs: [],
    agents: new Map(),
  };
  policy.rules.forEach((rule, order) => {
    const globs: string[] = [];
    for (const a of new Set(rule.agents)) {
      if (a.includes('*')) {
        globs.push(a);
      } else {
        let list = c.byAgent.get(a);
        if (!list) c.byAgent.set(a, (list = []));
        list.push(order);
      }
    }
    if (globs.length > 0) c.globRules.push({ order, globs });
    if (rule.resource === 'gate') {
      const refs = new PatternSet<true>();
      for (const r of rule.refs) refs.add(r, true);
      c.gateRefs.set(order, refs);
    }
  });
  for (const entry of policy.deny) {
    for (const pattern of entry.paths) c.denyPaths.add(pattern, { pattern, entry });
    if (entry.repos.length > 0 && entry.refs.length > 0) {
      const repos = new PatternSet<string>();
      const refs = new PatternSet<string>();
      for (const p of entry.repos) repos.add(p, p);
      for (const p of entry.refs) refs.add(p, p);
      c.denyRepoRefs.push({ entry, repos, refs });
    } else {
      for (const pattern of entry.repos) c.denyRepos.add(pattern, { pattern, entry });
      for (const pattern of entry.refs) c.denyRefs.add(pattern, { pattern, entry });
    }
  }
  return c;
}

function agentIndex(policy: PolicySet, agent: string): AgentIndex {
  const c = getCompiled(policy);
  let idx = c.agents.get(agent);
  if (idx) return idx;

  const orders = new Set(c.byAgent.get(agent) ?? []);
  for (const g of c.globRules) {
    if (g.globs.some((glob) => simpleGlobMatch(glob, agent))) orders.add(g.order);
  }
  idx = { vault: new Map(), gate: new PatternSet() };
  for (const order of [...orders].sort((a, b) => a - b)) {
    const rule = policy.rules[order]!;
    if (rule.resource === 'vault') {
      const entry = { rule, order };
      for (const cap of new Set(rule.capabilities)) {
        let set = idx.vault.get(cap);
        if (!set) idx.vault.set(cap, (set = new PatternSet()));
        for (const p of rule.paths) set.add(p, entry);
      }
    } else {
      const entry = { rule, order, refs: c.gateRefs.get(order)! };
      for (const p of rule.repos) idx.gate.add(p, entry);
    }
  }
  if (c.agents.size >= MAX_CACHED_AGENTS) c.agents.clear();
  c.agents.set(agent, idx);
  return idx;
}

/** Lowest tier first; on equal tiers the larger max_ttl; then the earlier rule. */
function better(a: Indexed<Rule>, b: Indexed<Rule> | undefined): boolean {
  if (!b) return true;
  if (a.rule.tier !== b.rule.tier) return a.rule.tier < b.rule.tier;
  if (a.rule.maxTtlSeconds !== b.rule.maxTtlSeconds) return a.rule.maxTtlSeconds > b.rule.maxTtlSeconds;
  return a.order < b.order;
}

function checkRequestedTtl(ttl: number | undefined): void {
  if (ttl !== undefined && !(Number.isSafeInteger(ttl) && ttl > 0)) {
    throw new RangeError(`requested ttl must be a positive whole number of seconds, got ${ttl}`);
  }
}

/** Accumulates the outcome of the pairs that passed. */
class Outcome {
  tier: Tier = 1;
  ttl: number;
  readonly rules = new Set<string>();
  readonly pairs: PairDecision[] = [];

  constructor(requestedTtl: number | undefined) {
    this.ttl = requestedTtl ?? Number.POSITIVE_INFINITY;
  }

  add(pair: string, used: Indexed<Rule>): void {
    const { rule } = used;
    if (rule.tier > this.tier) this.tier = rule.tier;
    if (rule.maxTtlSeconds < this.ttl) this.ttl = rule.maxTtlSeconds;
    this.rules.add(rule.name);
    this.pairs.push({ pair, tier: rule.tier, rule: rule.name, maxTtlSeconds: rule.maxTtlSeconds });
  }

  decision(): Decision {
    return { ok: true, requiredTier: this.tier, ttlSeconds: this.ttl, rules: [...this.rules], pairs: this.pairs };
  }
}

function reject(code: Exclude<Decision, { ok: true }>['code'], pair: string, message: string): Decision {
  return { ok: false, code, pair, message };
}

const q = JSON.stringify;
const FORBIDDEN = new Set<string>(FORBIDDEN_CAPABILITIES);
const GRANTABLE = new Set<string>(GRANTABLE_CAPABILITIES);

/**
 * Decides a Vault request of `agent` for `pairs` (SPEC §5). Each requested
 * (path, capability) must be a grantable capability on a well-formed path,
 * match no `deny` entry and be covered by a rule for this agent granting that
 * capability; the first pair failing rejects the whole request. On success
 * the required tier is the highest over the pairs of each pair's lowest
 * covering tier, and the TTL is `requestedTtlSeconds` clamped to the
 * smallest max_ttl of the rules used (per pair: the covering rule with the
 * lowest tier, ties going to the larger max_ttl, then to the earlier rule).
 *
 * @throws RangeError when `requestedTtlSeconds` is given but not a positive
 *   whole number (callers parse and validate it first).
 */
export function evaluateVault(
  policy: PolicySet,
  agent: string,
  pairs: readonly VaultPair[],
  requestedTtlSeconds?: number,
): Decision {
  checkRequestedTtl(requestedTtlSeconds);
  if (pairs.length === 0) return reject('INVALID_PATH', '', 'the request names no Vault paths');
  const idx = agentIndex(policy, agent);
  const c = getCompiled(policy);
  const out = new Outcome(requestedTtlSeconds);
  const seen = new Set<string>();

  for (const { path, capabilities } of pairs) {
    if (capabilities.length === 0) {
      return reject('FORBIDDEN_CAPABILITY', `${path}:`, `no capabilities requested for path ${q(path)}`);
    }
    for (const cap of capabilities) {
      const pair = `${path}:${cap}`;
      if (seen.has(pair)) continue;
      seen.add(pair);

      if (FORBIDDEN.has(cap)) {
        return reject('FORBIDDEN_CAPABILITY', pair, `capability ${q(cap)} is never issued (requested for ${q(path)})`);
      }
      if (!GRANTABLE.has(cap)) {
        return reject(
          'FORBIDDEN_CAPABILITY',
          pair,
          `unknown capability ${q(cap)} requested for ${q(path)}; valid capabilities: ${GRANTABLE_CAPABILITIES.join(', ')}`,
        );
      }
      const bad = validateVaultPath(path);
      if (bad) return reject('INVALID_PATH', pair, `invalid path ${q(path)}: ${bad}`);

      // Vault checks a LIST of `a/b` as `a/b/`: listing reveals the names below, which a deny of `a/b/*` hides.
      const denied = c.denyPaths.firstMatch(path) ?? (cap === 'list' ? c.denyPaths.firstMatch(`${path}/`) : undefined);
      if (denied) {
        return reject('DENIED_BY_POLICY', pair, `${q(path)} is denied by policy (deny pattern ${q(denied.pattern)})`);
      }

      let best: Indexed<VaultRule> | undefined;
      const visit = (r: Indexed<VaultRule>) => {
        if (better(r, best)) best = r;
      };
      idx.vault.get(cap as Capability)?.forEachMatch(path, visit);
      // A LIST of `a/b` is the folder `a/b/`, which `a/b/*` covers in Vault too.
      if (cap === 'list') idx.vault.get('list')?.forEachMatch(`${path}/`, visit);
      if (!best) {
        return reject('NOT_COVERED', pair, `no rule allows ${q(cap)} on ${q(path)} for agent ${q(agent)}`);
      }
      out.add(pair, best);
    }
  }
  return out.decision();
}

function deniedGate(c: CompiledPolicy, repo: string, ref: string): string | undefined {
  const byRepo = c.denyRepos.firstMatch(repo);
  if (byRepo) return `repo pattern ${q(byRepo.pattern)}`;
  const byRef = c.denyRefs.firstMatch(ref);
  if (byRef) return `ref pattern ${q(byRef.pattern)}`;
  for (const d of c.denyRepoRefs) {
    const r = d.repos.firstMatch(repo);
    const f = r !== undefined ? d.refs.firstMatch(ref) : undefined;
    if (r !== undefined && f !== undefined) return `repo pattern ${q(r)} with ref pattern ${q(f)}`;
  }
  return undefined;
}

/**
 * Decides a gate (git push) request of `agent` for `repo` and `refs`, the
 * same way as {@link evaluateVault} with (repo, ref) pairs, formatted
 * `repo:ref`. A deny entry with repos only denies every ref of those repos,
 * with refs only those refs in every repo, with both the pair must match
 * both.
 *
 * @throws RangeError when `requestedTtlSeconds` is given but not a positive
 *   whole number.
 */
export function evaluateGate(
  policy: PolicySet,
  agent: string,
  repo: string,
  refs: readonly string[],
  requestedTtlSeconds?: number,
): Decision {
  checkRequestedTtl(requestedTtlSeconds);
  const badRepo = validateRepoName(repo);
  if (badRepo) return reject('INVALID_PATH', `${repo}:${refs[0] ?? ''}`, `invalid repo ${q(repo)}: ${badRepo}`);
  if (refs.length === 0) return reject('INVALID_PATH', `${repo}:`, 'the request names no refs');
  const idx = agentIndex(policy, agent);
  const c = getCompiled(policy);
  const out = new Outcome(requestedTtlSeconds);
  const seen = new Set<string>();

  for (const ref of refs) {
    const pair = `${repo}:${ref}`;
    if (seen.has(pair)) continue;
    seen.add(pair);

    const bad = validateRefName(ref);
    if (bad) return reject('INVALID_PATH', pair, `invalid ref ${q(ref)}: ${bad}`);
    const denied = deniedGate(c, repo, ref);
    if (denied) return reject('DENIED_BY_POLICY', pair, `push of ${q(ref)} to ${q(repo)} is denied by policy (${denied})`);

    let best: IndexedGateRule | undefined;
    idx.gate.forEachMatch(repo, (r) => {
      if (better(r, best) && r.refs.matches(ref)) best = r;
    });
    if (!best) return reject('NOT_COVERED', pair, `no rule allows pushing ${q(ref)} to ${q(repo)} for agent ${q(agent)}`);
    out.add(pair, best);
  }
  return out.decision();
}
