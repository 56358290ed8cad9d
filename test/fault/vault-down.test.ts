import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decideRequest } from '../../src/broker/decide.ts';
import { reconcile, sweep } from '../../src/broker/lifecycle.ts';
import { startBroker, type RunningBroker } from '../../src/main.ts';
import { startDevVault } from '../../src/vault/dev/index.ts';
import { ROOT_TOKEN, TEST_POLICY, startHarness, type Harness } from '../helpers/broker-harness.ts';
import { startChaosProxy, type ChaosProxy } from '../helpers/chaos-proxy.ts';
import { figureLog } from '../helpers/chaos-report.ts';

/**
 * Vault down and back, through the fault proxy in front of the development
 * Vault: the broker keeps serving what does not need Vault, answers 503 with
 * Retry-After for what does, leaves nothing half-issued, and once Vault is
 * back it issues again and the sweep removes what the outage left behind.
 */
const tier1 = { resource: 'vault', tier: 1, reason: 'read the registry login', vault_paths: [{ path: 'homelab/data/docker/registry', capabilities: ['read'] }] };
const tier2 = { resource: 'vault', tier: 2, reason: 'rotate the web key', vault_paths: [{ path: 'homelab/data/apps/web', capabilities: ['read', 'update'] }] };

const down = () => 'reset' as const;
/** Vault dies in the middle of an issue: the policy write gets through, the token create and every clean-up do not. */
const midIssue = (method: string, path: string) =>
  path.startsWith('/v1/auth/token/create-orphan') || (method === 'DELETE' && path.startsWith('/v1/sys/policies/acl/')) ? ('reset' as const) : undefined;

describe('fault: Vault down and back', () => {
  let h: Harness;
  let token: string;
  const jitPolicies = () => h.devVault.policyNames().filter((p) => p.startsWith('jit-'));
  const livePolicies = () =>
    (h.db.prepare(`SELECT vault_policy FROM credentials WHERE state = 'live' AND vault_policy IS NOT NULL ORDER BY vault_policy`).pluck().all() as string[]);
  const approvedTier2 = async () => {
    const res = await h.call('POST', '/jit/request', { token, body: tier2 });
    expect(res.status).toBe(202);
    await decideRequest(h.broker.deps, res.body.id, { approver: 'local-cli', decision: 'approve' });
    return res.body.id as string;
  };

  beforeAll(async () => {
    h = await startHarness();
    token = await h.addAgent('moltbot');
  });
  afterAll(async () => {
    h.proxy.setFault(undefined);
    await h?.close();
  });

  it('serves without Vault, issues again once it is back, and the sweep cleans up', async () => {
    const f = figureLog('fault: vault down and back');
    const before = await h.call('POST', '/jit/request', { token, body: tier1 });
    expect(before.status).toBe(201);
    const approved = await approvedTier2();

    // --- Vault unreachable: every connection to it is dropped.
    h.proxy.setFault(down);
    const seenBefore = h.proxy.seen.length;
    const n = 10;
    const statuses: number[] = [];
    for (let i = 0; i < n; i++) {
      const res = await h.call('POST', '/jit/request', { token, body: tier1, headers: { 'Idempotency-Key': `down-${i}` } });
      statuses.push(res.status);
      expect(res.status).toBe(503);
      expect(res.headers.get('content-type')).toContain('application/problem+json');
      expect(Number(res.headers.get('retry-after'))).toBeGreaterThan(0);
      expect(JSON.stringify(res.body)).not.toMatch(/\bat .*\.ts:\d+/); // no stack trace
    }
    f.line(`Vault down: ${n} tier-1 requests → ${statuses.filter((s) => s === 503).length}× 503 with Retry-After ${(await h.call('POST', '/jit/request', { token, body: tier1 })).headers.get('retry-after')} s`);
    const get = await h.call('GET', `/jit/requests/${before.body.id}`, { token });
    expect(get.status).toBe(200);
    expect(get.body.status).toBe('issued');
    const pending = await h.call('POST', '/jit/request', { token, body: tier2 });
    expect(pending.status).toBe(202);
    const claim = await h.call('POST', `/jit/requests/${approved}/claim`, { token });
    expect(claim.status).toBe(503);
    expect((await h.broker.deps.storage.requests.get(approved))?.status).toBe('approved');
    const revoke = await h.call('POST', `/jit/requests/${before.body.id}/revoke`, { token });
    expect(revoke.status).toBe(503); // recorded, Vault clean-up deferred to the sweep
    expect((await h.broker.deps.storage.requests.get(before.body.id))?.status).toBe('revoked');
    const health = await h.call('GET', '/healthz');
    expect(health.status).toBe(503);
    expect(health.body.vault).toBe('unreachable');
    f.line(`Vault down: GET own request 200, tier-2 request 202, claim 503 (request stays approved), revoke 503 (recorded as revoked), /healthz 503 vault=${health.body.vault}`);
    f.line(`Vault down: ${h.proxy.seen.length - seenBefore} calls reached the proxy and were dropped`);
    // Nothing half-issued: no row is left minting, and a failed tier-1 request frees its key (the failure is not replayed).
    const db = h.db;
    expect(db.prepare(`SELECT COUNT(*) FROM credentials WHERE state = 'minting'`).pluck().get()).toBe(0);
    expect(db.prepare(`SELECT COUNT(*) FROM requests WHERE status = 'failed'`).pluck().get()).toBe(n + 1);

    // --- Vault dies in the middle of issuing: policies get written, nothing else does.
    h.proxy.setFault(midIssue);
    const unsettled = () => db.prepare(`SELECT COUNT(*) FROM credentials WHERE state IN ('minting', 'abandoned', 'ending')`).pluck().get() as number;
    const strays = () => jitPolicies().filter((p) => !livePolicies().includes(p));
    const half = 5;
    for (let i = 0; i < half; i++) {
      const res = await h.call('POST', '/jit/request', { token, body: tier1 });
      expect(res.status).toBe(503);
    }
    const leftInVault = strays().length;
    const unsettledRows = unsettled();
    f.line(`Vault failing mid-issue: ${half} tier-1 requests → 503; ${unsettledRows} rows waiting for clean-up, ${leftInVault} ephemeral policies in Vault that no live credential holds`);
    expect(leftInVault).toBeGreaterThanOrEqual(1);
    const swept = await sweep(h.broker.deps); // Vault still failing: nothing can be cleaned, nothing crashes
    expect(swept.vaultErrors).toBeGreaterThan(0);
    expect(strays().length).toBe(leftInVault);

    // --- Vault back.
    h.proxy.setFault(undefined);
    const health2 = await h.call('GET', '/healthz');
    expect(health2.status).toBe(200);
    const after = await h.call('POST', '/jit/request', { token, body: tier1, headers: { 'Idempotency-Key': 'down-0' } });
    expect(after.status).toBe(201); // the key of a failed attempt was freed: the retry is a fresh issue
    const read = await h.vaultAs(after.body.credential.token).read('homelab/data/docker/registry');
    expect(read.data.data.username).toBe('demo');
    const s = await sweep(h.broker.deps);
    f.line(`Vault back: tier-1 201 and its token reads; one sweep settled ${s.policiesCleaned} abandoned rows, ended ${s.credentialsEnded} revoked credential(s), vault errors ${s.vaultErrors}`);
    expect(s.vaultErrors).toBe(0);
    expect(s.credentialsEnded).toBe(1);
    const claimed = await h.call('POST', `/jit/requests/${approved}/claim`, { token });
    expect(claimed.status).toBe(201);
    expect(unsettled()).toBe(0);
    expect(strays()).toEqual([]);
    // The revoked token is gone from Vault.
    expect(h.devVault.listTokens().some((t) => t.accessor === before.body.credential.accessor)).toBe(false);
    f.set('tier1_503_while_down', statuses.length);
    f.set('policies_left_mid_issue', leftInVault);
    f.set('stray_policies_after_sweep', strays().length);
    f.set('unsettled_rows_after', unsettled());
    f.set('crash', false);
    f.print();
  });

  /*
   * Regression (a bug in HEAD ee62a9c, src/broker/lifecycle.ts sweep →
   * deleteAbandonedPolicy with per-request policy names `jit-<request id>`):
   * a claim that failed mid-issue left an `abandoned` row naming
   * `jit-<id>`; a successful re-claim before the next sweep wrote
   * `jit-<id>` again for its live token, and the sweep then deleted it on
   * behalf of the abandoned row, leaving a `live` credential that granted
   * nothing. Passes with the shared, generation-numbered grant policies of
   * the working tree (a failed mint retires its generation).
   */
  it('a re-claim after a failed claim keeps its policy through the next sweep', async () => {
    const f = figureLog('fault: re-claim after a failed claim');
    const id = await approvedTier2();
    h.proxy.setFault(midIssue);
    const failedClaim = await h.call('POST', `/jit/requests/${id}/claim`, { token });
    expect(failedClaim.status).toBe(503);
    h.proxy.setFault(undefined);
    const claim = await h.call('POST', `/jit/requests/${id}/claim`, { token });
    expect(claim.status).toBe(201);
    const canWrite = async () =>
      h.vaultAs(claim.body.credential.token).write('homelab/data/apps/web', { data: { key: 'rotated' } }).then(
        () => true,
        () => false,
      );
    expect(await canWrite()).toBe(true);
    await sweep(h.broker.deps);
    const policy = (await h.broker.deps.storage.credentials.forRequest(id))?.vault_policy ?? '';
    const policyLeft = h.devVault.policyNames().includes(policy);
    const works = await canWrite();
    f.line(`claim failed mid-issue (row abandoned, its policy left in Vault), re-claim 201, then one sweep: live policy still in Vault=${policyLeft}, token still writes=${works}, DB state=${(await h.broker.deps.storage.credentials.forRequest(id))?.state}`);
    f.print();
    expect(policyLeft).toBe(true);
    expect(works).toBe(true);
  });
});

/**
 * Vault creates the token but the answer never reaches the broker (the
 * connection dies on the way back). SPEC §6: a 503 leaves nothing
 * half-issued behind; §10: no token the broker does not know about. The
 * token Vault created must therefore grant nothing — which holds only if
 * the policy it is bound to is deleted, i.e. not shared with a live
 * credential.
 */
describe('fault: Vault acts but its answer is lost', () => {
  let vault: Awaited<ReturnType<typeof startDevVault>>;
  let proxy: ChaosProxy;
  let broker: RunningBroker;
  let dir: string;
  let token: string;
  const call = async (path: string, body?: unknown) => {
    const res = await fetch(`${broker.url}${path}`, {
      method: body ? 'POST' : 'GET',
      headers: { authorization: `Bearer ${token}`, ...(body ? { 'content-type': 'application/json' } : {}) },
      ...(body ? { body: JSON.stringify(body) } : {}),
    });
    return { status: res.status, body: (await res.json()) as Record<string, any> };
  };
  const canRead = (secret: string) =>
    fetch(`${vault.url}/v1/homelab/data/docker/registry`, { headers: { 'X-Vault-Token': secret } }).then((r) => r.status === 200);

  beforeAll(async () => {
    vault = await startDevVault({ host: '127.0.0.1', port: 0, rootToken: ROOT_TOKEN });
    await fetch(`${vault.url}/v1/homelab/data/docker/registry`, { method: 'POST', headers: { 'X-Vault-Token': ROOT_TOKEN }, body: JSON.stringify({ data: { username: 'demo' } }) });
    proxy = await startChaosProxy(vault.url);
    dir = mkdtempSync(join(tmpdir(), 'jit-lost-answer-'));
    mkdirSync(join(dir, 'policies'));
    writeFileSync(join(dir, 'policies', 'p.yaml'), TEST_POLICY);
    broker = await startBroker(
      { JIT_HOST: '127.0.0.1', JIT_PORT: '0', JIT_DB: join(dir, 'jit.db'), JIT_POLICIES: join(dir, 'policies'), VAULT_ADDR: proxy.url, VAULT_TOKEN: ROOT_TOKEN, LOG_LEVEL: 'silent' },
      { sweepIntervalMs: 3_600_000 },
    );
    token = (await broker.deps.agents.add('moltbot')).token;
  });
  afterAll(async () => {
    await broker?.stop();
    await proxy?.close();
    await vault?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('the token of a tier-1 request whose token-create answer was lost grants nothing (alone)', async () => {
    proxy.setAction((method, path) => (path.startsWith('/v1/auth/token/create-orphan') ? 'lose-response' : 'forward'));
    const res = await call('/jit/request', tier1);
    proxy.setAction(undefined);
    expect(res.status).toBe(503);
    const lost = JSON.parse(proxy.lost.at(-1)!.body).auth.client_token as string;
    await sweep(broker.deps);
    const grants = await canRead(lost);
    const f = figureLog('fault: vault token-create answer lost (no other holder)');
    f.line(`503 to the agent; after a sweep, the token Vault created but the broker never saw can read the granted path: ${grants}`);
    f.print();
    expect(grants).toBe(false);
  });

  /*
   * BUG (working tree, shared grant policies: src/broker/credential-issue.ts
   * abandonMint / src/broker/grant-policies.ts releaseVaultPolicy, and the same
   * in reconcile for an interrupted `minting` row): a failed or interrupted
   * mint's policy is only retired, not deleted, while another live
   * credential with the same grant holds it. The token Vault created for
   * the failed attempt — unknown to the broker, its accessor never recorded
   * — is bound to that shared policy and keeps the grant until the last
   * holder ends (up to max_ttl). Repro: request a tier-1 grant (live), then
   * the same grant again while Vault's answer to auth/token/create-orphan is
   * lost: the agent gets 503, and the lost token reads the path. A crash
   * between token create and recording it does the same (reconcile).
   * Not reproducible on HEAD ee62a9c (per-request policies are deleted at
   * once). Remove `.fails` once fixed (e.g. never share a policy between
   * tokens, or revoke such tokens by metadata/accessor listing).
   */
  it('the lost token grants nothing even when a live credential has the same grant (one policy per credential)', async () => {
    const live = await call('/jit/request', tier1);
    expect(live.status).toBe(201);
    proxy.setAction((method, path) => (path.startsWith('/v1/auth/token/create-orphan') ? 'lose-response' : 'forward'));
    const res = await call('/jit/request', tier1);
    proxy.setAction(undefined);
    expect(res.status).toBe(503);
    const lost = JSON.parse(proxy.lost.at(-1)!.body).auth.client_token as string;
    await sweep(broker.deps);
    await reconcile(broker.deps);
    const grants = await canRead(lost);
    const f = figureLog('fault: vault token-create answer lost (a live credential has the same grant)');
    f.line(`503 to the agent; after a sweep and a reconcile the unknown token can still read the granted path: ${grants}; the live credential's token reads: ${await canRead(live.body.credential.token)}`);
    f.print();
    expect(grants).toBe(false);
  });
});
