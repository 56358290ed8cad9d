import { describe, expect, it } from 'vitest';
import { PatternSet, sessionAllowed, simpleGlobMatch, vaultGlobMatch } from '../../../src/broker/policy/glob.ts';
import type { AgentPolicy } from '../../../src/broker/policy/types.ts';

const VAULT_CASES: Array<[pattern: string, value: string, expected: boolean]> = [
  ['secret/data/app', 'secret/data/app', true],
  ['secret/data/app', 'secret/data/app2', false],
  ['secret/data/app', 'secret/data', false],
  ['secret/data/*', 'secret/data/app', true],
  ['secret/data/*', 'secret/data/a/b/c', true],
  ['secret/data/*', 'secret/data', false],
  ['secret/data/*', 'secret/metadata/app', false],
  ['secret/data/ap*', 'secret/data/app', true],
  ['secret/data/ap*', 'secret/data/ap', true],
  ['secret/data/ap*', 'secret/data/ap/x', true],
  ['secret/data/ap*', 'secret/data/a', false],
  ['secret/data/ap*', 'secret/data/xap', false],
  // As in Vault's acl.go, `+` matches an empty segment: a LIST of `team` is checked as `team/`.
  ['secret/+/app', 'secret//app', true],
  ['team/+', 'team/', true],
  ['team/+', 'team', false],
  ['team/+/+', 'team/a/', true],
  ['team/+/+', 'team/', false],
  ['team/+/*', 'team/a/', true],
  ['team/+/*', 'team/', false],
  ['team/+/d*', 'team/a/', false],
  ['*', 'anything/at/all', true],
  ['secret/+/app', 'secret/data/app', true],
  ['secret/+/app', 'secret/data/x/app', false],
  ['secret/+/app', 'secret/app', false],
  ['secret/+/app', 'secret/data/app/x', false],
  ['secret/+', 'secret/x', true],
  ['secret/+', 'secret/x/y', false],
  ['+/data/*', 'kv/data/a/b', true],
  ['+/data/*', 'kv/data', false],
  ['secret/+/ap*', 'secret/data/apple/x', true],
  ['secret/+/ap*', 'secret/data/b', false],
  ['+/+', 'a/b', true],
  ['+/+', 'a', false],
  ['refs/heads/agent/*', 'refs/heads/agent/x', true],
  ['refs/heads/agent/*', 'refs/heads/agentx', false],
  ['refs/tags/v*', 'refs/tags/v1.2.3', true],
];

describe('vaultGlobMatch', () => {
  it.each(VAULT_CASES)('%s vs %s → %s', (pattern, value, expected) => {
    expect(vaultGlobMatch(pattern, value)).toBe(expected);
  });
});

describe('PatternSet', () => {
  const patterns = [...new Set(VAULT_CASES.map(([p]) => p))];
  const values = [...new Set(VAULT_CASES.map(([, v]) => v)), 'a', 'secret', 'secret/data/app/x/y', 'x/y/z'];

  it.each(values)('agrees with vaultGlobMatch for %s', (value) => {
    const set = new PatternSet<string>();
    for (const p of patterns) set.add(p, p);
    const found: string[] = [];
    set.forEachMatch(value, (p) => {
      found.push(p);
    });
    expect(found.sort()).toEqual(patterns.filter((p) => vaultGlobMatch(p, value)).sort());
    expect(set.matches(value)).toBe(found.length > 0);
  });

  it('keeps every value of a pattern added twice', () => {
    const set = new PatternSet<number>();
    set.add('a/*', 1);
    set.add('a/*', 2);
    set.add('a/b', 3);
    const found: number[] = [];
    set.forEachMatch('a/b', (v) => {
      found.push(v);
    });
    expect(found.sort()).toEqual([1, 2, 3]);
    expect(set.size).toBe(3);
  });

  it('stops when the visitor returns true', () => {
    const set = new PatternSet<number>();
    for (let i = 0; i < 5; i++) set.add('a/*', i);
    let calls = 0;
    expect(set.forEachMatch('a/b', () => ++calls === 2)).toBe(true);
    expect(calls).toBe(2);
    expect(set.firstMatch('a/b')).toBe(0);
    expect(set.firstMatch('b')).toBeUndefined();
  });
});

describe('simpleGlobMatch', () => {
  it.each([
    ['hook:jit:moltbot*', 'hook:jit:moltbot', true],
    ['hook:jit:moltbot*', 'hook:jit:moltbot:task-1', true],
    ['hook:jit:moltbot*', 'hook:jit:molt', false],
    ['hook:jit:moltbot*', 'xhook:jit:moltbot', false],
    ['*', '', true],
    ['*', 'anything', true],
    ['', '', true],
    ['', 'a', false],
    ['*bot', 'moltbot', true],
    ['*bot', 'robots', false],
    ['a*c*e', 'abcde', true],
    ['a*c*e', 'ace', true],
    ['a*c*e', 'abcd', false],
    ['hook:*:dev', 'hook:jit:dev', true],
    ['hook:*:dev', 'hook:jit:dev2', false],
    ['a**b', 'ab', true],
    ['exact', 'exact', true],
    ['exact', 'exac', false],
  ])('%j vs %j → %s', (pattern, value, expected) => {
    expect(simpleGlobMatch(pattern, value)).toBe(expected);
  });

  it('does not blow up on pathological input', () => {
    expect(simpleGlobMatch('*a*a*a*a*a*a*a*b', 'a'.repeat(5000))).toBe(false);
  });
});

describe('sessionAllowed', () => {
  const agent: AgentPolicy = { name: 'moltbot', sessions: ['hook:jit:moltbot*', 'agent:main:exact'] };

  it.each([
    ['hook:jit:moltbot', true],
    ['hook:jit:moltbot:1', true],
    ['agent:main:exact', true],
    ['agent:main:exact2', false],
    ['hook:jit:dev', false],
    ['', false],
  ])('%j → %s', (key, expected) => {
    expect(sessionAllowed(agent, key)).toBe(expected);
  });

  it('an agent with no sessions, or no policy entry, may target none', () => {
    expect(sessionAllowed({ name: 'x', sessions: [] }, 'hook:jit:x')).toBe(false);
    expect(sessionAllowed(undefined, 'hook:jit:x')).toBe(false);
  });
});
