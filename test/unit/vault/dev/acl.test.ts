import { describe, expect, it } from 'vitest';
import { Acl } from '../../../../src/vault/dev/acl.ts';
import type { Operation } from '../../../../src/vault/dev/acl.ts';
import { parsePolicy } from '../../../../src/vault/dev/policy.ts';

function acl(...texts: string[]): Acl {
  const policies = texts.map((t, i) => parsePolicy(`p${i}`, t));
  return Acl.fromPolicies(policies.map((p) => p.name), policies);
}

describe('Acl', () => {
  it('root allows everything with sudo and reports ["root"]', () => {
    const root = Acl.fromPolicies(['root'], []);
    expect(root.check('delete', 'sys/anything')).toEqual({ allowed: true, sudo: true });
    expect(root.capabilities('x')).toEqual(['root']);
  });

  it('no policies means deny', () => {
    const a = acl();
    expect(a.check('read', 'secret/data/x').allowed).toBe(false);
    expect(a.capabilities('secret/data/x')).toEqual(['deny']);
  });

  // Examples from the comment on the priority order in vault/acl.go.
  it.each([
    ['foo/a*', 'foo/+', 'foo/ab'],
    ['foo/bar/+/baz', 'foo/+/bar/baz', 'foo/bar/bar/baz'],
    ['foo/+/bar', 'foo/+/ba*', 'foo/x/bar'],
    ['foo/+', 'foo/*', 'foo/x'],
    ['foo/bar/+/baz', 'foo/+/+/baz', 'foo/bar/x/baz'],
    ['foo/+/bar/ba*', 'foo/+/bar/b*', 'foo/x/bar/baz'],
  ])('"%s" has priority over "%s" for %s', (winner, loser, path) => {
    const a = acl(`path "${winner}" { capabilities = ["read"] }`, `path "${loser}" { capabilities = ["deny"] }`);
    expect(a.check('read', path).allowed).toBe(true);
    const b = acl(`path "${winner}" { capabilities = ["deny"] }`, `path "${loser}" { capabilities = ["read"] }`);
    expect(b.check('read', path).allowed).toBe(false);
  });

  it('only the longest prefix glob competes', () => {
    const a = acl('path "a/*" { capabilities = ["read"] }\npath "a/b/*" { capabilities = ["list"] }');
    expect(a.capabilities('a/b/c')).toEqual(['list']);
    expect(a.capabilities('a/x')).toEqual(['read']);
  });

  it('unions capabilities on the same pattern; deny on it wins whatever the order', () => {
    const a = acl('path "x/*" { capabilities = ["read"] }', 'path "x/*" { capabilities = ["update"] }');
    expect(a.capabilities('x/y')).toEqual(['read', 'update']);
    const d1 = acl('path "x/*" { capabilities = ["deny"] }', 'path "x/*" { capabilities = ["read"] }');
    const d2 = acl('path "x/*" { capabilities = ["read"] }', 'path "x/*" { capabilities = ["deny"] }');
    expect(d1.capabilities('x/y')).toEqual(['deny']);
    expect(d2.capabilities('x/y')).toEqual(['deny']);
  });

  it('sudo is reported only where the matching rule grants it', () => {
    const a = acl('path "auth/token/create-orphan" { capabilities = ["update", "sudo"] }\npath "auth/token/*" { capabilities = ["update"] }');
    expect(a.hasSudo('auth/token/create-orphan')).toBe(true);
    expect(a.hasSudo('auth/token/create')).toBe(false);
    expect(a.capabilities('auth/token/create-orphan')).toEqual(['sudo', 'update']);
  });

  it('LIST checks the folder without its trailing slash against globs first', () => {
    const a = acl('path "kv/metadata/app*" { capabilities = ["list"] }');
    expect(a.check('list', 'kv/metadata/app/').allowed).toBe(true);
    expect(a.check('read', 'kv/metadata/app/').allowed).toBe(false);
  });

  it.each<[Operation, string]>([
    ['read', 'read'],
    ['list', 'list'],
    ['create', 'create'],
    ['update', 'update'],
    ['delete', 'delete'],
    ['patch', 'patch'],
  ])('operation %s needs the %s capability and nothing else grants it', (op, cap) => {
    const others = ['read', 'list', 'create', 'update', 'delete', 'patch', 'sudo'].filter((c) => c !== cap);
    expect(acl(`path "p" { capabilities = ["${cap}"] }`).check(op, 'p').allowed).toBe(true);
    expect(acl(`path "p" { capabilities = [${others.map((c) => `"${c}"`).join(',')}] }`).check(op, 'p').allowed).toBe(false);
  });
});
