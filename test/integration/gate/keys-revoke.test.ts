import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Jwks } from '../../../src/keys/key-ring.ts';
import { verifyWebhook } from '../../../src/webhooks/sign.ts';
import { startWebhookReceiver, type WebhookReceiver } from '../../fakes/webhook-receiver.ts';
import { until } from '../../helpers/chaos-process.ts';
import { runJit, startJitServe } from '../../helpers/cli.ts';
import { gateAgentBranches, onePolicy } from '../../helpers/policies.ts';

/**
 * `jit keys revoke KID` beside a running `jit serve` (separate processes,
 * the key file between them): the key leaves the JWKS served over HTTP
 * within the service's key-file re-check (about a second), what it signed
 * stops verifying (`/gate/verify`, `jit gate verify`), and webhooks are
 * signed with the new key.
 */
let dir: string;
let env: Record<string, string>;
let server: Awaited<ReturnType<typeof startJitServe>>;
let receiver: WebhookReceiver;
let agentToken: string;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'jit-keys-revoke-'));
  receiver = await startWebhookReceiver({ jwks: { keys: [] } });
  mkdirSync(join(dir, 'policies'));
  writeFileSync(
    join(dir, 'policies', 'test.yaml'),
    onePolicy({ name: 'dev', sessions: 'hook:jit:dev*', defaultSession: 'hook:jit:dev', webhook: `{ url: "${receiver.url}/hook", format: standard }` }, [gateAgentBranches('dev-gate')]),
  );
  env = { JIT_DB: join(dir, 'data', 'jit.db'), JIT_POLICIES: join(dir, 'policies'), JIT_PORT: '0', JIT_DEV_VAULT_PORT: '0' };
  server = await startJitServe(env);
  agentToken = server.devToken!;
});

afterAll(async () => {
  await server?.stop();
  await receiver?.close();
  rmSync(dir, { recursive: true, force: true });
});

async function api(method: string, path: string, body?: unknown) {
  const res = await fetch(`${server.url}${path}`, {
    method,
    headers: { authorization: `Bearer ${agentToken}`, 'content-type': 'application/json' },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  return { status: res.status, body: (await res.json()) as any };
}

const jwks = async (): Promise<Jwks> => (await api('GET', '/.well-known/jwks.json')).body;
const kidOf = (jwt: string) => JSON.parse(Buffer.from(jwt.split('.')[0]!, 'base64url').toString()).kid as string;

async function issue(ref: string) {
  const res = await api('POST', '/jit/request', { resource: 'gate', tier: 1, reason: 'push', repo: 'homelab/app', refs: [ref] });
  expect(res.status).toBe(201);
  return { id: res.body.id as string, jwt: res.body.credential.credential as string };
}

/** Revokes the request, which sends a `jit.request.revoked` webhook; resolves with that delivery. */
async function webhookAfterRevoking(id: string) {
  const before = receiver.requests.length;
  expect((await api('POST', `/jit/requests/${id}/revoke`)).status).toBe(200);
  const all = await receiver.waitForRequests(before + 1, 60_000);
  return all[before]!;
}

describe('jit keys revoke', () => {
  it('drops the current key from the served JWKS at once; what it signed stops verifying; signing moves to a new key', { timeout: 120_000 }, async () => {
    const live = await issue('refs/heads/agent/live');
    const compromised = kidOf(live.jwt);
    const before = await jwks();
    expect(before.keys.map((k) => k.kid)).toEqual([compromised]);
    const verifyArgs = ['gate', 'verify', '--credential', live.jwt, '--repo', 'homelab/app', '--ref', 'refs/heads/agent/live'];
    const cliEnv = { JIT_URL: server.url };
    expect((await api('POST', '/gate/verify', { credential: live.jwt, repo: 'homelab/app', ref: 'refs/heads/agent/live' })).body.valid).toBe(true);
    expect((await runJit(verifyArgs, cliEnv)).code).toBe(0);
    const oldWebhook = await webhookAfterRevoking((await issue('refs/heads/agent/w1')).id);
    expect(verifyWebhook(oldWebhook.headers, oldWebhook.body, before, { now: Date.now() })).toMatchObject({ ok: true, kid: compromised });

    const webhooksBefore = receiver.requests.length;
    const revoked = await runJit(['keys', 'revoke', compromised], { JIT_DB: env.JIT_DB!, JIT_POLICIES: env.JIT_POLICIES! });
    expect(revoked.stderr).toBe('');
    expect(revoked.code).toBe(0);
    const newKid = /New signing key (\S+) is current/.exec(revoked.stdout)?.[1];
    expect(newKid).toBeDefined();
    expect(revoked.stdout).toContain(`Key ${compromised} is revoked`);
    // The live gate credential it signed is revoked with it (the one revoked earlier is not touched again):
    // the request shows revoked, and its agent gets the "revoked" webhook.
    expect(revoked.stdout).toContain(`Revoked ${live.id} (was issued, agent dev): gate credential`);
    expect(revoked.stdout).toContain(`Ended 1 live gate credential signed with ${compromised}.`);
    expect((await api('GET', `/jit/requests/${live.id}`)).body.status).toBe('revoked');
    const [liveRevoked] = (await receiver.waitForRequests(webhooksBefore + 1, 60_000)).slice(webhooksBefore);
    expect(JSON.parse(liveRevoked!.body)).toMatchObject({ type: 'jit.request.revoked', request_id: live.id });

    // The service re-reads the key file at most once a second: poll the JWKS it serves.
    const after = await until(async () => {
      const k = await jwks();
      return !k.keys.some((j) => j.kid === compromised) && k;
    }, 30_000, 'the revoked key to leave the JWKS', 50);
    expect(after.keys.map((k) => k.kid)).toEqual([newKid]);

    expect((await api('POST', '/gate/verify', { credential: live.jwt, repo: 'homelab/app', ref: 'refs/heads/agent/live' })).body).toEqual({
      valid: false,
      reason: `signed by revoked key ${compromised}`,
    });
    const cli = await runJit(verifyArgs, cliEnv);
    expect(cli.code).toBe(1);
    expect(cli.stderr).toContain(`revoked key ${compromised}`);

    // New credentials and webhooks are signed with the new key, and only it.
    const fresh = await issue('refs/heads/agent/fresh');
    expect(kidOf(fresh.jwt)).toBe(newKid);
    expect((await api('POST', '/gate/verify', { credential: fresh.jwt, repo: 'homelab/app', ref: 'refs/heads/agent/fresh' })).body.valid).toBe(true);
    const newWebhook = await webhookAfterRevoking(fresh.id);
    expect(verifyWebhook(newWebhook.headers, newWebhook.body, after, { now: Date.now() })).toMatchObject({ ok: true, kid: newKid });
    expect(verifyWebhook(newWebhook.headers, newWebhook.body, before, { now: Date.now() }).ok).toBe(false);

    // Still listed, as revoked; revoking again changes nothing; the key file holds no private half of it.
    const list = await runJit(['keys', 'list'], { JIT_DB: env.JIT_DB! });
    expect(list.code).toBe(0);
    expect(list.stdout).toMatch(new RegExp(`^${compromised}\\trevoked\\t`, 'm'));
    expect(list.stdout).toMatch(new RegExp(`^${newKid}\\tcurrent\\t`, 'm'));
    const again = await runJit(['keys', 'revoke', compromised], { JIT_DB: env.JIT_DB! });
    expect(again.code).toBe(0);
    expect(again.stdout).toContain('already revoked');
    const file = JSON.parse(readFileSync(join(dir, 'data', 'signing-keys.json'), 'utf8')) as { keys: { kid: string; d?: string; revoked_at?: string }[] };
    expect(file.keys.find((k) => k.kid === compromised)).toMatchObject({ revoked_at: expect.any(String) });
    expect(file.keys.find((k) => k.kid === compromised)?.d).toBeUndefined();
  });

  it('refuses an unknown kid with exit 1', async () => {
    const res = await runJit(['keys', 'revoke', 'AAAAAAAAAAAAAAAA'], { JIT_DB: env.JIT_DB! });
    expect(res.code).toBe(1);
    expect(res.stderr).toContain('no key AAAAAAAAAAAAAAAA');
  });

  it('takes a kid that begins with "-" (base64url: one kid in 64) as the KID, not as an option', async () => {
    for (const args of [['keys', 'revoke', '-eAAAAAAAAAAAAAA'], ['keys', 'revoke', '--', '-eAAAAAAAAAAAAAA']]) {
      const res = await runJit(args, { JIT_DB: env.JIT_DB! });
      expect([res.code, res.stderr.trim()], args.join(' ')).toEqual([1, expect.stringContaining('no key -eAAAAAAAAAAAAAA')]);
    }
  });
});
