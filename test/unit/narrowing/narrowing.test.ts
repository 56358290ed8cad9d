import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import {
  applyNarrowing,
  ceilingOf,
  checkGrantAgainstPolicy,
  describeDifference,
  grantDifference,
  grantOf,
  grantWithin,
  intersectGrants,
  normalizeGrant,
  requestedGrant,
  type Grant,
  type Narrowing,
} from '../../../src/broker/narrowing.ts';
import type { RequestRow } from '../../../src/broker/rows.ts';
import { policyFrom, removePolicyDirs } from '../policy/helpers.ts';

afterAll(removePolicyDirs);

const vault = (paths: Record<string, string[]>, ttl = 1800): Grant => ({
  resource: 'vault',
  vault_paths: Object.entries(paths).map(([path, capabilities]) => ({ path, capabilities })),
  ttl_seconds: ttl,
});
const gate = (refs: string[], ttl = 1800, repo = 'homelab/app'): Grant => ({ resource: 'gate', repo, refs, ttl_seconds: ttl });

const REQUESTED = vault({ 'a/web': ['read', 'update'], 'a/db': ['read', 'update'] });

describe('applyNarrowing', () => {
  it.each<[string, Narrowing, Grant]>([
    ['nothing', {}, REQUESTED],
    ['a shorter TTL', { ttlSeconds: 300 }, vault({ 'a/web': ['read', 'update'], 'a/db': ['read', 'update'] }, 300)],
    ['a capability, from every path', { dropCapabilities: ['update'] }, vault({ 'a/web': ['read'], 'a/db': ['read'] })],
    ['a path', { dropPaths: ['a/db'] }, vault({ 'a/web': ['read', 'update'] })],
    ['all of it at once', { ttlSeconds: 60, dropCapabilities: ['read'], dropPaths: ['a/web'] }, vault({ 'a/db': ['update'] }, 60)],
  ])('narrows by %s', (_, n, expected) => {
    expect(applyNarrowing(REQUESTED, REQUESTED, n)).toEqual({ ok: true, grant: expected });
  });

  it.each<[string, Narrowing, string, RegExp]>([
    ['a longer TTL', { ttlSeconds: 3600 }, 'WIDENS', /1h is longer than the request's 30m/],
    ['a TTL of zero', { ttlSeconds: 0 }, 'WIDENS', /positive whole number/],
    ['a capability not requested', { dropCapabilities: ['delete'] }, 'NOT_REQUESTED', /capability "delete" was not requested \(requested: read, update\)/],
    ['a path not requested', { dropPaths: ['a/other'] }, 'NOT_REQUESTED', /path "a\/other" was not requested/],
    ['refs on a Vault request', { dropRefs: ['refs/heads/x'] }, 'NOT_APPLICABLE', /only be dropped from gate requests/],
    ['every capability', { dropCapabilities: ['read', 'update'] }, 'EMPTY', /leaves nothing to grant/],
    ['every path', { dropPaths: ['a/web', 'a/db'] }, 'EMPTY', /deny the request instead/],
  ])('refuses %s', (_, n, reason, message) => {
    const r = applyNarrowing(REQUESTED, REQUESTED, n);
    expect(r).toMatchObject({ ok: false, reason });
    expect(!r.ok && r.message).toMatch(message);
  });

  it('works on gate refs, and refuses Vault drops there', () => {
    const g = gate(['refs/heads/a', 'refs/heads/b']);
    expect(applyNarrowing(g, g, { dropRefs: ['refs/heads/b'], ttlSeconds: 900 })).toEqual({ ok: true, grant: gate(['refs/heads/a'], 900) });
    expect(applyNarrowing(g, g, { dropRefs: ['refs/heads/a', 'refs/heads/b'] })).toMatchObject({ ok: false, reason: 'EMPTY' });
    expect(applyNarrowing(g, g, { dropRefs: ['refs/heads/main'] })).toMatchObject({ ok: false, reason: 'NOT_REQUESTED' });
    expect(applyNarrowing(g, g, { dropCapabilities: ['read'] })).toMatchObject({ ok: false, reason: 'NOT_APPLICABLE' });
  });

  it('within a narrower ceiling (tier 3): cannot widen past it, dropping what it lacks is a no-op', () => {
    const ceiling = vault({ 'a/web': ['read'] }, 600);
    expect(applyNarrowing(REQUESTED, ceiling, { ttlSeconds: 900 })).toMatchObject({ ok: false, reason: 'WIDENS' });
    expect(applyNarrowing(REQUESTED, ceiling, { dropPaths: ['a/db'], dropCapabilities: ['update'] })).toEqual({ ok: true, grant: ceiling });
    expect(applyNarrowing(REQUESTED, ceiling, {})).toEqual({ ok: true, grant: ceiling });
  });

  it('property: whatever the narrowing, the grant is within the ceiling and the request, or refused', () => {
    const caps = ['read', 'update', 'create', 'delete', 'list', 'patch', 'sudo'];
    const paths = ['a/1', 'a/2', 'a/3', 'b/1'];
    const grantArb = fc.record({
      paths: fc.uniqueArray(fc.constantFrom(...paths), { minLength: 1 }),
      caps: fc.uniqueArray(fc.constantFrom(...caps.slice(0, 6)), { minLength: 1 }),
      ttl: fc.integer({ min: 1, max: 7200 }),
    });
    const narrowingArb = fc.record({
      ttlSeconds: fc.option(fc.integer({ min: -5, max: 10_000 }), { nil: undefined }),
      dropCapabilities: fc.uniqueArray(fc.constantFrom(...caps)),
      dropPaths: fc.uniqueArray(fc.constantFrom(...paths)),
    });
    fc.assert(
      fc.property(grantArb, fc.array(narrowingArb, { minLength: 1, maxLength: 4 }), (g, steps) => {
        const requested = vault(Object.fromEntries(g.paths.map((p) => [p, g.caps])), g.ttl);
        let ceiling = requested;
        for (const n of steps) {
          const r = applyNarrowing(requested, ceiling, n);
          if (!r.ok) continue;
          expect(grantWithin(r.grant, ceiling)).toBe(true);
          expect(grantWithin(r.grant, requested)).toBe(true);
          expect(r.grant.resource === 'vault' && r.grant.vault_paths.length).toBeGreaterThan(0);
          ceiling = r.grant;
        }
      }),
      { numRuns: 300 },
    );
  });
});

describe('grants', () => {
  it('normalizes duplicate paths and capabilities', () => {
    expect(normalizeGrant('vault', { vault_paths: [{ path: 'a', capabilities: ['read', 'read'] }, { path: 'a', capabilities: ['update'] }, { path: 'b', capabilities: [] }] }, 60)).toEqual(
      vault({ a: ['read', 'update'] }, 60),
    );
  });

  it('intersects and compares', () => {
    const a = vault({ x: ['read', 'update'], y: ['read'] }, 600);
    const b = vault({ x: ['update', 'delete'], z: ['read'] }, 300);
    expect(intersectGrants(a, b)).toEqual(vault({ x: ['update'] }, 300));
    expect(grantWithin(intersectGrants(a, b), a)).toBe(true);
    expect(grantWithin(a, intersectGrants(a, b))).toBe(false);
    expect(intersectGrants(gate(['r1', 'r2']), gate(['r2', 'r3'], 60))).toEqual(gate(['r2'], 60));
    expect(intersectGrants(gate(['r1']), gate(['r1'], 60, 'other/repo'))).toMatchObject({ resource: 'gate', refs: [] });
  });

  it('folds tier-3 votes into the ceiling; votes from before narrowing count as the whole request', () => {
    const votes = [
      { grant_scope: null, grant_ttl_seconds: null },
      { grant_scope: JSON.stringify({ vault_paths: [{ path: 'a/web', capabilities: ['read', 'update'] }] }), grant_ttl_seconds: 900 },
      { grant_scope: JSON.stringify({ vault_paths: [{ path: 'a/web', capabilities: ['read'] }, { path: 'a/db', capabilities: ['read'] }] }), grant_ttl_seconds: 1200 },
    ];
    expect(ceilingOf(REQUESTED, votes)).toEqual(vault({ 'a/web': ['read'] }, 900));
    expect(ceilingOf(REQUESTED, [])).toEqual(REQUESTED);
  });

  it('describes what was left out', () => {
    const d = grantDifference(REQUESTED, vault({ 'a/web': ['read'] }, 300));
    expect(describeDifference(d)).toBe('update on a/web; path a/db; TTL 30m → 5m');
    expect(describeDifference(grantDifference(gate(['r1', 'r2']), gate(['r1'])))).toBe('ref r2');
    expect(describeDifference(grantDifference(REQUESTED, REQUESTED))).toBe('');
  });

  const row = (over: Partial<RequestRow>): RequestRow =>
    ({
      resource: 'vault',
      scope: JSON.stringify({ vault_paths: [{ path: 'a/web', capabilities: ['read'] }] }),
      ttl_seconds: 600,
      status: 'pending',
      decided_at: null,
      decided_by: null,
      granted_scope: null,
      granted_ttl_seconds: null,
      ...over,
    }) as RequestRow;

  it.each<[string, Partial<RequestRow>, boolean]>([
    ['pending', {}, false],
    ['denied', { status: 'denied', decided_at: 1, decided_by: 'x' }, false],
    ['timed out', { status: 'timed_out', decided_at: 1, decided_by: 'timeout' }, false],
    ['cancelled while pending', { status: 'revoked' }, false],
    ['approved by tier-1 policy', { status: 'issued', decided_at: 1, decided_by: 'policy' }, true],
    ['approved, then revoked', { status: 'revoked', decided_at: 1, decided_by: 'local-cli' }, true],
    ['approved, unclaimed, expired', { status: 'expired', decided_at: 1, decided_by: 'local-cli' }, true],
  ])('grantOf: %s → granted %s', (_, over, granted) => {
    expect(grantOf(row(over)) !== null).toBe(granted);
  });

  it('grantOf prefers the stored grant', () => {
    const r = row({ status: 'approved', decided_at: 1, decided_by: 'x', granted_scope: JSON.stringify({ vault_paths: [{ path: 'a/web', capabilities: ['read'] }] }), granted_ttl_seconds: 60 });
    expect(grantOf(r)).toEqual(vault({ 'a/web': ['read'] }, 60));
    expect(requestedGrant(r).ttl_seconds).toBe(600);
  });
});

describe('checkGrantAgainstPolicy', () => {
  const policy = policyFrom(`
agents:
  moltbot:
    sessions: ["hook:jit:moltbot*"]
rules:
  - name: write
    agents: [moltbot]
    resource: vault
    paths: ["homelab/data/*"]
    capabilities: [read, update]
    tier: 2
    max_ttl: 10m
  - name: prod
    agents: [moltbot]
    resource: vault
    paths: ["homelab/data/prod/*"]
    capabilities: [delete]
    tier: 3
    max_ttl: 10m
deny:
  - paths: ["homelab/data/vault/*"]
`);
  const req = { agent_name: 'moltbot', required_tier: 2 as const };

  it('passes a grant policy still allows, shortening the TTL to the current max_ttl', () => {
    expect(checkGrantAgainstPolicy(policy, req, vault({ 'homelab/data/x': ['read'] }, 300))).toEqual({ ok: true, grant: vault({ 'homelab/data/x': ['read'] }, 300) });
    expect(checkGrantAgainstPolicy(policy, req, vault({ 'homelab/data/x': ['read'] }, 1800))).toEqual({ ok: true, grant: vault({ 'homelab/data/x': ['read'] }, 600), clampedFromTtl: 1800 });
  });

  it('refuses a denied pair, an uncovered one, and a tier above the request\'s', () => {
    expect(checkGrantAgainstPolicy(policy, req, vault({ 'homelab/data/vault/root': ['read'] }))).toMatchObject({ ok: false, code: 'DENIED_BY_POLICY' });
    expect(checkGrantAgainstPolicy(policy, req, vault({ 'sys/x': ['read'] }))).toMatchObject({ ok: false, code: 'NOT_COVERED' });
    expect(checkGrantAgainstPolicy(policy, req, vault({ 'homelab/data/prod/db': ['delete'] }))).toMatchObject({ ok: false, code: 'FORBIDDEN' });
    expect(checkGrantAgainstPolicy(policy, { ...req, required_tier: 3 }, vault({ 'homelab/data/prod/db': ['delete'] }, 60)).ok).toBe(true);
  });
});
