import { afterEach, beforeEach, expect, it } from 'vitest';
import { reconcile } from '../../../src/broker/lifecycle.ts';
import { startHarness, type Harness } from '../../helpers/broker-harness.ts';
import { policyPrefix } from '../../../src/broker/grant-policies.ts';

let h: Harness;
let token: string;
beforeEach(async () => {
  h = await startHarness();
  token = await h.addAgent('moltbot');
});
afterEach(async () => {
  await h.close();
});

const body = {
  resource: 'vault',
  tier: 1,
  reason: 'r',
  vault_paths: [{ path: 'homelab/data/docker/registry', capabilities: ['read'] }],
};

it('cleans up what a crash between policy write and token record left behind', async () => {
  // Reproduce the state a SIGKILL after Vault minted the token leaves: a
  // `minting` row, its policy in Vault, and a token whose accessor the broker
  // never recorded.
  const { deps } = h.broker;
  const live = await h.call('POST', '/jit/request', { token, body });
  const now = h.clock.now();
  const requestId = deps.ids.next('req');
  const agentId = (await deps.agents.get('moltbot'))!.id;
  await deps.storage.transaction(async (tx) => {
    await tx.requests.insert({
      id: requestId, agent_id: agentId, agent_name: 'moltbot', resource: 'vault', tier: 1, required_tier: 1,
      status: 'approved', reason: 'r', scope: JSON.stringify({ vault_paths: body.vault_paths }), ttl_seconds: 3600, session_key: null,
      rules: '["docker-read"]', idempotency_key: null, body_hash: null, created_at: now, updated_at: now, approval_expires_at: null,
      claim_expires_at: null, decided_by: 'policy', decided_at: now, decision_reason: null, failure: null,
    });
    await tx.credentials.insert({ id: deps.ids.next('cred'), request_id: requestId, type: 'vault_token', state: 'minting', vault_policy: `jit-${requestId}`, accessor: null, jti: null, issued_at: null, expires_at: now + 3_600_000, reserved_at: now, node_id: 'node_dead' });
  });
  await h.root.write(`sys/policies/acl/jit-${requestId}`, { policy: JSON.stringify({ path: { 'homelab/data/docker/registry': { capabilities: ['read'] } } }) });
  const lost = await h.root.write('auth/token/create-orphan', { policies: [`jit-${requestId}`], ttl: '3600s', renewable: false });
  const lostToken: string = lost.auth.client_token;
  expect((await h.vaultAs(lostToken).read('homelab/data/docker/registry')).data.data.username).toBe('demo');

  // And a stray ephemeral policy of this installation no row knows about.
  await h.root.write(`sys/policies/acl/${await policyPrefix(deps.storage)}cred_00000000000000000000000000`, { policy: '{"path":{"homelab/data/x":{"capabilities":["read"]}}}' });

  const summary = await reconcile(deps);
  expect(summary.interruptedMints).toBe(1);
  expect(summary.strayPolicies).toBe(1);
  expect(summary.policiesCleaned).toBe(1);

  // The lost token can no longer read anything; the live one still can.
  await expect(h.vaultAs(lostToken).read('homelab/data/docker/registry')).rejects.toMatchObject({ response: { statusCode: 403 } });
  expect((await h.vaultAs(live.body.credential.token).read('homelab/data/docker/registry')).data.data.username).toBe('demo');
  expect(await h.jitPolicies()).toEqual(live.body.credential.policies.filter((p: string) => p !== 'default'));
  expect((await deps.storage.requests.get(requestId))?.status).toBe('failed');
});

it('ends live credentials whose token Vault no longer has', async () => {
  const live = await h.call('POST', '/jit/request', { token, body });
  await h.root.write('auth/token/revoke-accessor', { accessor: live.body.credential.accessor });
  const summary = await reconcile(h.broker.deps);
  expect(summary.vanishedTokens).toBe(1);
  expect(await h.jitPolicies()).toEqual([]);
  expect((await h.broker.deps.storage.requests.get(live.body.id))?.status).toBe('expired');
});
