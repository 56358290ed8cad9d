import { describe, expect, it } from 'vitest';
import { Cap, DEFAULT_POLICY_TEXT, PolicyParseError, parsePolicy } from '../../../../src/vault/dev/policy.ts';

const rules = (text: string) => parsePolicy('p', text).rules;

describe('parsePolicy', () => {
  it('normalises paths as Vault does', () => {
    expect(rules('path "/secret/data/*" { capabilities = ["read"] }')).toEqual([
      { path: 'secret/data/', isPrefix: true, hasSegmentWildcards: false, caps: Cap.read },
    ]);
    expect(rules('path "secret/+/x*" { capabilities = ["read"] }')[0]).toMatchObject({
      path: 'secret/+/x*',
      isPrefix: false,
      hasSegmentWildcards: true,
    });
    expect(rules('path "+" { capabilities = ["read"] }')[0]!.hasSegmentWildcards).toBe(true);
    expect(rules('path "a/b*c" { capabilities = ["read"] }')[0]).toMatchObject({ path: 'a/b*c', isPrefix: false });
  });

  it('reduces any list containing deny to deny alone', () => {
    expect(rules('path "a" { capabilities = ["read", "deny", "sudo"] }')[0]!.caps).toBe(Cap.deny);
  });

  it('maps legacy policy values', () => {
    expect(rules('path "a" { policy = "write" }')[0]!.caps).toBe(Cap.create | Cap.read | Cap.update | Cap.delete | Cap.list);
    expect(rules('path "a" { policy = "deny" }')[0]!.caps).toBe(Cap.deny);
  });

  it('accepts the JSON form with several paths', () => {
    const r = rules(JSON.stringify({ path: { 'a/b': { capabilities: ['read'] }, 'c/*': { capabilities: ['list', 'update'] } } }));
    expect(r.map((x) => [x.path, x.caps])).toEqual([
      ['a/b', Cap.read],
      ['c/', Cap.list | Cap.update],
    ]);
  });

  it('parses the built-in default policy', () => {
    const r = parsePolicy('default', DEFAULT_POLICY_TEXT).rules;
    expect(r.find((x) => x.path === 'auth/token/lookup-self')?.caps).toBe(Cap.read);
    expect(r.find((x) => x.path === 'cubbyhole/')?.isPrefix).toBe(true);
  });

  it.each([
    ['an unknown capability', 'path "a" { capabilities = ["fly"] }', 'path "a": invalid capability "fly"'],
    ['an unknown top-level key', 'name = "x"\nfoo = 1', 'invalid key "foo" on line 2'],
    ['an unknown path key', 'path "a" {\n  bogus = 1\n}', 'path "a": invalid key "bogus" on line 2'],
    ['"+*"', 'path "a/+*" { capabilities = ["read"] }', `path "a/+*": invalid use of wildcards ('+*' is forbidden)`],
    ['an unknown legacy policy', 'path "a" { policy = "admin" }', 'path "a": invalid policy "admin"'],
    ['capabilities that are not a list', 'path "a" { capabilities = "read" }', 'path "a": capabilities: expected a list of strings'],
    ['parameter constraints the dev Vault cannot enforce', 'path "a" { allowed_parameters = { "x" = [] } }', 'path "a": allowed_parameters is not supported by the development Vault'],
  ])('rejects %s', (_name, text, message) => {
    expect(() => parsePolicy('p', text)).toThrow(PolicyParseError);
    expect(() => parsePolicy('p', text)).toThrow(message);
  });
});
