import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cpSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runJit, startJitServe } from '../../helpers/cli.ts';

/**
 * The README walkthrough, run as written against `jit serve` in dev mode
 * (ports 0 instead of the defaults so tests can run side by side).
 */
let dir: string;
let env: Record<string, string>;
let server: Awaited<ReturnType<typeof startJitServe>>;
let agentToken: string;
let devVaultUrl: string;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'jit-walkthrough-'));
  cpSync(join(import.meta.dirname, '..', '..', '..', 'policies'), join(dir, 'policies'), { recursive: true });
  env = { JIT_DB: join(dir, 'data', 'jit.db'), JIT_POLICIES: join(dir, 'policies'), JIT_PORT: '0', JIT_DEV_VAULT_PORT: '0' };
  server = await startJitServe(env);
  const out = server.output();
  const tokenLine = /Created agent "dev"\. Its token \(shown once\):\n(\S+)\n/.exec(out);
  expect(tokenLine).not.toBeNull();
  agentToken = tokenLine![1]!;
  devVaultUrl = /development Vault at (http:\/\/\S+)/.exec(out)![1]!;
});

afterAll(async () => {
  const code = await server?.stop();
  expect(code).toBe(0);
  rmSync(dir, { recursive: true, force: true });
});

async function api(method: string, path: string, body?: unknown) {
  const res = await fetch(`${server.url}${path}`, {
    method,
    headers: { authorization: `Bearer ${agentToken}`, ...(body ? { 'content-type': 'application/json' } : {}) },
    ...(body ? { body: JSON.stringify(body) } : {}),
  });
  return { status: res.status, body: (await res.json()) as any };
}

describe('dev mode walkthrough', () => {
  it('starts with a development Vault, agent dev and its token', () => {
    expect(server.output()).toContain('DEVELOPMENT MODE');
    expect(agentToken).toMatch(/^jit_[0-9a-f]{16}_/);
  });

  it('tier 1: issues a token that reads the granted path only; revoke kills it', async () => {
    const res = await api('POST', '/jit/request', {
      resource: 'vault',
      tier: 1,
      reason: 'read the registry login for a deploy',
      vault_paths: [{ path: 'homelab/data/docker/registry', capabilities: ['read'] }],
    });
    expect(res.status).toBe(201);
    const vaultToken = res.body.credential.token;
    const read = await fetch(`${devVaultUrl}/v1/homelab/data/docker/registry`, { headers: { 'X-Vault-Token': vaultToken } });
    expect(read.status).toBe(200);
    expect(((await read.json()) as any).data.data.username).toBe('demo');
    const outside = await fetch(`${devVaultUrl}/v1/homelab/data/apps/web`, { headers: { 'X-Vault-Token': vaultToken } });
    expect(outside.status).toBe(403);

    const revoked = await api('POST', `/jit/requests/${res.body.id}/revoke`);
    expect(revoked.body.status).toBe('revoked');
    const after = await fetch(`${devVaultUrl}/v1/homelab/data/docker/registry`, { headers: { 'X-Vault-Token': vaultToken } });
    expect(after.status).toBe(403);
  });

  it('tier 2: pending, jit approve, claim once, write with the token', async () => {
    const res = await api('POST', '/jit/request', {
      resource: 'vault',
      tier: 2,
      reason: 'rotate the registry password',
      vault_paths: [{ path: 'homelab/data/docker/registry', capabilities: ['read', 'update'] }],
      ttl: '15m',
    });
    expect(res.status).toBe(202);
    expect(res.body).toMatchObject({ status: 'pending', required_tier: 2 });

    const listed = await runJit(['requests', '--status', 'pending'], env);
    expect(listed.code).toBe(0);
    expect(listed.stdout).toContain(res.body.id);

    const approved = await runJit(['approve', res.body.id], env);
    expect(approved.code).toBe(0);
    expect(approved.stdout).toContain('approved');
    const twice = await runJit(['approve', res.body.id], env);
    expect(twice.code).toBe(1);
    expect(twice.stderr).toContain('already approved');

    const claim = await api('POST', `/jit/requests/${res.body.id}/claim`);
    expect(claim.status).toBe(201);
    const write = await fetch(`${devVaultUrl}/v1/homelab/data/docker/registry`, {
      method: 'POST',
      headers: { 'X-Vault-Token': claim.body.credential.token, 'content-type': 'application/json' },
      body: JSON.stringify({ data: { username: 'demo', password: 'rotated' } }),
    });
    expect(write.status).toBe(200);
    expect((await api('POST', `/jit/requests/${res.body.id}/claim`)).status).toBe(409);
    const view = await api('GET', `/jit/requests/${res.body.id}`);
    expect(view.body).toMatchObject({ status: 'issued', decision: { approver: 'local-cli' } });
  });

  it('jit audit verify finds the chain intact', async () => {
    const verify = await runJit(['audit', 'verify'], env);
    expect(verify.code).toBe(0);
    expect(verify.stdout).toMatch(/audit log intact: \d+ entries/);
  });

  it('keeps the old policy on SIGHUP with a bad file', async () => {
    writeFileSync(join(dir, 'policies', 'zz-bad.yaml'), 'rules: [oops\n');
    server.child.kill('SIGHUP');
    await new Promise((r) => setTimeout(r, 500));
    expect(server.output()).toContain('policy reload failed');
    const res = await api('POST', '/jit/request', {
      resource: 'vault',
      tier: 1,
      reason: 'still works',
      vault_paths: [{ path: 'homelab/data/docker/registry', capabilities: ['read'] }],
    });
    expect(res.status).toBe(201);
  });

  it('never prints an issued Vault token or the agent secret in its log', async () => {
    const res = await api('POST', '/jit/request', {
      resource: 'vault',
      tier: 1,
      reason: 'log check',
      vault_paths: [{ path: 'homelab/data/docker/registry', capabilities: ['read'] }],
    });
    await new Promise((r) => setTimeout(r, 100));
    const out = server.output();
    expect(res.status).toBe(201);
    expect(out).toContain('"path":"/jit/request","status":201');
    expect(out).not.toContain(res.body.credential.token);
    // The token is printed exactly once, on purpose, under its banner.
    expect(out.split(agentToken).length - 1).toBe(1);
  });
});
