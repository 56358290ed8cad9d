import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { decideRequest } from '../../../src/broker/decide.ts';
import { sweep } from '../../../src/broker/lifecycle.ts';
import { startHarness, type Harness } from '../../helpers/broker-harness.ts';

let h: Harness;
let token: string;
beforeEach(async () => {
  h = await startHarness();
  token = await h.addAgent('moltbot');
});
afterEach(async () => {
  await h.close();
});

const write = (tier: number, path = 'homelab/data/apps/web') => ({
  resource: 'vault',
  tier,
  reason: 'rotate the web app key',
  vault_paths: [{ path, capabilities: ['read', 'update'] }],
});

async function pending(body = write(2)) {
  const res = await h.call('POST', '/jit/request', { token, body });
  expect(res.status).toBe(202);
  return res.body.id as string;
}

describe('tier 2: approve then claim', () => {
  it('mints once on claim after approval; a second claim is 409', async () => {
    const id = await pending();
    expect((await h.call('POST', `/jit/requests/${id}/claim`, { token })).status).toBe(409);

    const decided = await decideRequest(h.broker.deps, id, { approver: 'local-cli', decision: 'approve' });
    expect(decided.outcome).toBe('approved');

    const claim = await h.call('POST', `/jit/requests/${id}/claim`, { token });
    expect(claim.status).toBe(201);
    expect(claim.body).toMatchObject({ id, status: 'issued', tier: 2, required_tier: 2, credential: { type: 'vault_token' } });
    const agentVault = h.vaultAs(claim.body.credential.token);
    await agentVault.write('homelab/data/apps/web', { data: { key: 'rotated' } });
    expect((await h.root.read('homelab/data/apps/web')).data.data.key).toBe('rotated');

    const again = await h.call('POST', `/jit/requests/${id}/claim`, { token });
    expect(again.status).toBe(409);
    const view = await h.call('GET', `/jit/requests/${id}`, { token });
    expect(view.body).toMatchObject({ status: 'issued', decision: { approver: 'local-cli' } });
  });

  it('issues exactly one credential when claims race', async () => {
    const id = await pending();
    await decideRequest(h.broker.deps, id, { approver: 'local-cli', decision: 'approve' });
    const results = await Promise.all(Array.from({ length: 8 }, () => h.call('POST', `/jit/requests/${id}/claim`, { token })));
    expect(results.filter((r) => r.status === 201)).toHaveLength(1);
    expect(results.filter((r) => r.status === 409)).toHaveLength(7);
    const count = h.db.prepare(`SELECT COUNT(*) FROM credentials WHERE request_id = ? AND state = 'live'`).pluck().get(id);
    expect(count).toBe(1);
  });

  it('410 once the claim window has passed', async () => {
    const id = await pending();
    await decideRequest(h.broker.deps, id, { approver: 'local-cli', decision: 'approve' });
    h.clock.advance(601_000);
    const res = await h.call('POST', `/jit/requests/${id}/claim`, { token });
    expect(res.status).toBe(410);
    expect((await h.call('GET', `/jit/requests/${id}`, { token })).body.status).toBe('expired');
  });

  it('unclaimed approvals expire in the sweep', async () => {
    const id = await pending();
    await decideRequest(h.broker.deps, id, { approver: 'local-cli', decision: 'approve' });
    h.clock.advance(601_000);
    expect((await sweep(h.broker.deps)).claimExpired).toBe(1);
  });

  it('a denied request cannot be claimed and a second decision changes nothing', async () => {
    const id = await pending();
    expect((await decideRequest(h.broker.deps, id, { approver: 'local-cli', decision: 'deny', reason: 'not now' })).outcome).toBe('denied');
    const second = await decideRequest(h.broker.deps, id, { approver: 'telegram:1', decision: 'approve' });
    expect(second).toMatchObject({ outcome: 'already_decided', status: 'denied', decidedBy: 'local-cli' });
    expect((await h.call('POST', `/jit/requests/${id}/claim`, { token })).status).toBe(409);
    const view = await h.call('GET', `/jit/requests/${id}`, { token });
    expect(view.body).toMatchObject({ status: 'denied', decision: { approver: 'local-cli', reason: 'not now' } });
  });

  it('keeps the request approved when Vault is down at claim time', async () => {
    const id = await pending();
    await decideRequest(h.broker.deps, id, { approver: 'local-cli', decision: 'approve' });
    h.proxy.setFault(() => 'reset');
    const failed = await h.call('POST', `/jit/requests/${id}/claim`, { token });
    expect(failed.status).toBe(503);
    h.proxy.setFault(undefined);
    const ok = await h.call('POST', `/jit/requests/${id}/claim`, { token });
    expect(ok.status).toBe(201);
  });

  it('refuses a late approval after the deadline passed', async () => {
    const id = await pending();
    h.clock.advance(600_001);
    const result = await decideRequest(h.broker.deps, id, { approver: 'local-cli', decision: 'approve' });
    expect(result).toMatchObject({ outcome: 'already_decided', status: 'timed_out' });
  });
});

describe('tier 3 quorum', () => {
  it('needs two distinct approvers; the same approver twice does not count', async () => {
    const id = await pending(write(3, 'homelab/data/prod/db'));
    const { deps } = h.broker;
    expect(await decideRequest(deps, id, { approver: 'telegram:1', decision: 'approve' })).toMatchObject({ outcome: 'vote_recorded', approvals: 1, needed: 2 });
    expect(await decideRequest(deps, id, { approver: 'telegram:1', decision: 'approve' })).toMatchObject({ outcome: 'already_voted', approvals: 1 });
    expect((await deps.storage.requests.get(id))?.status).toBe('pending');
    expect((await decideRequest(deps, id, { approver: 'telegram:2', decision: 'approve' })).outcome).toBe('approved');
    expect((await deps.storage.requests.get(id))?.decided_by).toBe('telegram:1, telegram:2');
  });

  it('any deny ends it', async () => {
    const id = await pending(write(3, 'homelab/data/prod/db'));
    const { deps } = h.broker;
    await decideRequest(deps, id, { approver: 'telegram:1', decision: 'approve' });
    expect((await decideRequest(deps, id, { approver: 'telegram:2', decision: 'deny' })).outcome).toBe('denied');
    expect((await decideRequest(deps, id, { approver: 'telegram:3', decision: 'approve' })).outcome).toBe('already_decided');
  });
});
