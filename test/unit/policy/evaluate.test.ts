import { afterAll, describe, expect, it } from 'vitest';
import { evaluateGate, evaluateVault } from '../../../src/broker/policy/evaluate.ts';
import type { Decision, PolicySet, VaultPair } from '../../../src/broker/policy/types.ts';
import { policyFrom, removePolicyDirs } from './helpers.ts';

afterAll(removePolicyDirs);

const POLICY = `
agents:
  moltbot:
    sessions: ["hook:jit:moltbot*"]
    default_session: "hook:jit:moltbot"
    webhook: openclaw
  other:
    sessions: ["hook:jit:other"]
rules:
  # SPEC §5
  - name: docker-secrets-read
    agents: [moltbot]
    resource: vault
    paths: ["homelab/data/docker/*"]
    capabilities: [read, list]
    tier: 1
    max_ttl: 1h
  - name: homelab-write
    agents: [moltbot]
    resource: vault
    paths: ["homelab/data/*"]
    capabilities: [read, create, update]
    tier: 2
    max_ttl: 30m
  - name: agent-branches
    agents: ["*"]
    resource: gate
    repos: ["homelab/*"]
    refs: ["refs/heads/agent/*"]
    tier: 2
    max_ttl: 1h
  # extras
  - name: prod-delete
    agents: [moltbot]
    resource: vault
    paths: ["homelab/data/prod/*"]
    capabilities: [delete]
    tier: 3
    max_ttl: 15m
  - name: shared-read
    agents: ["*"]
    resource: vault
    paths: ["shared/*"]
    capabilities: [read]
    tier: 1
    max_ttl: 15m
  - name: bots-read
    agents: ["*bot"]
    resource: vault
    paths: ["bots/*"]
    capabilities: [read]
    tier: 1
  - name: app-config
    agents: [moltbot]
    resource: vault
    paths: ["apps/+/config"]
    capabilities: [read]
    tier: 1
    max_ttl: 10m
  - name: prefix-in-segment
    agents: [moltbot]
    resource: vault
    paths: ["pre/fix*"]
    capabilities: [read]
    tier: 1
  - name: tie-short
    agents: [moltbot]
    resource: vault
    paths: ["tie/*"]
    capabilities: [read]
    tier: 2
    max_ttl: 20m
  - name: tie-long
    agents: [moltbot]
    resource: vault
    paths: ["tie/*"]
    capabilities: [read]
    tier: 2
    max_ttl: 45m
  - name: tie-low
    agents: [moltbot]
    resource: vault
    paths: ["tie/low/*"]
    capabilities: [read]
    tier: 1
    max_ttl: 5m
  - name: eq-first
    agents: [moltbot]
    resource: vault
    paths: ["eq/*"]
    capabilities: [read]
    tier: 1
    max_ttl: 10m
  - name: eq-second
    agents: [moltbot]
    resource: vault
    paths: ["eq/*"]
    capabilities: [read]
    tier: 1
    max_ttl: 10m
  - name: release-tags
    agents: [moltbot]
    resource: gate
    repos: ["homelab/infra"]
    refs: ["refs/tags/v*"]
    tier: 3
    max_ttl: 10m
  - name: sandbox-push
    agents: [moltbot]
    resource: gate
    repos: ["sandbox/+"]
    refs: ["refs/heads/*"]
    tier: 1
    max_ttl: 2h
deny:
  - paths: ["sys/*", "auth/*", "homelab/data/vault/*", "shared/private/*"]
  - repos: ["homelab/secrets"]
  - refs: ["refs/heads/main"]
  - repos: ["homelab/infra"]
    refs: ["refs/tags/v0*"]
`;

const policy: PolicySet = policyFrom(POLICY);

const pair = (path: string, ...capabilities: string[]): VaultPair => ({ path, capabilities });

function ok(d: Decision): Extract<Decision, { ok: true }> {
  if (!d.ok) throw new Error(`expected ok, got ${d.code} ${d.pair}: ${d.message}`);
  return d;
}

describe('evaluateVault: issue and tiers', () => {
  it.each([
    ['tier-1 read issued', 'moltbot', [pair('homelab/data/docker/app', 'read')], 1, 3600, ['docker-secrets-read']],
    ['tier-1 list issued', 'moltbot', [pair('homelab/data/docker/app', 'list')], 1, 3600, ['docker-secrets-read']],
    [
      'a pair covered at tiers 1 and 2 needs the lowest (1)',
      'moltbot',
      [pair('homelab/data/docker/app', 'read', 'list')],
      1,
      3600,
      ['docker-secrets-read'],
    ],
    ['write on a tier-1 read path escalates to 2', 'moltbot', [pair('homelab/data/docker/app', 'update')], 2, 1800, ['homelab-write']],
    ['read outside docker/ only covered at tier 2', 'moltbot', [pair('homelab/data/media', 'read')], 2, 1800, ['homelab-write']],
    [
      'highest tier over the pairs',
      'moltbot',
      [pair('homelab/data/docker/app', 'read'), pair('homelab/data/media', 'create')],
      2,
      1800,
      ['docker-secrets-read', 'homelab-write'],
    ],
    [
      'tier 3 pair makes the request tier 3',
      'moltbot',
      [pair('homelab/data/docker/app', 'read'), pair('homelab/data/prod/db', 'delete'), pair('homelab/data/x', 'update')],
      3,
      900,
      ['docker-secrets-read', 'prod-delete', 'homelab-write'],
    ],
    ['"*" agents cover every agent', 'other', [pair('shared/team/key', 'read')], 1, 900, ['shared-read']],
    ['"*" agents cover agents defined nowhere', 'ghost', [pair('shared/key', 'read')], 1, 900, ['shared-read']],
    ['reading a secret named like a denied folder is not denied', 'moltbot', [pair('homelab/data/vault', 'read')], 2, 1800, ['homelab-write']],
    ['agent glob "*bot" matches moltbot', 'moltbot', [pair('bots/x', 'read')], 1, 3600, ['bots-read']],
    ['"+" matches one segment', 'moltbot', [pair('apps/web/config', 'read')], 1, 600, ['app-config']],
    ['trailing "*" is a prefix within a segment', 'moltbot', [pair('pre/fixture', 'read')], 1, 3600, ['prefix-in-segment']],
    ['trailing "*" is a prefix across segments', 'moltbot', [pair('pre/fix/a/b', 'read')], 1, 3600, ['prefix-in-segment']],
  ] as const)('%s', (_name, agent, pairs, tier, ttl, rules) => {
    const d = ok(evaluateVault(policy, agent, pairs));
    expect(d.requiredTier).toBe(tier);
    expect(d.ttlSeconds).toBe(ttl);
    expect(d.rules).toEqual(rules);
  });

  it('reports the tier and rule of each pair', () => {
    const d = ok(evaluateVault(policy, 'moltbot', [pair('homelab/data/docker/app', 'read', 'update')]));
    expect(d.pairs).toEqual([
      { pair: 'homelab/data/docker/app:read', tier: 1, rule: 'docker-secrets-read', maxTtlSeconds: 3600 },
      { pair: 'homelab/data/docker/app:update', tier: 2, rule: 'homelab-write', maxTtlSeconds: 1800 },
    ]);
  });

  it('accepts duplicate pairs and reports each rule once', () => {
    const d = ok(
      evaluateVault(policy, 'moltbot', [
        pair('homelab/data/docker/app', 'read', 'read'),
        pair('homelab/data/docker/app', 'read'),
        pair('homelab/data/docker/db', 'read'),
      ]),
    );
    expect(d.rules).toEqual(['docker-secrets-read']);
    expect(d.pairs?.map((p) => p.pair)).toEqual(['homelab/data/docker/app:read', 'homelab/data/docker/db:read']);
  });
});

describe('evaluateVault: rejections', () => {
  it.each([
    ['uncovered capability', 'moltbot', [pair('homelab/data/docker/app', 'delete')], 'NOT_COVERED', 'homelab/data/docker/app:delete'],
    ['uncovered path', 'moltbot', [pair('elsewhere/x', 'read')], 'NOT_COVERED', 'elsewhere/x:read'],
    ['"dir/*" does not cover "dir" itself', 'moltbot', [pair('homelab/data', 'read')], 'NOT_COVERED', 'homelab/data:read'],
    ['data/ rules do not cover metadata/ (KV v2)', 'moltbot', [pair('homelab/metadata/docker/app', 'list')], 'NOT_COVERED', 'homelab/metadata/docker/app:list'],
    ['"+" does not match two segments', 'moltbot', [pair('apps/web/x/config', 'read')], 'NOT_COVERED', 'apps/web/x/config:read'],
    ['"+" does not match zero segments', 'moltbot', [pair('apps/config', 'read')], 'NOT_COVERED', 'apps/config:read'],
    ['prefix shorter than the pattern', 'moltbot', [pair('pre/fi', 'read')], 'NOT_COVERED', 'pre/fi:read'],
    ['prefix is not a substring', 'moltbot', [pair('pre/xfix', 'read')], 'NOT_COVERED', 'pre/xfix:read'],
    ['agent mismatch', 'other', [pair('homelab/data/docker/app', 'read')], 'NOT_COVERED', 'homelab/data/docker/app:read'],
    ['agent glob "*bot" does not match other', 'other', [pair('bots/x', 'read')], 'NOT_COVERED', 'bots/x:read'],
    ['deny wins over a covering rule', 'moltbot', [pair('homelab/data/vault/unseal', 'read')], 'DENIED_BY_POLICY', 'homelab/data/vault/unseal:read'],
    ['deny wins over a "*" rule', 'other', [pair('shared/private/k', 'read')], 'DENIED_BY_POLICY', 'shared/private/k:read'],
    ['deny applies to uncovered paths too', 'moltbot', [pair('sys/mounts', 'read')], 'DENIED_BY_POLICY', 'sys/mounts:read'],
    ['deny applies to every agent', 'ghost', [pair('auth/token/create', 'update')], 'DENIED_BY_POLICY', 'auth/token/create:update'],
    ['listing a denied folder is denied', 'moltbot', [pair('homelab/data/vault', 'list')], 'DENIED_BY_POLICY', 'homelab/data/vault:list'],
    [
      'one denied pair rejects the whole request',
      'moltbot',
      [pair('homelab/data/docker/app', 'read'), pair('homelab/data/vault/x', 'read')],
      'DENIED_BY_POLICY',
      'homelab/data/vault/x:read',
    ],
    [
      'one uncovered pair rejects the whole request',
      'moltbot',
      [pair('homelab/data/docker/app', 'read'), pair('homelab/data/docker/app', 'patch')],
      'NOT_COVERED',
      'homelab/data/docker/app:patch',
    ],
    ['sudo is never issued', 'moltbot', [pair('homelab/data/docker/app', 'sudo')], 'FORBIDDEN_CAPABILITY', 'homelab/data/docker/app:sudo'],
    ['deny is never issued', 'moltbot', [pair('homelab/data/docker/app', 'deny')], 'FORBIDDEN_CAPABILITY', 'homelab/data/docker/app:deny'],
    ['root is never issued', 'moltbot', [pair('homelab/data/docker/app', 'root')], 'FORBIDDEN_CAPABILITY', 'homelab/data/docker/app:root'],
    ['unknown capability', 'moltbot', [pair('homelab/data/docker/app', 'write')], 'FORBIDDEN_CAPABILITY', 'homelab/data/docker/app:write'],
    ['capabilities are case-sensitive', 'moltbot', [pair('homelab/data/docker/app', 'READ')], 'FORBIDDEN_CAPABILITY', 'homelab/data/docker/app:READ'],
    ['forbidden capability checked before deny', 'moltbot', [pair('sys/x', 'sudo')], 'FORBIDDEN_CAPABILITY', 'sys/x:sudo'],
    ['forbidden capability checked before path syntax', 'moltbot', [pair('/x', 'root')], 'FORBIDDEN_CAPABILITY', '/x:root'],
    [
      'the first failing pair is the one reported',
      'moltbot',
      [pair('elsewhere', 'read'), pair('sys/x', 'read'), pair('homelab/data/docker/a', 'sudo')],
      'NOT_COVERED',
      'elsewhere:read',
    ],
    ['no capabilities for a path', 'moltbot', [pair('homelab/data/docker/app')], 'FORBIDDEN_CAPABILITY', 'homelab/data/docker/app:'],
    ['no pairs at all', 'moltbot', [], 'INVALID_PATH', ''],
  ] as const)('%s', (_name, agent, pairs, code, failedPair) => {
    const d = evaluateVault(policy, agent, pairs);
    expect(d).toMatchObject({ ok: false, code, pair: failedPair });
  });

  it('messages name the pair and say why', () => {
    expect(evaluateVault(policy, 'moltbot', [pair('homelab/data/docker/app', 'sudo')])).toMatchObject({
      message: 'capability "sudo" is never issued (requested for "homelab/data/docker/app")',
    });
    expect(evaluateVault(policy, 'moltbot', [pair('homelab/data/docker/app', 'write')])).toMatchObject({
      message:
        'unknown capability "write" requested for "homelab/data/docker/app"; valid capabilities: create, read, update, patch, delete, list',
    });
    expect(evaluateVault(policy, 'moltbot', [pair('homelab/data/docker/app', 'delete')])).toMatchObject({
      message: 'no rule allows "delete" on "homelab/data/docker/app" for agent "moltbot"',
    });
    expect(evaluateVault(policy, 'moltbot', [pair('sys/mounts', 'read')])).toMatchObject({
      message: '"sys/mounts" is denied by policy (deny pattern "sys/*")',
    });
    expect(evaluateVault(policy, 'moltbot', [pair('homelab/../sys', 'read')])).toMatchObject({
      message: 'invalid path "homelab/../sys": path must not contain ".."',
    });
  });

  it.each([
    ['..', 'homelab/data/../../sys/x'],
    ['.. as the first segment', '../homelab/data/docker/x'],
    ['.. inside a segment', 'homelab/data/docker/a..b'],
    ['. segment', 'homelab/data/./docker/x'],
    ['leading /', '/homelab/data/docker/x'],
    ['empty segment', 'homelab/data//docker/x'],
    ['trailing /', 'homelab/data/docker/'],
    ['wildcard *', 'homelab/data/docker/*'],
    ['wildcard +', 'homelab/data/+/x'],
    ['space', 'homelab/data/docker/a b'],
    ['tab', 'homelab/data/docker/a\tb'],
    ['newline', 'homelab/data/docker/a\nb'],
    ['NUL', 'homelab/data/docker/a\u0000b'],
    ['bidi override', 'homelab/data/docker/\u202eppa'],
    ['zero-width space', 'homelab/data/docker/a\u200bb'],
    ['double quote (HCL)', 'homelab/data/docker/a"b'],
    ['percent (URL encoding)', 'homelab/data/docker/a%2Fb'],
    ['template braces', 'homelab/data/docker/{{identity.entity.id}}'],
    ['empty', ''],
    ['longer than 512', `homelab/data/docker/${'a'.repeat(493)}`],
  ])('invalid path (%s) is INVALID_PATH', (_name, path) => {
    const d = evaluateVault(policy, 'moltbot', [pair(path, 'read')]);
    expect(d).toMatchObject({ ok: false, code: 'INVALID_PATH', pair: `${path}:read` });
  });

  it('a path of exactly 512 characters is fine', () => {
    const path = `homelab/data/docker/${'a'.repeat(492)}`;
    expect(path).toHaveLength(512);
    expect(evaluateVault(policy, 'moltbot', [pair(path, 'read')]).ok).toBe(true);
  });
});

describe('evaluateVault: TTL', () => {
  it.each([
    ['no requested ttl: the smallest max_ttl of the rules used', [pair('homelab/data/docker/a', 'read')], undefined, 3600],
    ['requested below max_ttl is kept', [pair('homelab/data/docker/a', 'read')], 600, 600],
    ['requested above max_ttl is clamped', [pair('homelab/data/docker/a', 'read')], 7200, 3600],
    ['clamped to the smallest over the pairs', [pair('homelab/data/docker/a', 'read'), pair('homelab/data/x', 'update')], 7200, 1800],
    ['a rule without max_ttl allows 1h', [pair('bots/x', 'read')], 86400, 3600],
    ['tie on tier: the larger max_ttl wins', [pair('tie/a', 'read')], undefined, 45 * 60],
    ['a lower tier wins over a larger max_ttl', [pair('tie/low/a', 'read')], undefined, 5 * 60],
  ] as const)('%s', (_name, pairs, requested, ttl) => {
    expect(ok(evaluateVault(policy, 'moltbot', pairs, requested)).ttlSeconds).toBe(ttl);
  });

  it('tie-break picks the rule with the larger max_ttl', () => {
    expect(ok(evaluateVault(policy, 'moltbot', [pair('tie/a', 'read')])).rules).toEqual(['tie-long']);
    expect(ok(evaluateVault(policy, 'moltbot', [pair('tie/low/a', 'read')]))).toMatchObject({ requiredTier: 1, rules: ['tie-low'] });
  });

  it('with equal tier and max_ttl the earlier rule is used', () => {
    expect(ok(evaluateVault(policy, 'moltbot', [pair('eq/a', 'read')])).rules).toEqual(['eq-first']);
  });

  it.each([0, -5, 1.5, Number.NaN, Number.POSITIVE_INFINITY])('rejects a requested ttl of %s (caller bug)', (ttl) => {
    expect(() => evaluateVault(policy, 'moltbot', [pair('homelab/data/docker/a', 'read')], ttl)).toThrow(RangeError);
    expect(() => evaluateGate(policy, 'moltbot', 'homelab/app', ['refs/heads/agent/x'], ttl)).toThrow(RangeError);
  });
});

describe('evaluateGate', () => {
  it.each([
    ['agent branch push (tier 2)', 'moltbot', 'homelab/app', ['refs/heads/agent/fix'], undefined, 2, 3600, ['agent-branches']],
    ['several refs', 'moltbot', 'homelab/app', ['refs/heads/agent/a', 'refs/heads/agent/b/c'], undefined, 2, 3600, ['agent-branches']],
    ['"*" agents: any agent may push agent branches', 'other', 'homelab/app', ['refs/heads/agent/x'], undefined, 2, 3600, ['agent-branches']],
    ['tier-1 sandbox via "+"', 'moltbot', 'sandbox/play', ['refs/heads/feature'], 600, 1, 600, ['sandbox-push']],
    [
      'highest tier over refs, smallest ttl',
      'moltbot',
      'homelab/infra',
      ['refs/heads/agent/x', 'refs/tags/v1.0'],
      undefined,
      3,
      600,
      ['agent-branches', 'release-tags'],
    ],
    ['deny with repos and refs needs both: other ref passes', 'moltbot', 'homelab/infra', ['refs/tags/v1.2'], undefined, 3, 600, ['release-tags']],
    ['duplicate refs are fine', 'moltbot', 'homelab/app', ['refs/heads/agent/a', 'refs/heads/agent/a'], undefined, 2, 3600, ['agent-branches']],
  ] as const)('%s', (_name, agent, repo, refs, ttl, tier, ttlOut, rules) => {
    const d = ok(evaluateGate(policy, agent, repo, refs, ttl));
    expect(d).toMatchObject({ requiredTier: tier, ttlSeconds: ttlOut, rules });
  });

  it.each([
    ['uncovered ref', 'moltbot', 'homelab/app', ['refs/heads/feature'], 'NOT_COVERED', 'homelab/app:refs/heads/feature'],
    ['uncovered repo', 'moltbot', 'other/app', ['refs/heads/agent/x'], 'NOT_COVERED', 'other/app:refs/heads/agent/x'],
    ['"homelab/*" does not cover "homelab"', 'moltbot', 'homelab', ['refs/heads/agent/x'], 'NOT_COVERED', 'homelab:refs/heads/agent/x'],
    ['agent mismatch', 'other', 'sandbox/play', ['refs/heads/feature'], 'NOT_COVERED', 'sandbox/play:refs/heads/feature'],
    ['"+" is one segment', 'moltbot', 'sandbox/a/b', ['refs/heads/feature'], 'NOT_COVERED', 'sandbox/a/b:refs/heads/feature'],
    ['deny by repo only: any ref', 'moltbot', 'homelab/secrets', ['refs/heads/agent/x'], 'DENIED_BY_POLICY', 'homelab/secrets:refs/heads/agent/x'],
    ['deny by ref only: every repo', 'moltbot', 'sandbox/play', ['refs/heads/main'], 'DENIED_BY_POLICY', 'sandbox/play:refs/heads/main'],
    ['deny by repo and ref', 'moltbot', 'homelab/infra', ['refs/tags/v0.9'], 'DENIED_BY_POLICY', 'homelab/infra:refs/tags/v0.9'],
    [
      'deny with repos and refs: ref alone elsewhere is not denied',
      'moltbot',
      'homelab/app',
      ['refs/tags/v0.9'],
      'NOT_COVERED',
      'homelab/app:refs/tags/v0.9',
    ],
    [
      'one bad ref rejects the whole request',
      'moltbot',
      'homelab/app',
      ['refs/heads/agent/x', 'refs/heads/main'],
      'DENIED_BY_POLICY',
      'homelab/app:refs/heads/main',
    ],
    ['no refs', 'moltbot', 'homelab/app', [], 'INVALID_PATH', 'homelab/app:'],
  ] as const)('%s', (_name, agent, repo, refs, code, failedPair) => {
    expect(evaluateGate(policy, agent, repo, refs)).toMatchObject({ ok: false, code, pair: failedPair });
  });

  it('names the pair in the message', () => {
    expect(evaluateGate(policy, 'moltbot', 'homelab/app', ['refs/heads/feature'])).toMatchObject({
      message: 'no rule allows pushing "refs/heads/feature" to "homelab/app" for agent "moltbot"',
    });
    expect(evaluateGate(policy, 'moltbot', 'homelab/secrets', ['refs/heads/agent/x'])).toMatchObject({
      message: 'push of "refs/heads/agent/x" to "homelab/secrets" is denied by policy (repo pattern "homelab/secrets")',
    });
  });

  it.each([
    '',
    '/homelab/app',
    'homelab/app/',
    'homelab//app',
    'homelab/../app',
    'homelab/./app',
    'homelab/*',
    'homelab/+',
    'home lab/app',
    'homelab/app;rm',
    'homelab/app\n',
    'x'.repeat(257),
  ])('invalid repo %j is INVALID_PATH', (repo) => {
    expect(evaluateGate(policy, 'moltbot', repo, ['refs/heads/agent/x'])).toMatchObject({
      ok: false,
      code: 'INVALID_PATH',
      pair: `${repo}:refs/heads/agent/x`,
    });
  });

  it.each([
    'heads/agent/x',
    'refs/',
    'refs/heads/agent/*',
    'refs/heads/agent/+',
    'refs/heads/agent/a..b',
    'refs/heads/agent/.hidden',
    'refs/heads/agent/x.lock',
    'refs/heads/agent/x.',
    'refs/heads/agent//x',
    'refs/heads/agent/x/',
    'refs/heads/agent/a b',
    'refs/heads/agent/a~1',
    'refs/heads/agent/a^',
    'refs/heads/agent/a:b',
    'refs/heads/agent/a?',
    'refs/heads/agent/a[',
    'refs/heads/agent/a\\b',
    'refs/heads/agent/a@{1}',
    'refs/heads/agent/\u0007',
  ])('invalid ref %j is INVALID_PATH', (ref) => {
    expect(evaluateGate(policy, 'moltbot', 'homelab/app', [ref])).toMatchObject({
      ok: false,
      code: 'INVALID_PATH',
      pair: `homelab/app:${ref}`,
    });
  });
});

describe('deny entries ending in "/+"', () => {
  const policy = (): PolicySet => ({
    agents: new Map(),
    files: ['x.yaml'],
    deny: [{ file: 'x.yaml', paths: ['kv/metadata/team/+', 'kv/metadata/deep/+/+'], repos: [], refs: [] }],
    rules: [{ name: 'all', file: 'x.yaml', agents: ['a'], resource: 'vault', paths: ['*'], capabilities: ['read', 'list'], tier: 1, maxTtlSeconds: 60 }],
  });

  it.each([
    ['kv/metadata/team', 'list', 'DENIED_BY_POLICY'],
    ['kv/metadata/team/a', 'list', 'DENIED_BY_POLICY'],
    ['kv/metadata/team/a', 'read', 'DENIED_BY_POLICY'],
    ['kv/metadata/team', 'read', undefined],
    ['kv/metadata/team/a/b', 'list', undefined],
    ['kv/metadata', 'list', undefined],
    ['kv/metadata/deep/a', 'list', 'DENIED_BY_POLICY'],
    ['kv/metadata/deep', 'list', undefined],
  ])('%s %s → %s', (path, cap, code) => {
    const d = evaluateVault(policy(), 'a', [pair(path, cap)]);
    if (code) expect(d).toMatchObject({ ok: false, code });
    else expect(d.ok).toBe(true);
  });
});

describe('policies built by hand', () => {
  it('are indexed lazily and evaluated the same way', () => {
    const hand: PolicySet = {
      agents: new Map(),
      files: ['x.yaml'],
      deny: [{ file: 'x.yaml', paths: ['secret/data/root/*'], repos: [], refs: [] }],
      rules: [
        {
          name: 'r',
          file: 'x.yaml',
          agents: ['a'],
          resource: 'vault',
          paths: ['secret/data/*'],
          capabilities: ['read'],
          tier: 1,
          maxTtlSeconds: 120,
        },
      ],
    };
    expect(evaluateVault(hand, 'a', [pair('secret/data/x', 'read')], 3600)).toMatchObject({ ok: true, ttlSeconds: 120 });
    expect(evaluateVault(hand, 'a', [pair('secret/data/root/x', 'read')])).toMatchObject({ code: 'DENIED_BY_POLICY' });
    expect(evaluateVault(hand, 'b', [pair('secret/data/x', 'read')])).toMatchObject({ code: 'NOT_COVERED' });
  });
});
