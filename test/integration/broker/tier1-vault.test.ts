import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { sweep } from '../../../src/broker/lifecycle.ts';
import { requestCredential } from '../../../src/broker/request-credential.ts';
import type { CredentialRequestBody } from '../../../src/wire/schemas.ts';
import { databaseBytes, startHarness, type Harness } from '../../helpers/broker-harness.ts';

let h: Harness;
let token: string;

beforeEach(async () => {
  h = await startHarness();
  token = await h.addAgent('moltbot');
});
afterEach(async () => {
  await h.close();
});

const readRegistry = {
  resource: 'vault',
  tier: 1,
  reason: 'pull the registry credentials for a deploy',
  vault_paths: [{ path: 'homelab/data/docker/registry', capabilities: ['read'] }],
};

/** The ephemeral policy an issued Vault credential is bound to (its only policy besides `default`). */
function grantPolicy(credential: { policies: string[] }): string {
  const own = credential.policies.filter((p) => p !== 'default');
  expect(own).toHaveLength(1);
  expect(own[0]).toMatch(/^jit-[0-9a-f]{16}-cred_[0-9a-z]{26}$/);
  return own[0]!;
}

describe('tier 1 issuance', () => {
  it('issues a token that reads the granted path and nothing else', async () => {
    const res = await h.call('POST', '/jit/request', { token, body: readRegistry });
    expect(res.status).toBe(201);
    expect(res.body).toMatchObject({ status: 'issued', tier: 1, required_tier: 1, resource: 'vault' });
    const cred = res.body.credential;
    expect(cred.type).toBe('vault_token');
    // Bound to one ephemeral policy granting exactly the approved pair.
    const policy = grantPolicy(cred);
    expect(cred.policies).toEqual(['default', policy]);
    const { data } = await h.root.read(`sys/policies/acl/${policy}`);
    expect(JSON.parse(data.policy)).toEqual({ path: { 'homelab/data/docker/registry': { capabilities: ['read'] } } });
    expect(res.headers.get('cache-control')).toBe('no-store');

    const agentVault = h.vaultAs(cred.token);
    const secret = await agentVault.read('homelab/data/docker/registry');
    expect(secret.data.data).toEqual({ username: 'demo', password: 'pw-registry' });
    await expect(agentVault.read('homelab/data/ci/runner')).rejects.toMatchObject({ response: { statusCode: 403 } });
    await expect(agentVault.write('homelab/data/docker/registry', { data: { x: 1 } })).rejects.toMatchObject({ response: { statusCode: 403 } });

    const info = await h.root.write('auth/token/lookup-accessor', { accessor: cred.accessor });
    expect(info.data.orphan).toBe(true);
    expect(info.data.renewable).toBe(false);
    expect(info.data.meta).toMatchObject({ jit_request_id: res.body.id, jit_agent: 'moltbot' });
  });

  it('grants listing a folder that a `folder/*` rule covers, and the token can list it', async () => {
    const res = await h.call('POST', '/jit/request', {
      token,
      body: { ...readRegistry, vault_paths: [{ path: 'homelab/metadata/docker', capabilities: ['list'] }] },
    });
    expect(res.status).toBe(201);
    const listed = await h.vaultAs(res.body.credential.token).read('homelab/metadata/docker?list=true');
    expect(listed.data.keys).toEqual(['registry']);
    await expect(h.vaultAs(res.body.credential.token).read('homelab/metadata/docker/registry')).rejects.toMatchObject({ response: { statusCode: 403 } });
  });

  it('shows the request to its agent without any secret', async () => {
    const issued = await h.call('POST', '/jit/request', { token, body: readRegistry });
    const view = await h.call('GET', `/jit/requests/${issued.body.id}`, { token });
    expect(view.status).toBe(200);
    expect(view.body).toMatchObject({
      id: issued.body.id,
      status: 'issued',
      agent: 'moltbot',
      decision: { approver: 'policy' },
      credential: { type: 'vault_token', accessor: issued.body.credential.accessor, state: 'live' },
      session_key: 'hook:jit:moltbot',
    });
    expect(JSON.stringify(view.body)).not.toContain(issued.body.credential.token);
  });

  it('clamps the TTL to the smallest max_ttl of the rules used', async () => {
    const res = await h.call('POST', '/jit/request', {
      token,
      body: { ...readRegistry, ttl: '2h', vault_paths: [...readRegistry.vault_paths, { path: 'homelab/data/ci/runner', capabilities: ['read'] }] },
    });
    expect(res.status).toBe(201);
    expect(Date.parse(res.body.expires_at) - h.clock.now()).toBe(5 * 60 * 1000);
    const info = await h.root.write('auth/token/lookup-accessor', { accessor: res.body.credential.accessor });
    expect(info.data.ttl).toBe(300);
    expect(info.data.explicit_max_ttl).toBe(300);
  });

  it('honours a shorter requested TTL', async () => {
    const res = await h.call('POST', '/jit/request', { token, body: { ...readRegistry, ttl: 90 } });
    expect(res.status).toBe(201);
    expect(Date.parse(res.body.expires_at) - h.clock.now()).toBe(90_000);
  });
});

describe('policy decisions', () => {
  it('escalates a tier-1 request that needs tier 2 and keeps it pending', async () => {
    const res = await h.call('POST', '/jit/request', {
      token,
      body: { ...readRegistry, vault_paths: [{ path: 'homelab/data/apps/web', capabilities: ['update'] }] },
    });
    expect(res.status).toBe(202);
    expect(res.body).toMatchObject({ status: 'pending', tier: 1, required_tier: 2 });
    expect(Date.parse(res.body.approval_expires_at) - h.clock.now()).toBe(600_000);
    expect(await h.jitPolicies()).toEqual([]);
  });

  it('never lowers a tier the agent asked for', async () => {
    const res = await h.call('POST', '/jit/request', { token, body: { ...readRegistry, tier: 2 } });
    expect(res.status).toBe(202);
    expect(res.body).toMatchObject({ tier: 2, required_tier: 2 });
  });

  it.each([
    ['deny list', 'homelab/data/vault/unseal', 'read', 403, 'DENIED_BY_POLICY'],
    ['uncovered pair', 'homelab/metadata/apps/web', 'delete', 403, 'NOT_COVERED'],
    ['forbidden capability', 'homelab/data/docker/registry', 'sudo', 403, 'FORBIDDEN_CAPABILITY'],
    ['path with ..', 'homelab/data/docker/../vault/x', 'read', 400, 'INVALID_PATH'],
    ['path with a wildcard', 'homelab/data/docker/*', 'read', 400, 'INVALID_PATH'],
    ['leading slash', '/homelab/data/docker/registry', 'read', 400, 'INVALID_PATH'],
    ['empty segment', 'homelab/data//docker', 'read', 400, 'INVALID_PATH'],
  ])('rejects the whole request for a %s', async (_name, path, cap, status, code) => {
    const res = await h.call('POST', '/jit/request', {
      token,
      body: { ...readRegistry, vault_paths: [readRegistry.vault_paths[0], { path, capabilities: [cap] }] },
    });
    expect(res.status).toBe(status);
    expect(res.headers.get('content-type')).toContain('application/problem+json');
    expect(res.body).toMatchObject({ status, code });
    expect(res.body.detail).toContain(path);
    const list = await h.call('GET', '/healthz');
    expect(list.status).toBe(200);
    expect(await h.broker.deps.storage.requests.list({})).toHaveLength(0);
  });

  it('rejects a session key outside the agent\'s patterns', async () => {
    const res = await h.call('POST', '/jit/request', { token, body: { ...readRegistry, session_key: 'hook:jit:other' } });
    expect(res.status).toBe(403);
    expect(res.body.code).toBe('SESSION_NOT_ALLOWED');
    const ok = await h.call('POST', '/jit/request', { token, body: { ...readRegistry, session_key: 'hook:jit:moltbot:task-7' } });
    expect(ok.status).toBe(201);
  });

  it('keeps the old policy when a reload finds a bad file', async () => {
    writeFileSync(join(h.policiesDir, 'broken.yaml'), 'rules:\n  - name: x\n    resource: vault\n    tier: 9\n');
    expect(h.broker.reloadPolicies()).toBe(false);
    expect(h.logs()).toContain('policy reload failed');
    const res = await h.call('POST', '/jit/request', { token, body: readRegistry });
    expect(res.status).toBe(201);

    writeFileSync(join(h.policiesDir, 'broken.yaml'), 'deny:\n  - paths: ["homelab/data/docker/*"]\n');
    expect(h.broker.reloadPolicies()).toBe(true);
    const denied = await h.call('POST', '/jit/request', { token, body: readRegistry });
    expect(denied.status).toBe(403);
    expect(denied.body.code).toBe('DENIED_BY_POLICY');
  });
});

describe('expiry and revocation', () => {
  it('reaps an expired credential: token dead, policy deleted, request expired', async () => {
    const res = await h.call('POST', '/jit/request', { token, body: { ...readRegistry, ttl: '1m' } });
    const { id, credential } = res.body;
    h.clock.advance(61_000);
    const summary = await sweep(h.broker.deps);
    expect(summary.credentialsExpired).toBe(1);
    expect(summary.credentialsEnded).toBe(1);
    await expect(h.vaultAs(credential.token).read('homelab/data/docker/registry')).rejects.toMatchObject({ response: { statusCode: 403 } });
    expect(await h.policyExists(grantPolicy(credential))).toBe(false);
    const view = await h.call('GET', `/jit/requests/${id}`, { token });
    expect(view.body).toMatchObject({ status: 'expired', credential: { state: 'ended' } });
  });

  it('revokes on request: token dead and policy gone at once', async () => {
    const res = await h.call('POST', '/jit/request', { token, body: readRegistry });
    const { id, credential } = res.body;
    const revoked = await h.call('POST', `/jit/requests/${id}/revoke`, { token });
    expect(revoked.status).toBe(200);
    expect(revoked.body).toMatchObject({ status: 'revoked', credential: { state: 'ended' } });
    await expect(h.vaultAs(credential.token).read('homelab/data/docker/registry')).rejects.toMatchObject({ response: { statusCode: 403 } });
    expect(await h.policyExists(grantPolicy(credential))).toBe(false);
    const again = await h.call('POST', `/jit/requests/${id}/revoke`, { token });
    expect(again.status).toBe(200);
  });

  it('times out a pending request after JIT_APPROVAL_TIMEOUT', async () => {
    const res = await h.call('POST', '/jit/request', { token, body: { ...readRegistry, tier: 2 } });
    h.clock.advance(599_000);
    expect((await sweep(h.broker.deps)).timedOut).toBe(0);
    h.clock.advance(2_000);
    expect((await sweep(h.broker.deps)).timedOut).toBe(1);
    const view = await h.call('GET', `/jit/requests/${res.body.id}`, { token });
    expect(view.body).toMatchObject({ status: 'timed_out', decision: { approver: 'timeout' } });
  });
});

describe('Vault failures', () => {
  it('answers 503 with Retry-After and leaves nothing behind when Vault is unreachable', async () => {
    h.proxy.setFault(() => 'reset');
    const res = await h.call('POST', '/jit/request', { token, body: readRegistry });
    expect(res.status).toBe(503);
    expect(res.headers.get('retry-after')).toMatch(/^\d+$/);
    expect(res.body.code).toBe('VAULT_UNAVAILABLE');
    h.proxy.setFault(undefined);
    const { data } = await h.root.read('sys/policies/acl?list=true');
    expect(data.keys.filter((k: string) => k.startsWith('jit-'))).toEqual([]);
    const [row] = await h.broker.deps.storage.requests.list({});
    expect(row?.status).toBe('failed');
    const health = await h.call('GET', '/healthz');
    expect(health.status).toBe(200);
  });

  it('deletes the policy again when the token cannot be created', async () => {
    h.proxy.setFault((_m, path) => (path.includes('auth/token/create-orphan') ? { status: 500, body: { errors: ['internal error'] } } : undefined));
    const res = await h.call('POST', '/jit/request', { token, body: readRegistry });
    expect(res.status).toBe(503);
    expect(h.proxy.seen.some((r) => r.method === 'PUT' || r.method === 'POST')).toBe(true);
    expect(await h.jitPolicies()).toEqual([]);
  });

  it('retries the clean-up later when Vault goes away mid-issue', async () => {
    let policyWritten = false;
    h.proxy.setFault((method, path) => {
      if (path.includes('sys/policies/acl/jit-') && method !== 'DELETE') {
        policyWritten = true;
        return undefined;
      }
      return policyWritten ? 'reset' : undefined;
    });
    const res = await h.call('POST', '/jit/request', { token, body: readRegistry });
    expect(res.status).toBe(503);
    const [row] = await h.broker.deps.storage.requests.list({});
    const policy = (await h.broker.deps.storage.credentials.forRequest(row!.id))?.vault_policy;
    expect(policy).toMatch(/^jit-[0-9a-f]{16}-cred_/);
    expect(await h.jitPolicies()).toEqual([policy]);
    h.proxy.setFault(undefined);
    expect((await sweep(h.broker.deps)).policiesCleaned).toBe(1);
    expect(await h.jitPolicies()).toEqual([]);
  });

  it('reports Vault down in /healthz with 503', async () => {
    h.proxy.setFault(() => 'reset');
    const res = await h.call('GET', '/healthz');
    expect(res.status).toBe(503);
    expect(res.body).toMatchObject({ db: 'ok', vault: 'unreachable' });
  });
});

describe('authentication and isolation', () => {
  it.each([
    ['no header', undefined],
    ['unknown token', 'jit_0123456789abcdef_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA'],
    ['garbage', 'not-a-token'],
  ])('401 for %s', async (_n, bad) => {
    const res = await h.call('POST', '/jit/request', { ...(bad ? { token: bad } : {}), body: readRegistry });
    expect(res.status).toBe(401);
    expect(res.headers.get('www-authenticate')).toContain('Bearer');
  });

  it('404 for another agent\'s request id', async () => {
    const other = await h.addAgent('other');
    const mine = await h.call('POST', '/jit/request', { token, body: readRegistry });
    for (const [method, suffix] of [['GET', ''], ['POST', '/revoke']] as const) {
      const res = await h.call(method, `/jit/requests/${mine.body.id}${suffix}`, { token: other });
      expect(res.status).toBe(404);
    }
    const still = await h.call('GET', `/jit/requests/${mine.body.id}`, { token });
    expect(still.body.status).toBe('issued');
  });

  it('a removed agent\'s token stops working', async () => {
    expect(await h.broker.deps.agents.remove('moltbot')).toBe(true);
    expect((await h.call('POST', '/jit/request', { token, body: readRegistry })).status).toBe(401);
  });

  it('an agent removed after it authenticated gets 401 for a request policy refuses, and nothing is written for it', async () => {
    const agent = (await h.broker.deps.agents.authenticate(token))!;
    expect(agent.name).toBe('moltbot');
    expect(await h.broker.deps.agents.remove('moltbot')).toBe(true);
    const count = (table: string) => h.db.prepare(`SELECT COUNT(*) FROM ${table}`).pluck().get() as number;
    const before = { audit: count('audit_log'), refusals: count('rate_events') };
    const refused = { ...readRegistry, vault_paths: [{ path: 'elsewhere/data/not-in-policy', capabilities: ['read'] }] };
    await expect(requestCredential(h.broker.deps, agent, refused as CredentialRequestBody)).rejects.toMatchObject({ code: 'UNAUTHORIZED' });
    expect({ audit: count('audit_log'), refusals: count('rate_events') }).toEqual(before);
  });
});

describe('no secret at rest or in logs', () => {
  it('keeps the agent token and the issued Vault token out of the database and the logs', async () => {
    const res = await h.call('POST', '/jit/request', { token, body: readRegistry });
    expect(res.status).toBe(201);
    await h.call('POST', `/jit/requests/${res.body.id}/revoke`, { token });
    h.db.pragma('wal_checkpoint(FULL)');
    const vaultToken: string = res.body.credential.token;
    const agentSecret = token.split('_').slice(2).join('_');
    const db = databaseBytes(h.dir);
    const logs = h.logs();
    expect(logs.length).toBeGreaterThan(100);
    for (const secret of [vaultToken, token, agentSecret]) {
      expect(db).not.toContain(secret);
      expect(logs).not.toContain(secret);
    }
    // The identifiers are kept, so the check above is looking at the right data.
    expect(db).toContain(res.body.credential.accessor);
  });
});
