import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { decideRequest } from '../../../src/broker/decide.ts';
import { sweep } from '../../../src/broker/lifecycle.ts';
import { STALE_MINT_MS, reserveVaultCredential } from '../../../src/broker/credential-issue.ts';
import type { CredentialRow, RequestRow } from '../../../src/broker/rows.ts';
import { holdVaultCall, startHarness, type Harness } from '../../helpers/broker-harness.ts';
import { sqliteDatabase } from '../../../src/storage/sqlite/index.ts';

/*
 * Several broker processes share one database; one of them can die mid-issue
 * while the others (and the primary, which sweeps) keep running. Its
 * interrupted issues must not wait for a restart: the periodic sweep settles
 * those older than STALE_MINT_MS exactly as startup reconciliation does, and
 * leaves younger ones, which a live process may still be running, alone. A
 * mint that outlives the bound anyway cannot bring its abandoned row back to
 * life, and the token Vault created for it is revoked.
 */

let h: Harness;
let token: string;
beforeEach(async () => {
  h = await startHarness();
  token = await h.addAgent('moltbot');
  await h.call('GET', '/healthz'); // startup reconciliation done
});
afterEach(async () => {
  h.proxy.setFault(undefined);
  await h.close();
});

const registry = [{ path: 'homelab/data/docker/registry', capabilities: ['read'] }];
const tier1 = { resource: 'vault', tier: 1, reason: 'r', vault_paths: registry };
const tier2 = { resource: 'vault', tier: 2, reason: 'rotate', vault_paths: [{ path: 'homelab/data/apps/web', capabilities: ['read', 'update'] }] };

const credentialOf = (requestId: string) =>
  h.db.prepare('SELECT * FROM credentials WHERE request_id = ? ORDER BY rowid').all(requestId) as CredentialRow[];
const auditOf = (requestId: string) =>
  h.db.prepare('SELECT event FROM audit_log WHERE request_id = ? ORDER BY seq').pluck().all(requestId) as string[];
const count = (events: string[], event: string) => events.filter((e) => e === event).length;
const agentId = async () => (await h.broker.deps.agents.get('moltbot'))!.id;
const canRead = async (t: string) => {
  try {
    await h.vaultAs(t).read('homelab/data/docker/registry');
    return true;
  } catch (err) {
    if ((err as { response?: { statusCode?: number } }).response?.statusCode === 403) return false;
    throw err;
  }
};
const tokensOf = (requestId: string) => h.devVault.listTokens().filter((t) => t.meta?.['jit_request_id'] === requestId);

/** A tier-1 request as `POST /jit/request` commits it (approved by policy), optionally with its Vault reservation, in one transaction. */
async function insertTier1(opts: { key: string; reserve: boolean; resource?: 'vault' | 'gate' }) {
  const { deps } = h.broker;
  const now = h.clock.now();
  const agent = await agentId();
  const row: RequestRow = {
    id: deps.ids.next('req'), agent_id: agent, agent_name: 'moltbot', resource: opts.resource ?? 'vault', tier: 1, required_tier: 1,
    status: 'approved', reason: 'r',
    scope: opts.resource === 'gate' ? JSON.stringify({ repo: 'homelab/app', refs: ['refs/heads/agent/x'] }) : JSON.stringify({ vault_paths: registry }),
    ttl_seconds: 3600, session_key: null, rules: '["docker-read"]', idempotency_key: opts.key, body_hash: 'h'.repeat(64), created_at: now,
    updated_at: now, approval_expires_at: null, claim_expires_at: null, decided_by: 'policy', decided_at: now, decision_reason: 'tier 1', failure: null,
  };
  return deps.storage.transaction(async (tx) => {
    await tx.requests.insert(row);
    return { row, reservation: opts.reserve ? await reserveVaultCredential(deps, tx, row) : undefined };
  });
}

/** Makes the broker's next `method` call wait until released (a mint hung in Vault). */
const hold = (method: 'writePolicy' | 'createOrphanToken') => holdVaultCall(h.broker, method);

describe('the sweep settles interrupted issues once they are older than STALE_MINT_MS', () => {
  it('the bound has a wide margin over the worst mint (2 × 6 Vault requests of 5 s, plus a busy_timeout)', () => {
    expect(STALE_MINT_MS).toBeGreaterThanOrEqual(1.5 * (2 * 6 * 5_000 + 5_000));
  });

  it('abandons a minting row left by a dead process: policy deleted, tier-1 request failed, key freed, one audit entry', async () => {
    const { deps } = h.broker;
    // A process reserved the credential, wrote the policy, Vault created the token, and the process died.
    const { row, reservation } = await insertTier1({ key: 'dead-1', reserve: true });
    await deps.vault.writePolicy(reservation!.policyName, reservation!.policyText);
    const lost = await h.root.write('auth/token/create-orphan', { policies: [reservation!.policyName], ttl: '3600s', renewable: false });
    const lostToken: string = lost.auth.client_token;
    expect(await canRead(lostToken)).toBe(true);

    // Exactly STALE_MINT_MS old: a live process could still be minting it.
    h.clock.advance(STALE_MINT_MS);
    expect((await sweep(deps)).interruptedMints).toBe(0);
    expect(credentialOf(row.id).map((c) => c.state)).toEqual(['minting']);
    expect(await h.policyExists(reservation!.policyName)).toBe(true);
    expect((await deps.storage.requests.get(row.id))?.status).toBe('approved');

    h.clock.advance(1);
    const summary = await sweep(deps);
    expect(summary.interruptedMints).toBe(1);
    expect(summary.policiesCleaned).toBe(1);
    expect(summary.vaultErrors).toBe(0);
    const [cred] = credentialOf(row.id);
    expect(cred).toMatchObject({ state: 'failed', end_reason: 'broker stopped during issue', reserved_at: row.created_at });
    expect(await h.policyExists(reservation!.policyName)).toBe(false);
    expect(await h.jitPolicies()).toEqual([]);
    expect(await canRead(lostToken)).toBe(false);
    const failed = (await deps.storage.requests.get(row.id))!;
    expect(failed).toMatchObject({ status: 'failed', idempotency_key: null });
    expect(failed.failure).toMatch(/interrupted/);
    expect(await deps.storage.idempotency.find(await agentId(), 'dead-1')).toBeUndefined();
    const events = auditOf(row.id);
    expect(count(events, 'credential.interrupted')).toBe(1);
    expect(count(events, 'credential.abandoned')).toBe(1);
    expect(count(events, 'request.interrupted')).toBe(0);

    // Settled once: the next sweep finds nothing, writes nothing.
    const again = await sweep(deps);
    expect(again.interruptedMints + again.policiesCleaned).toBe(0);
    expect(auditOf(row.id)).toEqual(events);

    // The freed key gets a fresh attempt.
    const retry = await h.call('POST', '/jit/request', { token, body: tier1, headers: { 'idempotency-key': 'dead-1' } });
    expect(retry.status).toBe(201);
    expect(retry.body.id).not.toBe(row.id);
  });

  it('fails a tier-1 request approved without a credential row, with the reconcile audit event, once older than the bound', async () => {
    const { deps } = h.broker;
    // The process died between committing the request and beginning its issue.
    const { row } = await insertTier1({ key: 'dead-2', reserve: false, resource: 'gate' });
    h.clock.advance(STALE_MINT_MS);
    expect((await sweep(deps)).interruptedMints).toBe(0);
    expect((await deps.storage.requests.get(row.id))?.status).toBe('approved');

    h.clock.advance(1);
    expect((await sweep(deps)).interruptedMints).toBe(1);
    expect(await deps.storage.requests.get(row.id)).toMatchObject({ status: 'failed', idempotency_key: null });
    expect(auditOf(row.id).filter((e) => e.endsWith('.interrupted'))).toEqual(['request.interrupted']);
    expect((await sweep(deps)).interruptedMints).toBe(0);
    expect(count(auditOf(row.id), 'request.interrupted')).toBe(1);
  });

  it('leaves a mint in flight alone while it is younger than the bound', async () => {
    const { deps } = h.broker;
    const held = hold('createOrphanToken');
    const pending = h.call('POST', '/jit/request', { token, body: tier1, headers: { 'idempotency-key': 'young' } });
    await held.reached;
    const [row] = sqliteDatabase(deps.storage).prepare(`SELECT * FROM credentials WHERE state = 'minting'`).all() as CredentialRow[];
    expect(row).toBeDefined();
    // The policy write goes out alongside the held token create.
    for (let i = 0; i < 100 && !(await h.policyExists(row!.vault_policy!)); i++) await new Promise((r) => setTimeout(r, 20));
    expect(await h.policyExists(row!.vault_policy!)).toBe(true);

    h.clock.advance(STALE_MINT_MS - 1_000);
    const summary = await sweep(deps);
    expect(summary.interruptedMints).toBe(0);
    expect(summary.policiesCleaned).toBe(0);
    expect(credentialOf(row!.request_id).map((c) => c.state)).toEqual(['minting']);
    expect(await h.policyExists(row!.vault_policy!)).toBe(true);
    expect((await deps.storage.requests.get(row!.request_id))?.status).toBe('approved');

    held.release();
    const res = await pending;
    expect(res.status).toBe(201);
    expect(credentialOf(row!.request_id).map((c) => c.state)).toEqual(['live']);
    expect(await canRead(res.body.credential.token)).toBe(true);
    expect(auditOf(row!.request_id).filter((e) => e.endsWith('.interrupted'))).toEqual([]);
  });

  it.each(['writePolicy', 'createOrphanToken'] as const)(
    'a mint that finishes after its row was abandoned (held at %s) does not make it live, and its token is revoked',
    async (method) => {
      const { deps } = h.broker;
      const held = hold(method);
      const pending = h.call('POST', '/jit/request', { token, body: tier1, headers: { 'idempotency-key': 'late' } });
      await held.reached;
      const [row] = sqliteDatabase(deps.storage).prepare(`SELECT * FROM credentials WHERE state = 'minting'`).all() as CredentialRow[];
      const requestId = row!.request_id;

      h.clock.advance(STALE_MINT_MS + 1);
      const summary = await sweep(deps);
      expect(summary.interruptedMints).toBe(1);
      expect(summary.policiesCleaned).toBe(1);
      expect(await deps.storage.requests.get(requestId)).toMatchObject({ status: 'failed', idempotency_key: null });
      expect(await h.jitPolicies()).toEqual([]);

      // The hung process wakes up: its policy write (if held there) and token create go through.
      held.release();
      const res = await pending;
      expect(res.status).toBe(503);
      expect(Number(res.headers.get('retry-after'))).toBeGreaterThan(0);
      expect(res.body.detail).toMatch(/abandoned; nothing was issued/);
      expect(JSON.stringify(res.body)).not.toMatch(/hvs\./);

      const creds = credentialOf(requestId);
      expect(creds).toHaveLength(1);
      expect(creds[0]).toMatchObject({ state: 'failed', issued_at: null });
      expect(creds[0]!.accessor).toBeTruthy(); // the late token is known, by accessor only
      expect((await deps.storage.requests.get(requestId))?.status).toBe('failed');
      expect(h.devVault.listTokens().some((t) => t.accessor === creds[0]!.accessor)).toBe(false);
      expect(tokensOf(requestId)).toEqual([]);
      expect(await h.jitPolicies()).toEqual([]); // a policy the late write put back is deleted again
      const events = auditOf(requestId);
      expect(count(events, 'credential.interrupted')).toBe(1);
      expect(count(events, 'credential.minted_after_abandon')).toBe(1);
      expect(count(events, 'credential.issued')).toBe(0);

      // The agent's retry with the same key is a fresh attempt.
      const retry = await h.call('POST', '/jit/request', { token, body: tier1, headers: { 'idempotency-key': 'late' } });
      expect(retry.status).toBe(201);
      expect(await canRead(retry.body.credential.token)).toBe(true);
    },
  );

  it('a late token whose revocation fails stays known and is revoked by the next sweep', async () => {
    const { deps } = h.broker;
    const held = hold('createOrphanToken');
    const pending = h.call('POST', '/jit/request', { token, body: tier1 });
    await held.reached;
    const [row] = sqliteDatabase(deps.storage).prepare(`SELECT * FROM credentials WHERE state = 'minting'`).all() as CredentialRow[];
    h.clock.advance(STALE_MINT_MS + 1);
    expect((await sweep(deps)).interruptedMints).toBe(1);

    h.proxy.setFault((_method, path) => (path.startsWith('/v1/auth/token/revoke-accessor') ? 'reset' : undefined));
    held.release();
    expect((await pending).status).toBe(503);
    const [cred] = credentialOf(row!.request_id);
    expect(cred!.state).toBe('abandoned'); // back in the sweep's hands
    expect(h.devVault.listTokens().some((t) => t.accessor === cred!.accessor)).toBe(true);

    expect((await sweep(deps)).vaultErrors).toBe(1); // Vault still refuses: kept for the next pass
    h.proxy.setFault(undefined);
    expect((await sweep(deps)).policiesCleaned).toBe(1);
    expect(credentialOf(row!.request_id)[0]!.state).toBe('failed');
    expect(h.devVault.listTokens().some((t) => t.accessor === cred!.accessor)).toBe(false);
    expect(await h.jitPolicies()).toEqual([]);
  });

  it('a stale claim is abandoned but its approved request stays approved, and the claim can be made again', async () => {
    const { deps } = h.broker;
    const created = await h.call('POST', '/jit/request', { token, body: tier2 });
    expect(created.status).toBe(202);
    await decideRequest(deps, created.body.id, { approver: 'local-cli', decision: 'approve' });
    // The claiming process reserved the credential and died.
    await deps.storage.transaction(async (tx) => reserveVaultCredential(deps, tx, (await tx.requests.get(created.body.id))!));
    h.clock.advance(STALE_MINT_MS + 1);
    expect((await sweep(deps)).interruptedMints).toBe(1);
    expect((await deps.storage.requests.get(created.body.id))?.status).toBe('approved');
    const claim = await h.call('POST', `/jit/requests/${created.body.id}/claim`, { token });
    expect(claim.status).toBe(201);
    expect(credentialOf(created.body.id).map((c) => c.state)).toEqual(['failed', 'live']);
  });
});
