import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { reconcile, sweep } from '../../../src/broker/lifecycle.ts';
import { startHarness, type Harness } from '../../helpers/broker-harness.ts';

/*
 * Identical grants share one ephemeral Vault policy, named by the hash of
 * its content and reference-counted by the credential rows that hold it:
 * a repeated grant costs one Vault call, and the policy goes with its last
 * token.
 */

let h: Harness;
let token: string;
beforeEach(async () => {
  h = await startHarness({ env: { JIT_SHARE_GRANT_POLICIES: 'true' } });
  token = await h.addAgent('moltbot');
});
afterEach(async () => {
  await h.close();
});

const grant = (vault_paths: { path: string; capabilities: string[] }[], extra: Record<string, unknown> = {}) => ({ resource: 'vault', tier: 1, reason: 'r', vault_paths, ...extra });
const registry = grant([{ path: 'homelab/data/docker/registry', capabilities: ['read'] }]);

async function issue(body: unknown = registry): Promise<{ id: string; credential: { token: string; accessor: string; policies: string[] } }> {
  const res = await h.call('POST', '/jit/request', { token, body });
  expect(res.status).toBe(201);
  return res.body;
}
const policyOf = (c: { policies: string[] }) => c.policies.find((p) => p !== 'default')!;
const jitPolicies = () => h.devVault.policyNames().filter((p) => p.startsWith('jit-'));
const policyWrites = () => h.devVault.requests().filter((r) => (r.method === 'PUT' || r.method === 'POST') && r.path.startsWith('/v1/sys/policies/acl/jit-')).length;
const tokenCreates = () => h.devVault.requests().filter((r) => r.path === '/v1/auth/token/create-orphan').length;
async function canRead(t: string): Promise<boolean> {
  return h.vaultAs(t).read('homelab/data/docker/registry').then(
    () => true,
    () => false,
  );
}
const revoke = (id: string) => h.call('POST', `/jit/requests/${id}/revoke`, { token });

describe('one policy per grant', () => {
  it('issues a repeated grant with one Vault call, and deletes the policy with its last token', async () => {
    const a = await issue();
    expect(policyWrites()).toBe(1);
    const writes = policyWrites();
    const creates = tokenCreates();
    const b = await issue(grant([{ path: 'homelab/data/docker/registry', capabilities: ['read'] }], { ttl: '10m' }));
    expect(policyOf(b.credential)).toBe(policyOf(a.credential));
    expect(policyWrites()).toBe(writes);
    expect(tokenCreates()).toBe(creates + 1);
    expect(jitPolicies()).toEqual([policyOf(a.credential)]);

    expect((await revoke(a.id)).status).toBe(200);
    expect(await canRead(a.credential.token)).toBe(false);
    expect(await canRead(b.credential.token)).toBe(true);
    expect(jitPolicies()).toEqual([policyOf(a.credential)]);

    expect((await revoke(b.id)).status).toBe(200);
    expect(jitPolicies()).toEqual([]);
  });

  it('writes a shared policy again once its last write is a minute old, so a Vault that lost it recovers', async () => {
    const a = await issue();
    await h.root.delete(`sys/policies/acl/${policyOf(a.credential)}`); // e.g. a restarted development Vault
    h.clock.advance(61_000);
    const b = await issue();
    expect(policyOf(b.credential)).toBe(policyOf(a.credential));
    expect(await canRead(b.credential.token)).toBe(true);
    expect(policyWrites()).toBe(2);
  });

  it('names a grant by its content: order and duplicates do not matter, anything else does', async () => {
    const two = [
      { path: 'homelab/data/docker/registry', capabilities: ['read', 'list'] },
      { path: 'homelab/data/ci/runner', capabilities: ['read'] },
    ];
    const a = await issue(grant(two));
    const b = await issue(grant([two[1]!, { path: 'homelab/data/docker/registry', capabilities: ['list', 'read'] }]));
    const c = await issue(grant([two[0]!]));
    expect(policyOf(b.credential)).toBe(policyOf(a.credential));
    expect(policyOf(c.credential)).not.toBe(policyOf(a.credential));
    const { data } = await h.root.read(`sys/policies/acl/${policyOf(a.credential)}`);
    expect(JSON.parse(data.policy)).toEqual({ path: { 'homelab/data/ci/runner': { capabilities: ['read'] }, 'homelab/data/docker/registry': { capabilities: ['list', 'read'] } } });
  });

  it('deletes a shared policy exactly once when its credentials expire together', async () => {
    const issued = await Promise.all(Array.from({ length: 6 }, () => issue(grant(registry.vault_paths, { ttl: '1m' }))));
    expect(new Set(issued.map((i) => policyOf(i.credential))).size).toBe(1);
    for (const i of issued) expect(await canRead(i.credential.token)).toBe(true);
    h.clock.advance(61_000);
    const summary = await sweep(h.broker.deps);
    expect(summary.credentialsEnded).toBe(6);
    expect(jitPolicies()).toEqual([]);
    expect(h.devVault.requests().filter((r) => r.method === 'DELETE' && r.path.startsWith('/v1/sys/policies/acl/jit-'))).toHaveLength(1);
  });

  it('keeps the policy when credentials sharing it are revoked at the same time, until the last', async () => {
    const issued = await Promise.all(Array.from({ length: 5 }, () => issue()));
    const statuses = await Promise.all(issued.slice(0, 4).map((i) => revoke(i.id)));
    expect(statuses.map((s) => s.status)).toEqual([200, 200, 200, 200]);
    expect(await canRead(issued[4]!.credential.token)).toBe(true);
    expect(jitPolicies()).toHaveLength(1);
    await revoke(issued[4]!.id);
    expect(jitPolicies()).toEqual([]);
  });
});

describe('failures and restarts', () => {
  it('retires a policy when a mint on it fails: live tokens keep it, the next grant gets a fresh one', async () => {
    const live = await issue();
    h.proxy.setFault((_m, path) => (path.includes('auth/token/create-orphan') ? { status: 500, body: { errors: ['internal error'] } } : undefined));
    expect((await h.call('POST', '/jit/request', { token, body: registry })).status).toBe(503);
    h.proxy.setFault(undefined);
    // The live credential still reads; its policy was not deleted under it.
    expect(await canRead(live.credential.token)).toBe(true);
    // A token Vault might have minted for the failed request shares that policy, so no new one is bound to it.
    const next = await issue();
    expect(policyOf(next.credential)).not.toBe(policyOf(live.credential));
    expect(policyOf(next.credential)).toMatch(/-2$/);
    expect(jitPolicies().sort()).toEqual([policyOf(live.credential), policyOf(next.credential)].sort());
    await revoke(live.id);
    expect(jitPolicies()).toEqual([policyOf(next.credential)]);
    expect(await canRead(next.credential.token)).toBe(true);
  });

  it('a re-claim after a failed claim keeps its own policy through the next sweep', async () => {
    const body = { resource: 'vault', tier: 2, reason: 'rotate', vault_paths: [{ path: 'homelab/data/apps/web', capabilities: ['read', 'update'] }] };
    const pending = await h.call('POST', '/jit/request', { token, body });
    const { decideRequest } = await import('../../../src/broker/decide.ts');
    await decideRequest(h.broker.deps, pending.body.id, { approver: 'local-cli', decision: 'approve' });
    // The claim fails after its policy was written, and Vault stays down for the clean-up.
    let written = false;
    h.proxy.setFault((method, path) => {
      if (path.includes('sys/policies/acl/jit-') && method !== 'DELETE' && !written) {
        written = true;
        return undefined;
      }
      return written ? 'reset' : undefined;
    });
    expect((await h.call('POST', `/jit/requests/${pending.body.id}/claim`, { token })).status).toBe(503);
    h.proxy.setFault(undefined);
    const claim = await h.call('POST', `/jit/requests/${pending.body.id}/claim`, { token });
    expect(claim.status).toBe(201);
    const summary = await sweep(h.broker.deps);
    expect(summary.policiesCleaned).toBe(1);
    expect(jitPolicies()).toEqual([policyOf(claim.body.credential)]);
    await h.vaultAs(claim.body.credential.token).write('homelab/data/apps/web', { data: { key: 'rotated' } });
  });

  it('reconcile retires the policy of an interrupted mint; the live credentials sharing it keep working', async () => {
    const { deps } = h.broker;
    const live = await issue();
    const policy = policyOf(live.credential);
    // A crash mid-issue of the same grant: a `minting` row holding the policy, and a token bound to it the broker never recorded.
    const now = h.clock.now();
    const requestId = deps.ids.next('req');
    const agentId = (await deps.agents.get('moltbot'))!.id;
  await deps.storage.transaction(async (tx) => {
      await tx.requests.insert({
        id: requestId, agent_id: agentId, agent_name: 'moltbot', resource: 'vault', tier: 1, required_tier: 1,
        status: 'approved', reason: 'r', scope: JSON.stringify({ vault_paths: registry.vault_paths }), ttl_seconds: 3600, session_key: null,
        rules: '["docker-read"]', idempotency_key: null, body_hash: null, created_at: now, updated_at: now, approval_expires_at: null,
        claim_expires_at: null, decided_by: 'policy', decided_at: now, decision_reason: null, failure: null,
      });
      await tx.credentials.insert({ id: deps.ids.next('cred'), request_id: requestId, type: 'vault_token', state: 'minting', vault_policy: policy, accessor: null, jti: null, issued_at: null, expires_at: now + 3_600_000, reserved_at: now, node_id: 'node_dead' });
    });
    const lost = await h.root.write('auth/token/create-orphan', { policies: [policy], ttl: '3600s', renewable: false });

    // Its node (no lease: dead) is not this broker's.
    const summary = await reconcile(deps);
    expect(summary.interruptedMints).toBe(1);
    expect(summary.strayPolicies).toBe(0);
    expect((await deps.storage.requests.get(requestId))?.status).toBe('failed');
    expect(await canRead(live.credential.token)).toBe(true);
    const next = await issue();
    expect(policyOf(next.credential)).not.toBe(policy);
    // The policy goes with its last known holder, taking the unrecorded token's grant with it.
    await revoke(live.id);
    expect(jitPolicies()).toEqual([policyOf(next.credential)]);
    expect(await canRead(lost.auth.client_token)).toBe(false);
  });

  it('reconcile deletes a stray shared policy and the next grant writes a fresh one', async () => {
    const first = await issue();
    const policy = policyOf(first.credential);
    // The row is gone (say, a database restored from an older backup) but the policy is still in Vault.
    h.db.prepare(`UPDATE credentials SET state = 'ended' WHERE vault_policy = ?`).run(policy);
    const summary = await reconcile(h.broker.deps);
    expect(summary.strayPolicies).toBe(1);
    expect(jitPolicies()).toEqual([]);
    const next = await issue();
    expect(policyOf(next.credential)).not.toBe(policy);
    expect(jitPolicies()).toEqual([policyOf(next.credential)]);
    expect(await canRead(next.credential.token)).toBe(true);
  });
});
