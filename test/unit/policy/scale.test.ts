import { describe, expect, it } from 'vitest';
import { evaluateGate, evaluateVault } from '../../../src/broker/policy/evaluate.ts';
import { loadPolicyDir } from '../../../src/broker/policy/load.ts';
import type { PolicySet, Rule, Tier } from '../../../src/broker/policy/types.ts';
import { policyDir, removePolicyDirs } from './helpers.ts';
import { afterAll } from 'vitest';

afterAll(removePolicyDirs);

const RULES = 10_000;
const AGENTS = 100;

/** Rule i: agent `agent-(i % 100)` (every 50th for "*"), on `team-i/...`, tier 1..3. */
function rules(): Rule[] {
  const out: Rule[] = [];
  for (let i = 0; i < RULES; i++) {
    const base = {
      name: `rule-${i}`,
      file: 'scale.yaml',
      agents: i % 50 === 0 ? ['*'] : [`agent-${i % AGENTS}`],
      tier: ((i % 3) + 1) as Tier,
      maxTtlSeconds: 600 + i,
    };
    out.push(
      i % 10 === 9
        ? { ...base, resource: 'gate', repos: [`team-${i}/*`], refs: ['refs/heads/agent/*'] }
        : { ...base, resource: 'vault', paths: [`team-${i}/data/*`, `team-${i}/+/config`], capabilities: ['read', 'list'] },
    );
  }
  return out;
}

describe('10,000 rules', () => {
  const policy: PolicySet = {
    agents: new Map(),
    rules: rules(),
    deny: [{ file: 'scale.yaml', paths: ['team-1/data/secret/*'], repos: [], refs: [] }],
    files: ['scale.yaml'],
  };

  it('finds the covering rule for an agent among all of them', () => {
    expect(evaluateVault(policy, 'agent-7', [{ path: 'team-7/data/app', capabilities: ['read'] }])).toMatchObject({
      ok: true,
      rules: ['rule-7'],
      requiredTier: 2,
      ttlSeconds: 607,
    });
    expect(evaluateVault(policy, 'agent-7', [{ path: 'team-9907/x/config', capabilities: ['list'] }])).toMatchObject({
      ok: true,
      rules: ['rule-9907'],
    });
    expect(evaluateVault(policy, 'agent-8', [{ path: 'team-7/data/app', capabilities: ['read'] }])).toMatchObject({
      ok: false,
      code: 'NOT_COVERED',
    });
    expect(evaluateVault(policy, 'anyone', [{ path: 'team-100/data/app', capabilities: ['read'] }])).toMatchObject({
      ok: true,
      rules: ['rule-100'],
    });
    expect(evaluateVault(policy, 'agent-1', [{ path: 'team-1/data/secret/k', capabilities: ['read'] }])).toMatchObject({
      code: 'DENIED_BY_POLICY',
    });
    expect(evaluateGate(policy, 'agent-19', 'team-19/repo', ['refs/heads/agent/x'])).toMatchObject({ ok: true, rules: ['rule-19'] });
  });

  it('evaluates many requests for many agents', () => {
    let issued = 0;
    for (let n = 0; n < 5000; n++) {
      const i = (n * 7919) % RULES;
      if (i % 10 === 9) continue;
      const agent = i % 50 === 0 ? `someone-${n}` : `agent-${i % AGENTS}`;
      const d = evaluateVault(policy, agent, [
        { path: `team-${i}/data/app/${n}`, capabilities: ['read', 'list'] },
        { path: `team-${i}/prod/config`, capabilities: ['read'] },
      ]);
      if (d.ok) issued++;
    }
    expect(issued).toBeGreaterThan(4000);
  });

  it('loads and evaluates the same set from a YAML file', () => {
    const lines = ['rules:'];
    for (const r of policy.rules) {
      lines.push(`  - name: ${r.name}`, `    agents: ${JSON.stringify(r.agents)}`, `    resource: ${r.resource}`);
      if (r.resource === 'vault') {
        lines.push(`    paths: ${JSON.stringify(r.paths)}`, `    capabilities: [${r.capabilities.join(', ')}]`);
      } else {
        lines.push(`    repos: ${JSON.stringify(r.repos)}`, `    refs: ${JSON.stringify(r.refs)}`);
      }
      lines.push(`    tier: ${r.tier}`, `    max_ttl: ${r.maxTtlSeconds}`);
    }
    const result = loadPolicyDir(policyDir({ 'scale.yaml': `${lines.join('\n')}\n` }));
    if (!result.ok) throw new Error(result.problems[0]?.message);
    expect(result.policy.rules).toHaveLength(RULES);
    expect(
      evaluateVault(result.policy, 'agent-42', [{ path: 'team-42/data/x', capabilities: ['list'] }]),
    ).toMatchObject({ ok: true, rules: ['rule-42'], ttlSeconds: 642 });
  });
});
