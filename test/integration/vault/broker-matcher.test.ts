import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { evaluateVault } from '../../../src/broker/policy/evaluate.ts';
import { checkPattern } from '../../../src/broker/policy/syntax.ts';
import { startDevVault } from '../../../src/vault/dev/index.ts';
import type { DevVault } from '../../../src/vault/dev/index.ts';
import { policyFrom, removePolicyDirs } from '../../unit/policy/helpers.ts';
import { MATCH_CASES, matchAclCases, matchCasePaths, type MatchCase } from './acl-cases.ts';
import { runAclCase } from './acl-runner.ts';

/**
 * The broker's glob matcher against Vault's ACL on one table of cases
 * (acl-cases.ts MATCH_CASES): for each, the development Vault is asked over
 * HTTP (a token whose policy grants read and list on the pattern performs
 * the operation) and the broker is asked twice (a rule with that pattern,
 * and a `deny` entry with it). All three must agree with each other and
 * with the case's expectation.
 */

const scope = { kv: 'secret', ns: 'match' };
afterAll(removePolicyDirs);

function brokerPolicies(pattern: string) {
  const agents = `agents:\n  a:\n    sessions: ["hook:a"]\n`;
  const rule = (name: string, path: string) =>
    `  - name: ${name}\n    agents: [a]\n    resource: vault\n    paths: [${JSON.stringify(path)}]\n    capabilities: [read, list]\n    tier: 1\n    max_ttl: 1h\n`;
  return {
    grant: policyFrom(`${agents}rules:\n${rule('on-pattern', pattern)}`),
    deny: policyFrom(`${agents}rules:\n${rule('everything', '*')}deny:\n  - paths: [${JSON.stringify(pattern)}]\n`),
  };
}

/** Whether the broker's matcher says the pattern reaches the operation: as a rule's coverage, and as a deny entry. */
function broker(c: MatchCase): { covered: boolean; denied: boolean } {
  const { pattern, path } = matchCasePaths(scope, c);
  const { grant, deny } = brokerPolicies(pattern);
  const pairs = [{ path, capabilities: [c.op] }];
  const g = evaluateVault(grant, 'a', pairs);
  const d = evaluateVault(deny, 'a', pairs);
  expect(g.ok || g.code === 'NOT_COVERED', JSON.stringify(g)).toBe(true);
  expect(d.ok || d.code === 'DENIED_BY_POLICY', JSON.stringify(d)).toBe(true);
  return { covered: g.ok, denied: !d.ok };
}

describe('broker matcher and Vault ACL agree on one table', () => {
  let vault: DevVault;
  beforeAll(async () => {
    vault = await startDevVault({ port: 0 });
  });
  afterAll(async () => {
    await vault.close();
  });

  it('covers the edge cases the table is for, with both outcomes', () => {
    expect(MATCH_CASES.length).toBeGreaterThanOrEqual(25);
    expect(MATCH_CASES.some((c) => c.matches && c.op === 'list' && c.pattern.endsWith('/+'))).toBe(true);
    expect(MATCH_CASES.filter((c) => !c.matches).length).toBeGreaterThan(10);
  });

  it.each(MATCH_CASES.map((c, i) => [c.name, c, i] as const))('%s', async (_name, c, i) => {
    const { pattern } = matchCasePaths(scope, c);
    expect(checkPattern(pattern, 'path')).toBeUndefined();

    const inVault: boolean[] = [];
    for (const [j, aclCase] of matchAclCases(scope, c).entries()) {
      const status = await runAclCase({ url: vault.url, rootToken: vault.rootToken, ...scope }, aclCase, `${i}-${j}`);
      expect([200, 204, 403], `${aclCase.path}: ${status}`).toContain(status);
      inVault.push(status !== 403);
    }
    const b = broker(c);
    expect({ vault: inVault, brokerRule: b.covered, brokerDeny: b.denied }).toEqual({
      vault: inVault.map(() => c.matches),
      brokerRule: c.matches,
      brokerDeny: c.matches,
    });
  });

  it('both refuse "+*" (a "*" right after a "+")', async () => {
    const pattern = `${scope.kv}/metadata/${scope.ns}/team/+*`;
    expect(checkPattern(pattern, 'path')).toMatch(/"\+" must be a whole segment/);
    const res = await fetch(`${vault.url}/v1/sys/policies/acl/match-bad`, {
      method: 'POST',
      headers: { 'X-Vault-Token': vault.rootToken },
      body: JSON.stringify({ policy: `path "${pattern}" { capabilities = ["deny"] }` }),
    });
    expect(res.status).toBe(400);
    expect(JSON.stringify(await res.json())).toContain("'+*' is forbidden");
  });
});
