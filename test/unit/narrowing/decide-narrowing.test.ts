import { afterAll, beforeEach, describe, expect, it } from 'vitest';
import { decideRequest, type DecideDeps } from '../../../src/broker/decide.ts';
import { PolicyStore } from '../../../src/broker/policy/index.ts';
import { createStorageDeps } from '../../../src/create-deps.ts';
import { openSqliteStorage, sqliteDatabase, type Db } from '../../../src/storage/sqlite/index.ts';
import { ManualClock } from '../../../src/lib/clock.ts';
import { policyFrom, removePolicyDirs } from '../policy/helpers.ts';
import { insertRequest, testConfig } from '../webhooks/helpers.ts';

/** decideRequest with narrowing, on a fresh in-memory database per test. */
afterAll(removePolicyDirs);

const POLICY = policyFrom(`
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
    max_ttl: 30m
  - name: prod
    agents: [moltbot]
    resource: vault
    paths: ["homelab/data/prod/*"]
    capabilities: [delete]
    tier: 3
    max_ttl: 30m
`);

let db: Db;
let deps: DecideDeps;
const clock = new ManualClock(Date.UTC(2026, 0, 1));
beforeEach(() => {
  const storage = openSqliteStorage(':memory:');
  db = sqliteDatabase(storage);
  deps = { ...createStorageDeps({ config: testConfig(), storage, clock }), policies: new PolicyStore(POLICY) };
});

const pending = async (paths: Record<string, string[]>, tier: 2 | 3 = 2) =>
  (
    await insertRequest(deps.storage, {
    status: 'pending',
    tier,
    required_tier: tier,
    decided_by: null,
    decided_at: null,
    claim_expires_at: null,
    approval_expires_at: clock.now() + 600_000,
    scope: JSON.stringify({ vault_paths: Object.entries(paths).map(([path, capabilities]) => ({ path, capabilities })) }),
  })
  ).id;
const audit = (event: string) => db.prepare('SELECT actor, data FROM audit_log WHERE event = ? ORDER BY seq').all(event) as { actor: string; data: string }[];
const votes = () => db.prepare('SELECT COUNT(*) FROM votes').pluck().get();

describe('decideRequest with narrowing', () => {
  it('stores the grant on the request in the approving transaction, with its audit entries', async () => {
    const id = await pending({ 'homelab/data/a': ['read', 'update'] });
    const out = await decideRequest(deps, id, { approver: 'local-cli', decision: 'approve', narrowing: { dropCapabilities: ['update'], ttlSeconds: 60 } });
    expect(out).toMatchObject({ outcome: 'approved', narrowed: true, grant: { vault_paths: [{ path: 'homelab/data/a', capabilities: ['read'] }], ttl_seconds: 60 } });
    const row = (await deps.storage.requests.get(id))!;
    expect(JSON.parse(row.granted_scope!)).toEqual({ vault_paths: [{ path: 'homelab/data/a', capabilities: ['read'] }] });
    expect(row.granted_ttl_seconds).toBe(60);
    expect(JSON.parse(audit('grant.narrowed')[0]!.data)).toMatchObject({ dropped: { dropped_capabilities: [{ path: 'homelab/data/a', capabilities: ['update'] }], ttl_seconds: { requested: 1800, granted: 60 } } });
    expect(JSON.parse(audit('vote.cast')[0]!.data)).toMatchObject({ grant: { ttl_seconds: 60 } });
  });

  it('a refused narrowing records nothing but the refusal; the approver may try again', async () => {
    const id = await pending({ 'homelab/data/a': ['read'] });
    for (const narrowing of [{ ttlSeconds: 7200 }, { dropCapabilities: ['read'] }, { dropPaths: ['homelab/data/zzz'] }]) {
      expect(await decideRequest(deps, id, { approver: 'local-cli', decision: 'approve', narrowing })).toMatchObject({ outcome: 'refused', code: 'BAD_REQUEST' });
    }
    expect(votes()).toBe(0);
    expect(audit('approval.refused')).toHaveLength(3);
    expect((await deps.storage.requests.get(id))!.status).toBe('pending');
    expect((await decideRequest(deps, id, { approver: 'local-cli', decision: 'approve' })).outcome).toBe('approved');
  });

  it('tier 3: the second vote approves within the first; a wider TTL is refused; the final grant is the narrowest', async () => {
    const id = await pending({ 'homelab/data/prod/a': ['delete'], 'homelab/data/prod/b': ['delete'] }, 3);
    expect(await decideRequest(deps, id, { approver: 'telegram:1', decision: 'approve', narrowing: { dropPaths: ['homelab/data/prod/b'], ttlSeconds: 600 } })).toMatchObject({
      outcome: 'vote_recorded',
      narrowed: true,
    });
    expect((await deps.storage.requests.get(id))!.granted_scope).toBeNull();
    const wider = await decideRequest(deps, id, { approver: 'telegram:2', decision: 'approve', narrowing: { ttlSeconds: 900 } });
    expect(wider).toMatchObject({ outcome: 'refused' });
    expect(wider.outcome === 'refused' && wider.message).toMatch(/longer than the 10m already approved/);
    // A plain approval by the second approver approves the first one's narrowed grant.
    const out = await decideRequest(deps, id, { approver: 'telegram:2', decision: 'approve' });
    expect(out).toMatchObject({ outcome: 'approved', grant: { vault_paths: [{ path: 'homelab/data/prod/a', capabilities: ['delete'] }], ttl_seconds: 600 } });
    expect((await deps.storage.requests.get(id))!.decided_by).toBe('telegram:1, telegram:2');
  });

  it('refuses narrowing on a deny, and narrowing without the policy store', async () => {
    const id = await pending({ 'homelab/data/a': ['read'] });
    await expect(decideRequest(deps, id, { approver: 'x', decision: 'deny', narrowing: { ttlSeconds: 60 } })).rejects.toThrow(/approvals only/);
    const { policies: _, ...withoutPolicy } = deps;
    await expect(decideRequest(withoutPolicy, id, { approver: 'x', decision: 'approve', narrowing: { ttlSeconds: 60 } })).rejects.toThrow(/needs the policy store/);
    expect(votes()).toBe(0);
  });

  it('a duplicate vote is reported before any grant work, as before', async () => {
    const id = await pending({ 'homelab/data/prod/a': ['delete'] }, 3);
    await decideRequest(deps, id, { approver: 'telegram:1', decision: 'approve' });
    expect(await decideRequest(deps, id, { approver: 'telegram:1', decision: 'approve', narrowing: { ttlSeconds: 99_999 } })).toMatchObject({ outcome: 'already_voted', approvals: 1 });
  });
});
