import { describe, expect, it } from 'vitest';
import {
  checkPattern,
  validateRefName,
  validateRepoName,
  validateVaultPath,
} from '../../../src/broker/policy/syntax.ts';

describe('validateVaultPath', () => {
  it.each(['homelab/data/docker/app', 'a', 'kv/data/x-y_z.1@2:3', `a/${'b'.repeat(510)}`])('accepts %j', (path) => {
    expect(validateVaultPath(path)).toBeUndefined();
  });

  it.each([
    ['', 'path is empty'],
    ['../x', 'path must not contain ".."'],
    ['a/../b', 'path must not contain ".."'],
    ['a/..', 'path must not contain ".."'],
    ['a/b..c', 'path must not contain ".."'],
    ['a/./b', 'path must not contain "." segments'],
    ['/a/b', 'path must not start with "/"'],
    ['a//b', 'path must not contain empty segments ("//")'],
    ['a/b/', 'path must not end with "/"'],
    ['a/*', 'path must not contain wildcards ("*" or "+")'],
    ['a/+/b', 'path must not contain wildcards ("*" or "+")'],
    ['a/b c', 'path must not contain whitespace or control characters'],
    ['a/b\u0000', 'path must not contain whitespace or control characters'],
    ['a/b\u2028', 'path must not contain whitespace or control characters'],
    ['a/b\u200b', 'path must not contain whitespace or control characters'],
    ['a/"b', 'path must not contain "\\""'],
    ['a/b\\c', 'path must not contain "\\\\"'],
    ['a/b?list=true', 'path must not contain "?"'],
    ['a/b#c', 'path must not contain "#"'],
    ['a/%2e%2e', 'path must not contain "%"'],
    ['a/{{x}}', 'path must not contain "{"'],
    [`a/${'b'.repeat(511)}`, 'path is longer than 512 characters'],
    ['k/v/ünïcode', 'path must be printable ASCII (found U+00FC)'],
    ['homelab/data/d\u043ecker/registry', 'path must be printable ASCII (found U+043E)'],
  ])('rejects %j: %s', (path, message) => {
    expect(validateVaultPath(path)).toBe(message);
  });

  it('rejects non-strings', () => {
    expect(validateVaultPath(42 as unknown as string)).toBe('path must be a string');
  });
});

describe('validateRepoName / validateRefName', () => {
  it.each(['homelab/app', 'a', 'org/sub/repo.git', 'A-b_c.d'])('repo %j is valid', (repo) => {
    expect(validateRepoName(repo)).toBeUndefined();
  });
  it.each(['refs/heads/main', 'refs/heads/agent/fix-1', 'refs/tags/v1.2.3', 'refs/heads/a.b', 'refs/notes/x'])(
    'ref %j is valid',
    (ref) => {
      expect(validateRefName(ref)).toBeUndefined();
    },
  );
  it('explains what is wrong', () => {
    expect(validateRepoName('a/b c')).toBe('repo must not contain whitespace or control characters');
    expect(validateRepoName('a/b$')).toBe('repo may contain only letters, digits, ".", "_", "-" and "/"');
    expect(validateRefName('main')).toBe('ref must be a full ref name starting with "refs/" (e.g. "refs/heads/main")');
    expect(validateRefName('refs/heads/x.lock')).toBe('ref segments must not end with ".lock"');
  });
});

describe('checkPattern', () => {
  it.each([
    ['path', 'homelab/data/*'],
    ['path', 'homelab/data/do*'],
    ['path', 'homelab/+/docker/*'],
    ['path', '+'],
    ['path', '*'],
    ['path', 'exact/path'],
    ['repo', 'homelab/*'],
    ['repo', 'org/+'],
    ['ref', 'refs/heads/agent/*'],
    ['ref', 'refs/tags/v1.*'],
    ['ref', 'refs/+/main'],
    ['ref', 'refs/*'],
  ] as const)('%s pattern %j is valid', (kind, pattern) => {
    expect(checkPattern(pattern, kind)).toBeUndefined();
  });

  it.each([
    ['path', '', 'path pattern is empty'],
    ['path', 'a/*/b', '"*" may appear only as the last character (it matches everything that follows)'],
    ['path', '*/a', '"*" may appear only as the last character (it matches everything that follows)'],
    ['path', 'a/b+', '"+" must be a whole segment (it matches exactly one segment)'],
    ['path', 'a/+b/c', '"+" must be a whole segment (it matches exactly one segment)'],
    ['path', '/a/*', 'path pattern must not start with "/"'],
    ['path', 'a/', 'path pattern must not end with "/" (requested values never do; end with "/*" to cover what is below)'],
    ['path', 'a//b', 'path pattern must not contain empty segments ("//")'],
    ['path', 'a/../*', 'path pattern must not contain ".."'],
    ['path', 'a b/*', 'path pattern must not contain whitespace or control characters'],
    ['path', 'a/"/*', 'path pattern must not contain "\\""'],
    ['repo', 'home lab/*', 'repo pattern must not contain whitespace or control characters'],
    ['repo', 'homelab/a$', 'repo patterns may contain only letters, digits, ".", "_", "-", "/" and the wildcards "*" and "+"'],
    ['ref', 'heads/*', 'ref patterns must start with "refs/" (e.g. "refs/heads/agent/*")'],
    ['ref', 'refs/heads/a~*', 'ref pattern must not contain "~"'],
    ['ref', 'refs/heads/.x/*', 'ref segments must not start with "."'],
    ['ref', 'refs/heads/x.lock', 'ref segments must not end with ".lock"'],
    ['ref', 'refs/heads/x.', 'ref must not end with "."'],
  ] as const)('%s pattern %j: %s', (kind, pattern, message) => {
    expect(checkPattern(pattern, kind)).toBe(message);
  });

  it('rejects non-strings', () => {
    expect(checkPattern(7, 'path')).toBe('path pattern must be a string');
    expect(checkPattern(null, 'ref')).toBe('ref pattern must be a string');
  });
});
