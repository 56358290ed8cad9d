/**
 * In-process micro-benchmark of policy evaluation (`evaluateVault`) for
 * policies of 10, 1,000 and 10,000 rules: the per-request cost, and the
 * one-off cost of indexing a freshly loaded policy for an agent.
 */
import { compilePolicy, evaluateVault } from '../../src/broker/policy/evaluate.ts';
import type { PolicySet, Rule, Tier, VaultPair } from '../../src/broker/policy/types.ts';
import { summarize, type Summary } from './stats.ts';

const AGENTS = 100;

/**
 * `count` rules spread over 100 agents (every 50th rule for `*`), each on
 * its own team's paths; with `shared` every rule names the one agent, the
 * worst case for that agent's index.
 */
export function syntheticPolicy(count: number, shared = false): PolicySet {
  const rules: Rule[] = [];
  for (let i = 0; i < count; i++) {
    rules.push({
      name: `rule-${i}`,
      file: 'bench.yaml',
      agents: shared ? ['agent-7'] : i % 50 === 0 ? ['*'] : [`agent-${i % AGENTS}`],
      resource: 'vault',
      paths: [`team-${i}/data/*`, `team-${i}/+/config`],
      capabilities: ['read', 'list'],
      tier: ((i % 3) + 1) as Tier,
      maxTtlSeconds: 600 + i,
    });
  }
  return {
    agents: new Map(),
    rules,
    deny: [{ file: 'bench.yaml', paths: ['sys/*', 'auth/*', 'team-1/data/secret/*'], repos: [], refs: [] }],
    files: ['bench.yaml'],
  };
}

export interface PolicyEvalResult {
  rules: number;
  /** Rules that apply to the evaluated agent. */
  agentRules: number;
  /** compilePolicy (done once per load) in ms. */
  compileMs: number;
  /** The agent's first evaluation after a load (builds its index), in ms. */
  firstCallMs: number;
  /** Per-call latency in microseconds. */
  perCall: Summary;
  callsPerSecond: number;
}

/** Times `evaluateVault` of a two-pair request by `agent-7` for a policy of `count` rules. */
export function benchPolicyEval(count: number, o: { shared?: boolean; iterations?: number } = {}): PolicyEvalResult {
  const policy = syntheticPolicy(count, o.shared);
  const agentRules = policy.rules.filter((r) => r.agents.includes('agent-7') || r.agents.includes('*')).length;
  // The agent's own highest-numbered rule: its paths are what the request asks for.
  const own = [...policy.rules].reverse().find((r) => r.agents.includes('agent-7'))!;
  const team = own.name.slice('rule-'.length);
  const pairs: VaultPair[] = [
    { path: `team-${team}/data/app`, capabilities: ['read'] },
    { path: `team-${team}/prod/config`, capabilities: ['read', 'list'] },
  ];

  let t = performance.now();
  compilePolicy(policy);
  const compileMs = performance.now() - t;
  t = performance.now();
  const first = evaluateVault(policy, 'agent-7', pairs, 300);
  const firstCallMs = performance.now() - t;
  if (!first.ok) throw new Error(`benchmark request was refused: ${first.message}`);

  const iterations = o.iterations ?? 50_000;
  for (let i = 0; i < 5_000; i++) evaluateVault(policy, 'agent-7', pairs, 300);
  const samples = new Array<number>(iterations);
  const began = process.hrtime.bigint();
  for (let i = 0; i < iterations; i++) {
    const s = process.hrtime.bigint();
    evaluateVault(policy, 'agent-7', pairs, 300);
    samples[i] = Number(process.hrtime.bigint() - s) / 1000;
  }
  const totalSeconds = Number(process.hrtime.bigint() - began) / 1e9;
  return { rules: count, agentRules, compileMs, firstCallMs, perCall: summarize(samples), callsPerSecond: iterations / totalSeconds };
}
