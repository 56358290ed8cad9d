import { mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { evaluateGate, evaluateVault } from '../../../src/broker/policy/evaluate.ts';
import { describePolicy, formatProblems, loadPolicyDir } from '../../../src/broker/policy/load.ts';
import type { PolicyProblem } from '../../../src/broker/policy/types.ts';
import { policyDir, policyFrom, problemsOf, removePolicyDirs } from './helpers.ts';

afterAll(removePolicyDirs);

const AGENTS = `
agents:
  moltbot:
    sessions: ["hook:jit:moltbot:*"]
    default_session: "hook:jit:moltbot:main"
    webhook: openclaw
`;

const GOOD_RULE = `
  - name: docker-secrets-read
    agents: [moltbot]
    resource: vault
    paths: ["homelab/data/docker/*"]
    capabilities: [read, list]
    tier: 1
    max_ttl: 1h
`;

/** One file `p.yaml` with the agents above and `rules` (YAML list items). */
function withRules(rules: string): Record<string, string> {
  return { 'p.yaml': `${AGENTS}rules:${rules}` };
}

/** The single problem of `files`, without the line (asserted separately where it matters). */
function onlyProblem(files: Record<string, string>): Omit<PolicyProblem, 'line'> & { dir: string } {
  const { dir, problems } = problemsOf(files);
  expect(problems, formatProblems(problems).join('\n')).toHaveLength(1);
  const { line: _line, ...rest } = problems[0]!;
  return { dir, ...rest };
}

describe('the shipped policies/homelab.yaml', () => {
  const result = loadPolicyDir(resolve('policies'));

  it('loads with no problems and no warnings', () => {
    expect(result.ok ? [] : formatProblems(result.problems)).toEqual([]);
    expect(result.ok && result.warnings).toEqual([]);
  });

  it('is summarised in one line', () => {
    expect(result.ok && describePolicy(result.policy)).toBe('1 file, 2 agents, 6 rules, 1 deny entry');
  });

  it('supports the dev-mode walkthrough and the SPEC §5 example', () => {
    if (!result.ok) throw new Error('not loaded');
    const p = result.policy;
    expect([...p.agents.keys()]).toEqual(['dev', 'moltbot']);
    expect(p.agents.get('dev')).toMatchObject({
      sessions: ['hook:jit:dev:*'],
      defaultSession: 'hook:jit:dev:main',
      webhook: { kind: 'openclaw' },
    });
    const read = (path: string) => evaluateVault(p, 'dev', [{ path, capabilities: ['read'] }]);
    expect(read('homelab/data/docker/postgres')).toMatchObject({ ok: true, requiredTier: 1, ttlSeconds: 3600 });
    expect(evaluateVault(p, 'dev', [{ path: 'homelab/metadata/docker/postgres', capabilities: ['list'] }])).toMatchObject({
      ok: true,
      requiredTier: 1,
    });
    expect(evaluateVault(p, 'dev', [{ path: 'homelab/data/docker/postgres', capabilities: ['update'] }])).toMatchObject({
      ok: true,
      requiredTier: 2,
      ttlSeconds: 1800,
    });
    expect(evaluateVault(p, 'moltbot', [{ path: 'homelab/data/prod/db', capabilities: ['delete'] }])).toMatchObject({
      ok: true,
      requiredTier: 3,
    });
    expect(read('homelab/data/vault/unseal')).toMatchObject({ ok: false, code: 'DENIED_BY_POLICY' });
    expect(evaluateVault(p, 'dev', [{ path: 'homelab/metadata/media/x', capabilities: ['list'] }])).toMatchObject({
      ok: false,
      code: 'NOT_COVERED',
    });
    expect(evaluateVault(p, 'dev', [{ path: 'homelab/data/docker/pg', capabilities: ['sudo'] }])).toMatchObject({
      ok: false,
      code: 'FORBIDDEN_CAPABILITY',
    });
    expect(read('sys/policies/acl/x')).toMatchObject({ ok: false, code: 'DENIED_BY_POLICY' });
    expect(evaluateGate(p, 'someone', 'homelab/infra', ['refs/heads/agent/x'])).toMatchObject({ ok: true, requiredTier: 2 });
  });
});

describe('loading a directory', () => {
  it('merges every *.yaml and *.yml file in name order', () => {
    const dir = policyDir({
      'b.yml': `rules:\n  - {name: second, agents: ["*"], resource: vault, paths: ["b/*"], capabilities: [read], tier: 1}\n`,
      'a.yaml': `${AGENTS}rules:${GOOD_RULE}deny:\n  - paths: ["sys/*"]\n`,
      'c.txt': 'not: [a policy',
      'README.md': '# notes',
      '.hidden.yaml': 'garbage: [',
    });
    mkdirSync(join(dir, 'sub.yaml'));
    mkdirSync(join(dir, 'nested'));
    writeFileSync(join(dir, 'nested', 'x.yaml'), 'garbage: [');
    const result = loadPolicyDir(dir);
    if (!result.ok) throw new Error(formatProblems(result.problems).join('\n'));
    expect(result.policy.files).toEqual([join(dir, 'a.yaml'), join(dir, 'b.yml')]);
    expect(result.policy.rules.map((r) => [r.name, r.file])).toEqual([
      ['docker-secrets-read', join(dir, 'a.yaml')],
      ['second', join(dir, 'b.yml')],
    ]);
    expect(result.policy.deny).toEqual([{ file: join(dir, 'a.yaml'), paths: ['sys/*'], repos: [], refs: [] }]);
  });

  it('follows symlinked files (ConfigMap style)', () => {
    const real = policyDir({ 'p.yaml': `${AGENTS}rules:${GOOD_RULE}` });
    const dir = policyDir();
    symlinkSync(join(real, 'p.yaml'), join(dir, 'linked.yaml'));
    const result = loadPolicyDir(dir);
    expect(result.ok && result.policy.rules.map((r) => r.name)).toEqual(['docker-secrets-read']);
  });

  it('turns the YAML into the PolicySet shapes', () => {
    const p = policyFrom(`
agents:
  a: {sessions: ["s:a*"], webhook: openclaw, agent_id: main, session_mode: isolated}
  b: {sessions: ["s:b"], webhook: {url: "https://hooks.example.net/jit", format: standard}}
  c: {sessions: ["s:c"], webhook: {url: "http://127.0.0.1:9000/hooks"}}
  d: {sessions: ["s:d"], webhook: {url: "http://10.0.0.2:18789/hooks", format: openclaw}, agent_id: ops}
  e: {sessions: []}
rules:
  - {name: v, agents: [a, a, "*"], resource: vault, paths: ["x/*", "x/*"], capabilities: [read, read, list], tier: 2}
  - {name: g, agents: [b], resource: gate, repos: ["o/+"], refs: ["refs/heads/*"], tier: 3, max_ttl: 90}
  - {name: s, agents: [c], resource: vault, paths: ["y"], capabilities: [patch], tier: 1, max_ttl: "90s"}
  - {name: m, agents: [d], resource: vault, paths: ["z"], capabilities: [delete], tier: 1, max_ttl: 15m}
  - {name: d1, agents: [e], resource: vault, paths: ["w"], capabilities: [create], tier: 1, max_ttl: 1d}
deny:
  - {repos: ["o/secret"]}
  - {repos: ["o/+"], refs: ["refs/heads/main"]}
`);
    expect(p.agents.get('a')).toEqual({
      name: 'a',
      file: p.files[0],
      sessions: ['s:a*'],
      webhook: { kind: 'openclaw', agentId: 'main', sessionMode: 'isolated' },
    });
    expect(p.agents.get('b')?.webhook).toEqual({ kind: 'standard', url: 'https://hooks.example.net/jit' });
    expect(p.agents.get('c')?.webhook).toEqual({ kind: 'standard', url: 'http://127.0.0.1:9000/hooks' });
    expect(p.agents.get('d')?.webhook).toEqual({ kind: 'openclaw', url: 'http://10.0.0.2:18789/hooks', agentId: 'ops' });
    expect(p.agents.get('e')).toEqual({ name: 'e', file: p.files[0], sessions: [] });
    expect(p.rules[0]).toEqual({
      name: 'v',
      file: p.files[0],
      agents: ['a', '*'],
      resource: 'vault',
      paths: ['x/*'],
      capabilities: ['read', 'list'],
      tier: 2,
      maxTtlSeconds: 3600,
    });
    expect(p.rules[1]).toMatchObject({ resource: 'gate', repos: ['o/+'], refs: ['refs/heads/*'], tier: 3, maxTtlSeconds: 90 });
    expect(p.rules.map((r) => r.maxTtlSeconds)).toEqual([3600, 90, 90, 900, 86400]);
    expect(p.deny).toEqual([
      { file: p.files[0], paths: [], repos: ['o/secret'], refs: [] },
      { file: p.files[0], paths: [], repos: ['o/+'], refs: ['refs/heads/main'] },
    ]);
    expect(Object.isFrozen(p.rules[0])).toBe(true);
  });

  it('warns about rules naming agents no file defines, and about empty files', () => {
    const dir = policyDir({
      'a.yaml': `${AGENTS}rules:\n  - {name: r, agents: [moltbot, moltbto, "*bot"], resource: vault, paths: ["x"], capabilities: [read], tier: 1}\n`,
      'b.yaml': '# nothing here yet\n',
    });
    const result = loadPolicyDir(dir);
    if (!result.ok) throw new Error(formatProblems(result.problems).join('\n'));
    expect(result.warnings).toEqual([
      { file: join(dir, 'b.yaml'), message: 'empty policy file' },
      {
        file: join(dir, 'a.yaml'),
        rule: 'r',
        field: 'agents[1]',
        message: `agent "moltbto" is not defined in any policy file's agents section`,
        line: 8,
      },
    ]);
  });

  it('warns (valid all the same) about a sessions pattern whose "*" does not follow ":" or "/", naming the fix', () => {
    const dir = policyDir({
      'a.yaml': `agents:
  dev: {sessions: ["hook:jit:dev*", "hook:jit:dev:*", "hook:jit/dev/*", "exact:key"], default_session: "hook:jit:dev"}
  ops: {sessions: ["hook:jit:ops-*", "*"]}
rules:
  - {name: r, agents: [dev, ops], resource: vault, paths: ["x"], capabilities: [read], tier: 1}
`,
    });
    const result = loadPolicyDir(dir);
    if (!result.ok) throw new Error(formatProblems(result.problems).join('\n'));
    expect(result.policy.agents.get('dev')!.sessions).toEqual(['hook:jit:dev*', 'hook:jit:dev:*', 'hook:jit/dev/*', 'exact:key']);
    expect(result.warnings!.map(({ rule, field, message }) => ({ at: `${rule}: ${field}`, message }))).toEqual([
      {
        at: 'agents.dev: sessions[0]',
        message: 'session pattern "hook:jit:dev*" has a "*" that does not follow ":" or "/", so it also matches "hook:jit:dev…" keys that are not this agent\'s, such as "hook:jit:devx:main"; end the part before "*" with ":" (e.g. "hook:jit:dev:*")',
      },
      {
        at: 'agents.ops: sessions[0]',
        message: 'session pattern "hook:jit:ops-*" has a "*" that does not follow ":" or "/", so it also matches "hook:jit:ops-…" keys that are not this agent\'s, such as "hook:jit:ops-x:main"; end the part before "*" with ":" (e.g. "hook:jit:ops:*")',
      },
      {
        at: 'agents.ops: sessions[1]',
        message: 'session pattern "*" has a "*" that does not follow ":" or "/", so it also matches any session key at all; name the prefix, e.g. "hook:jit:NAME:*"',
      },
    ]);
  });

  it('warns when there are no rules at all', () => {
    const dir = policyDir({ 'a.yaml': AGENTS });
    const result = loadPolicyDir(dir);
    expect(result.ok && result.warnings).toEqual([{ file: dir, message: 'no rules: every request will be rejected' }]);
  });
});

describe('problems with the directory', () => {
  it('missing directory', () => {
    const dir = join(policyDir(), 'nope');
    expect(loadPolicyDir(dir)).toEqual({ ok: false, problems: [{ file: dir, message: 'policy directory does not exist' }] });
  });

  it('a file instead of a directory', () => {
    const dir = policyDir({ 'p.yaml': AGENTS });
    const file = join(dir, 'p.yaml');
    expect(loadPolicyDir(file)).toEqual({
      ok: false,
      problems: [{ file, message: 'not a directory (the policy location must be a directory of *.yaml files)' }],
    });
  });

  it.each([
    ['empty', {}],
    ['only other files', { 'README.md': '# x', 'policy.json': '{}', '.x.yaml': 'agents: {}' }],
  ])('no policy files (%s)', (_name, files) => {
    const dir = policyDir(files);
    expect(loadPolicyDir(dir)).toEqual({
      ok: false,
      problems: [{ file: dir, message: 'no policy files (*.yaml or *.yml) in this directory' }],
    });
  });
});

describe('YAML syntax errors', () => {
  it.each([
    ['unclosed flow sequence', 'rules:\n  - name: x\n    paths: [a, b\n    tier: 1\n', 4],
    ['duplicate key', 'agents:\n  a: {sessions: []}\n  a: {sessions: []}\n', 3],
    ['bad indentation', 'rules:\n  - name: x\n   tier: 1\n', 3],
    ['two documents', 'rules: []\n---\ndeny: []\n', 2],
  ])('%s is reported with its line', (_name, text, line) => {
    const { dir, problems } = problemsOf({ 'bad.yaml': text });
    expect(problems.length).toBeGreaterThanOrEqual(1);
    expect(problems[0]).toMatchObject({ file: join(dir, 'bad.yaml'), line });
    expect(problems[0]!.message).toMatch(new RegExp(`^YAML syntax error at line ${line}, column \\d+: \\S`));
    expect(problems[0]!.message).not.toContain('\n');
  });

  it('is marked as a syntax problem, and printed with its line once', () => {
    const { dir, problems } = problemsOf({ 'bad.yaml': 'rules:\n  - name: x\n   tier: 1\n' });
    expect(problems[0]).toMatchObject({ kind: 'yaml_syntax', line: 3 });
    const [printed] = formatProblems(problems);
    expect(printed).toMatch(new RegExp(`^${join(dir, 'bad.yaml').replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: YAML syntax error at line 3, column \\d+: \\S`));
    expect(printed).not.toMatch(/\(line \d+\)$/);
    // A schema problem has no kind and gets its line appended.
    expect(formatProblems([{ file: 'f.yaml', message: 'YAML syntax error at line 3 is only a message here', line: 3 }])).toEqual([
      'f.yaml: YAML syntax error at line 3 is only a message here (line 3)',
    ]);
  });

  it('an alias to a missing anchor', () => {
    const { dir, problems } = problemsOf({ 'bad.yaml': 'rules: *nothing\n' });
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatchObject({ file: join(dir, 'bad.yaml') });
    expect(problems[0]!.message).toMatch(/nothing/);
  });
});

describe('schema problems: file, rule and field', () => {
  it.each([
    // [name, rule YAML (list item), rule, field, message]
    [
      'forbidden capability',
      `
  - name: homelab-write
    agents: [moltbot]
    resource: vault
    paths: ["homelab/data/*"]
    capabilities: [read, create, sudo]
    tier: 2`,
      'homelab-write',
      'capabilities[2]',
      '"sudo" is never issued',
    ],
    [
      'root capability',
      `\n  - {name: r, agents: [moltbot], resource: vault, paths: ["a"], capabilities: [root], tier: 1}`,
      'r',
      'capabilities[0]',
      '"root" is never issued',
    ],
    [
      'unknown capability',
      `\n  - {name: r, agents: [moltbot], resource: vault, paths: ["a"], capabilities: [read, write], tier: 1}`,
      'r',
      'capabilities[1]',
      '"write" is not a capability (valid: create, read, update, patch, delete, list)',
    ],
    [
      'empty capabilities',
      `\n  - {name: r, agents: [moltbot], resource: vault, paths: ["a"], capabilities: [], tier: 1}`,
      'r',
      'capabilities',
      'list at least one capability',
    ],
    [
      'bad tier',
      `\n  - {name: r, agents: [moltbot], resource: vault, paths: ["a"], capabilities: [read], tier: 4}`,
      'r',
      'tier',
      'tier must be 1, 2 or 3, got 4',
    ],
    [
      'tier as a string',
      `\n  - {name: r, agents: [moltbot], resource: vault, paths: ["a"], capabilities: [read], tier: "1"}`,
      'r',
      'tier',
      'tier must be 1, 2 or 3, got "1"',
    ],
    [
      'missing tier',
      `\n  - {name: r, agents: [moltbot], resource: vault, paths: ["a"], capabilities: [read]}`,
      'r',
      'tier',
      'missing required field',
    ],
    [
      'bad max_ttl',
      `\n  - {name: r, agents: [moltbot], resource: vault, paths: ["a"], capabilities: [read], tier: 1, max_ttl: 1w}`,
      'r',
      'max_ttl',
      'max_ttl must be a positive whole number of seconds or a duration like "90s", "15m", "1h", "1d"; got "1w"',
    ],
    [
      'zero max_ttl',
      `\n  - {name: r, agents: [moltbot], resource: vault, paths: ["a"], capabilities: [read], tier: 1, max_ttl: 0}`,
      'r',
      'max_ttl',
      'max_ttl must be a positive whole number of seconds or a duration like "90s", "15m", "1h", "1d"; got 0',
    ],
    [
      'max_ttl too long',
      `\n  - {name: r, agents: [moltbot], resource: vault, paths: ["a"], capabilities: [read], tier: 1, max_ttl: 90d}`,
      'r',
      'max_ttl',
      'max_ttl "90d" is longer than 32 days',
    ],
    [
      'unknown field in a rule',
      `\n  - {name: r, agents: [moltbot], resource: vault, paths: ["a"], capabilities: [read], tier: 1, ttl: 1h}`,
      'r',
      'ttl',
      'unknown field (allowed: name, agents, resource, paths, capabilities, tier, max_ttl)',
    ],
    [
      'gate field in a vault rule',
      `\n  - {name: r, agents: [moltbot], resource: vault, paths: ["a"], capabilities: [read], tier: 1, refs: ["refs/*"]}`,
      'r',
      'refs',
      'unknown field (allowed: name, agents, resource, paths, capabilities, tier, max_ttl)',
    ],
    [
      'capabilities in a gate rule',
      `\n  - {name: g, agents: [moltbot], resource: gate, repos: ["a/*"], refs: ["refs/*"], capabilities: [read], tier: 1}`,
      'g',
      'capabilities',
      'unknown field (allowed: name, agents, resource, repos, refs, tier, max_ttl)',
    ],
    [
      'bad resource',
      `\n  - {name: r, agents: [moltbot], resource: ssh, paths: ["a"], capabilities: [read], tier: 1}`,
      'r',
      'resource',
      'resource must be "vault" or "gate", got "ssh"',
    ],
    [
      'missing resource',
      `\n  - {name: r, agents: [moltbot], paths: ["a"], capabilities: [read], tier: 1}`,
      'r',
      'resource',
      'missing required field',
    ],
    [
      'unnamed rule',
      `\n  - {agents: [moltbot], resource: vault, paths: ["a"], capabilities: [read], tier: 1}`,
      'rules[1]',
      'name',
      'missing required field',
    ],
    [
      'bad rule name',
      `\n  - {name: "my rule", agents: [moltbot], resource: vault, paths: ["a"], capabilities: [read], tier: 1}`,
      'rules[1]',
      'name',
      'rule names use letters, digits, "_" and "-" (at most 100 characters)',
    ],
    [
      'empty agents',
      `\n  - {name: r, agents: [], resource: vault, paths: ["a"], capabilities: [read], tier: 1}`,
      'r',
      'agents',
      'list at least one agent, or "*" for every agent',
    ],
    [
      'agents not a list',
      `\n  - {name: r, agents: moltbot, resource: vault, paths: ["a"], capabilities: [read], tier: 1}`,
      'r',
      'agents',
      'agents must be a list, got "moltbot"',
    ],
    [
      'path pattern with * in the middle',
      `\n  - {name: r, agents: [moltbot], resource: vault, paths: ["a/*", "a/*/b"], capabilities: [read], tier: 1}`,
      'r',
      'paths[1]',
      '"*" may appear only as the last character (it matches everything that follows): "a/*/b"',
    ],
    [
      'path pattern with a leading /',
      `\n  - {name: r, agents: [moltbot], resource: vault, paths: ["/a/*"], capabilities: [read], tier: 1}`,
      'r',
      'paths[0]',
      'path pattern must not start with "/": "/a/*"',
    ],
    [
      'path pattern with ..',
      `\n  - {name: r, agents: [moltbot], resource: vault, paths: ["a/../sys/*"], capabilities: [read], tier: 1}`,
      'r',
      'paths[0]',
      'path pattern must not contain "..": "a/../sys/*"',
    ],
    [
      'path pattern with a partial + segment',
      `\n  - {name: r, agents: [moltbot], resource: vault, paths: ["a/b+/c"], capabilities: [read], tier: 1}`,
      'r',
      'paths[0]',
      '"+" must be a whole segment (it matches exactly one segment): "a/b+/c"',
    ],
    [
      'path pattern with an empty segment',
      `\n  - {name: r, agents: [moltbot], resource: vault, paths: ["a//c"], capabilities: [read], tier: 1}`,
      'r',
      'paths[0]',
      'path pattern must not contain empty segments ("//"): "a//c"',
    ],
    [
      'repo pattern with bad characters',
      `\n  - {name: g, agents: [moltbot], resource: gate, repos: ["home lab/*"], refs: ["refs/heads/*"], tier: 2}`,
      'g',
      'repos[0]',
      'repo pattern must not contain whitespace or control characters: "home lab/*"',
    ],
    [
      'ref pattern without refs/',
      `\n  - {name: g, agents: [moltbot], resource: gate, repos: ["a/*"], refs: ["refs/heads/x", "main"], tier: 2}`,
      'g',
      'refs[1]',
      'ref patterns must start with "refs/" (e.g. "refs/heads/agent/*"): "main"',
    ],
    [
      'gate rule without refs',
      `\n  - {name: g, agents: [moltbot], resource: gate, repos: ["a/*"], tier: 2}`,
      'g',
      'refs',
      'missing required field',
    ],
    [
      'a rule that is not a mapping',
      `\n  - just a string`,
      'rules[1]',
      undefined,
      'a rule must be a mapping, got "just a string"',
    ],
  ])('%s', (_name, rule, ruleId, field, message) => {
    const files = withRules(GOOD_RULE + rule);
    const got = onlyProblem(files);
    expect(got).toEqual({
      dir: got.dir,
      file: join(got.dir, 'p.yaml'),
      rule: ruleId,
      ...(field === undefined ? {} : { field }),
      message,
    });
  });

  it.each([
    [
      'unknown field in an agent',
      'agents:\n  moltbot: {sessions: ["a"], session: "a"}\n',
      'agents.moltbot',
      'session',
      'unknown field (allowed: sessions, default_session, webhook, agent_id, session_mode)',
    ],
    ['agent without sessions', 'agents:\n  moltbot: {webhook: openclaw}\n', 'agents.moltbot', 'sessions', 'missing required field'],
    [
      'default_session outside the sessions patterns',
      'agents:\n  moltbot: {sessions: ["hook:jit:moltbot*"], default_session: "hook:jit:dev"}\n',
      'agents.moltbot',
      'default_session',
      `"hook:jit:dev" matches none of this agent's sessions patterns`,
    ],
    [
      'default_session that is a pattern',
      'agents:\n  moltbot: {sessions: ["hook:*"], default_session: "hook:*"}\n',
      'agents.moltbot',
      'default_session',
      'default_session must be a concrete session key, not a pattern',
    ],
    [
      'session pattern with a space',
      'agents:\n  moltbot: {sessions: ["hook jit"]}\n',
      'agents.moltbot',
      'sessions[0]',
      'session patterns are 1-256 printable characters without spaces',
    ],
    [
      'webhook url not http(s)',
      'agents:\n  moltbot: {sessions: ["a"], webhook: {url: "ftp://example.net/x", format: standard}}\n',
      'agents.moltbot',
      'webhook.url',
      'webhook url must be an http(s) URL',
    ],
    [
      'webhook url not a URL',
      'agents:\n  moltbot: {sessions: ["a"], webhook: {url: "example.net/hook"}}\n',
      'agents.moltbot',
      'webhook.url',
      'webhook url must be an http(s) URL',
    ],
    [
      'webhook bad format',
      'agents:\n  moltbot: {sessions: ["a"], webhook: {url: "https://x.example", format: slack}}\n',
      'agents.moltbot',
      'webhook.format',
      'format must be "standard" or "openclaw"',
    ],
    [
      'webhook unknown field',
      'agents:\n  moltbot: {sessions: ["a"], webhook: {url: "https://x.example", secret: s}}\n',
      'agents.moltbot',
      'webhook.secret',
      'unknown field (allowed: url, format)',
    ],
    [
      'webhook unknown kind',
      'agents:\n  moltbot: {sessions: ["a"], webhook: slack}\n',
      'agents.moltbot',
      'webhook',
      'webhook must be "openclaw" or {url, format}, got "slack"',
    ],
    [
      'agent_id with a standard webhook',
      'agents:\n  moltbot: {sessions: ["a"], webhook: {url: "https://x.example"}, agent_id: main}\n',
      'agents.moltbot',
      'agent_id',
      'agent_id is only used with an openclaw webhook',
    ],
    [
      'session_mode without a webhook',
      'agents:\n  moltbot: {sessions: ["a"], session_mode: isolated}\n',
      'agents.moltbot',
      'session_mode',
      'session_mode is only used with an openclaw webhook',
    ],
    [
      'bad agent name',
      'agents:\n  "molt bot": {sessions: ["a"]}\n',
      'agents.molt bot',
      undefined,
      'agent names use letters, digits, ".", "_" and "-" (at most 64 characters, starting with a letter or digit)',
    ],
    ['empty deny entry', 'deny:\n  - {}\n', 'deny[0]', undefined, 'a deny entry needs paths, repos or refs'],
    ['empty deny paths', 'deny:\n  - paths: []\n', 'deny[0]', 'paths', 'list at least one path pattern'],
    ['bad deny pattern', 'deny:\n  - paths: ["sys/*", "/auth/*"]\n', 'deny[0]', 'paths[1]', 'path pattern must not start with "/": "/auth/*"'],
    ['unknown deny field', 'deny:\n  - paths: ["sys/*"]\n    path: ["x"]\n', 'deny[0]', 'path', 'unknown field (allowed: paths, repos, refs)'],
    ['unknown top-level field', 'rule: []\n', undefined, 'rule', 'unknown field (allowed: agents, rules, deny)'],
    ['rules not a list', 'rules: {name: x}\n', undefined, 'rules', 'rules must be a list, got a mapping'],
    ['agents not a mapping', 'agents: [moltbot]\n', undefined, 'agents', 'agents must be a mapping of agent name to settings, got a list'],
    ['empty rules key', 'rules:\n', undefined, 'rules', 'rules must be a list, got null'],
    ['a list at the top', '- name: x\n', undefined, undefined, 'a policy file must be a mapping (fields: agents, rules, deny)'],
  ])('%s', (_name, text, ruleId, field, message) => {
    const got = onlyProblem({ 'p.yaml': text });
    expect(got).toEqual({
      dir: got.dir,
      file: join(got.dir, 'p.yaml'),
      ...(ruleId === undefined ? {} : { rule: ruleId }),
      ...(field === undefined ? {} : { field }),
      message,
    });
  });

  it('reports every problem of every file, with lines', () => {
    const { dir, problems } = problemsOf({
      'a.yaml': `${AGENTS}rules:
  - name: homelab-write
    agents: [moltbot]
    resource: vault
    paths: ["homelab/data/*", "bad//path"]
    capabilities: [read, create, sudo]
    tier: 5
    max_ttl: forever
`,
      'b.yaml': 'deny:\n  - {paths: ["/x"]}\nextra: 1\n',
      'c.yaml': 'rules: [unclosed\n',
    });
    const a = join(dir, 'a.yaml');
    const b = join(dir, 'b.yaml');
    expect(problems.map((p) => [p.file, p.rule, p.field, p.line])).toEqual([
      [a, 'homelab-write', 'paths[1]', 11],
      [a, 'homelab-write', 'capabilities[2]', 12],
      [a, 'homelab-write', 'tier', 13],
      [a, 'homelab-write', 'max_ttl', 14],
      [b, 'deny[0]', 'paths[0]', 2],
      [b, undefined, 'extra', 3],
      [join(dir, 'c.yaml'), undefined, undefined, 2],
    ]);
  });
});

describe('checks across files', () => {
  it('duplicate rule names across files', () => {
    const { dir, problems } = problemsOf({
      'a.yaml': `${AGENTS}rules:${GOOD_RULE}`,
      'b.yaml': `rules:${GOOD_RULE}`,
    });
    expect(problems).toEqual([
      {
        file: join(dir, 'b.yaml'),
        rule: 'docker-secrets-read',
        field: 'name',
        message: `duplicate rule name (first defined at ${join(dir, 'a.yaml')} rules[0])`,
        line: 2,
      },
    ]);
  });

  it('duplicate rule names within a file', () => {
    const { dir, problems } = problemsOf(withRules(GOOD_RULE + GOOD_RULE));
    expect(problems).toEqual([
      {
        file: join(dir, 'p.yaml'),
        rule: 'docker-secrets-read',
        field: 'name',
        message: `duplicate rule name (first defined at ${join(dir, 'p.yaml')} rules[0])`,
        line: 16,
      },
    ]);
  });

  it('duplicates are found even when the first file has other problems', () => {
    const { dir, problems } = problemsOf({
      'a.yaml': `${AGENTS}rules:${GOOD_RULE}    extra: 1\n`,
      'b.yaml': `rules:${GOOD_RULE}`,
    });
    expect(problems.map((p) => [p.file, p.field])).toEqual([
      [join(dir, 'a.yaml'), 'extra'],
      [join(dir, 'b.yaml'), 'name'],
    ]);
  });

  it('the same agent in two files', () => {
    const { dir, problems } = problemsOf({ 'a.yaml': AGENTS, 'b.yaml': AGENTS });
    expect(problems).toEqual([
      {
        file: join(dir, 'b.yaml'),
        rule: 'agents.moltbot',
        message: `agent "moltbot" is already defined in ${join(dir, 'a.yaml')}`,
        line: 3,
      },
    ]);
  });
});

describe('keys named like prototype properties', () => {
  it.each(['constructor', 'prototype', 'toString'])('an agent named %j is an agent like any other', (name) => {
    const policy = policyFrom(`agents:\n  ${name}:\n    sessions: ["hook:x"]\n`);
    expect([...policy.agents.keys()]).toEqual([name]);
  });

  it('refuses an agent named "__proto__" instead of dropping it', () => {
    const { problems } = problemsOf({ 'a.yaml': 'agents:\n  __proto__:\n    sessions: ["hook:x"]\n  ok:\n    sessions: ["hook:y"]\n' });
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatchObject({ rule: 'agents.__proto__', line: 2 });
    expect(problems[0]!.message).toMatch(/agent names use letters/);
  });
});

describe('formatProblems', () => {
  it('gives one line per problem', () => {
    expect(
      formatProblems([
        { file: 'policies/homelab.yaml', rule: 'homelab-write', field: 'capabilities[2]', message: '"sudo" is never issued' },
        { file: 'policies/homelab.yaml', rule: 'rules[3]', field: 'name', message: 'missing required field', line: 40 },
        { file: 'policies/homelab.yaml', rule: 'agents.moltbot', field: 'webhook.url', message: 'webhook url must be an http(s) URL' },
        { file: 'policies/homelab.yaml', rule: 'deny[0]', message: 'a deny entry needs paths, repos or refs' },
        { file: 'policies/x.yaml', field: 'extra', message: 'unknown field (allowed: agents, rules, deny)' },
        { file: 'policies/x.yaml', kind: 'yaml_syntax', message: 'YAML syntax error at line 3, column 1: Map keys must be unique', line: 3 },
        { file: 'policies', message: 'policy directory does not exist' },
      ]),
    ).toEqual([
      'policies/homelab.yaml: rule "homelab-write": capabilities[2]: "sudo" is never issued',
      'policies/homelab.yaml: rules[3]: name: missing required field (line 40)',
      'policies/homelab.yaml: agents.moltbot: webhook.url: webhook url must be an http(s) URL',
      'policies/homelab.yaml: deny[0]: a deny entry needs paths, repos or refs',
      'policies/x.yaml: extra: unknown field (allowed: agents, rules, deny)',
      'policies/x.yaml: YAML syntax error at line 3, column 1: Map keys must be unique',
      'policies: policy directory does not exist',
    ]);
  });

  it('formats real loader output', () => {
    const dir = policyDir({
      'homelab.yaml': `${AGENTS}rules:
  - name: homelab-write
    agents: [moltbot]
    resource: vault
    paths: ["homelab/data/*"]
    capabilities: [read, create, sudo]
    tier: 2
`,
    });
    const result = loadPolicyDir(dir);
    expect(result.ok ? [] : formatProblems(result.problems)).toEqual([
      `${join(dir, 'homelab.yaml')}: rule "homelab-write": capabilities[2]: "sudo" is never issued (line 12)`,
    ]);
  });
});
