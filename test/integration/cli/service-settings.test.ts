import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDatabase } from '../../../src/storage/sqlite/open.ts';
import type { Jwks } from '../../../src/keys/key-ring.ts';
import { startWebhookReceiver, type WebhookReceiver } from '../../fakes/webhook-receiver.ts';
import { runJit, startJitServe } from '../../helpers/cli.ts';
import { until } from '../webhooks/setup.ts';

/**
 * SPEC §10: a decision made with `jit approve` from a shell that has only
 * JIT_DB set has the service's effects: its claim window, its public URL in
 * the claim call, its webhook target and token, its policy files.
 */
const REPO = join(import.meta.dirname, '..', '..', '..');
const HOOKS_TOKEN = 'hook-token-service-7c1e9a3f5b2d4e6a';
const PUBLIC_URL = 'https://jit.service.example.net';
const CLAIM_WINDOW_MS = 37 * 60_000;

let dir: string;
let serviceEnv: Record<string, string>;
let server: Awaited<ReturnType<typeof startJitServe>>;
let receiver: WebhookReceiver;
let jwks: Jwks = { keys: [] };
let agentToken: string;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'jit-settings-'));
  const policies = join(dir, 'service-policies');
  cpSync(join(REPO, 'policies'), policies, { recursive: true });
  // Something only the service's policy files say: the agent_id passed through to OpenClaw.
  const file = join(policies, 'homelab.yaml');
  writeFileSync(file, readFileSync(file, 'utf8').replace('    webhook: openclaw                 # decisions', '    agent_id: main\n    webhook: openclaw                 # decisions'));
  receiver = await startWebhookReceiver({ jwks: () => jwks, bearer: HOOKS_TOKEN });
  serviceEnv = {
    JIT_DB: join(dir, 'data', 'jit.db'),
    JIT_POLICIES: policies,
    JIT_PORT: '0',
    JIT_DEV_VAULT_PORT: '0',
    JIT_PUBLIC_URL: PUBLIC_URL,
    JIT_CLAIM_WINDOW: '37m',
    OPENCLAW_HOOKS_URL: `${receiver.url}/hooks`,
    OPENCLAW_HOOKS_TOKEN: HOOKS_TOKEN,
  };
  server = await startJitServe(serviceEnv);
  agentToken = server.devToken!;
  jwks = (await (await fetch(`${server.url}/.well-known/jwks.json`)).json()) as Jwks;
});

afterAll(async () => {
  expect(await server?.stop()).toBe(0);
  await receiver?.close();
  rmSync(dir, { recursive: true, force: true });
});

async function pendingRequest(): Promise<string> {
  const res = await fetch(`${server.url}/jit/request`, {
    method: 'POST',
    headers: { authorization: `Bearer ${agentToken}`, 'content-type': 'application/json' },
    body: JSON.stringify({ resource: 'vault', tier: 2, reason: 'settings test', vault_paths: [{ path: 'homelab/data/apps/web', capabilities: ['read'] }] }),
  });
  const body = (await res.json()) as { id: string; status: string };
  expect(body.status).toBe('pending');
  return body.id;
}

function outboxState(requestId: string): string | undefined {
  const db = openDatabase(serviceEnv.JIT_DB!);
  try {
    return db.prepare('SELECT state FROM webhook_outbox WHERE request_id = ?').pluck().get(requestId) as string | undefined;
  } finally {
    db.close();
  }
}

describe('jit approve from a shell with only JIT_DB set', () => {
  it('has the effects of a decision in the service: its token, target, public URL, claim window and policy', async () => {
    const id = await pendingRequest();
    const before = Date.now();
    const approve = await runJit(['approve', id], { JIT_DB: serviceEnv.JIT_DB! });
    const after = Date.now();
    expect(approve.stderr).toBe('');
    expect(approve.code).toBe(0);

    // The claim deadline follows the service's JIT_CLAIM_WINDOW (37m), not the shell's default (10m).
    const until_ = Date.parse(/claim its credential until (\S+)\./.exec(approve.stdout)![1]!);
    expect(until_).toBeGreaterThanOrEqual(before + CLAIM_WINDOW_MS - 1000);
    expect(until_).toBeLessThanOrEqual(after + CLAIM_WINDOW_MS);

    // The service's dispatcher sends it (delivered, not dead-lettered), with the service's token.
    await until(() => ['delivered', 'dead'].includes(outboxState(id) ?? ''), 30_000);
    expect(outboxState(id)).toBe('delivered');
    const hook = receiver.requests.find((r) => r.body.includes(id))!;
    expect(hook.path).toBe('/hooks/agent');
    expect(hook.headers.authorization).toBe(`Bearer ${HOOKS_TOKEN}`);
    expect(hook.verification.ok).toBe(true);
    const body = JSON.parse(hook.body) as { message: string; agentId?: string; sessionKey?: string };
    expect(body.message).toContain(`${PUBLIC_URL}/jit/requests/${id}/claim`);
    expect(body.message).toContain(`Claim it before ${new Date(until_).toISOString()}`);
    expect(body.agentId).toBe('main');
    expect(body.sessionKey).toBe('hook:jit:dev:main');
  });

  it('uses the service settings over a different value in the shell, and says so', async () => {
    const id = await pendingRequest();
    const before = Date.now();
    const approve = await runJit(['approve', id], { JIT_DB: serviceEnv.JIT_DB!, JIT_CLAIM_WINDOW: '2m', JIT_PUBLIC_URL: 'http://wrong.example.net' });
    expect(approve.code).toBe(0);
    expect(approve.stderr).toMatch(/JIT_CLAIM_WINDOW/);
    expect(approve.stderr).toMatch(/JIT_PUBLIC_URL/);
    const until_ = Date.parse(/claim its credential until (\S+)\./.exec(approve.stdout)![1]!);
    expect(until_).toBeGreaterThanOrEqual(before + CLAIM_WINDOW_MS - 1000);
    await until(() => ['delivered', 'dead'].includes(outboxState(id) ?? ''), 30_000);
    const hook = receiver.requests.find((r) => r.body.includes(id))!;
    expect(hook.body).toContain(`${PUBLIC_URL}/jit/requests/${id}/claim`);
    expect(hook.body).not.toContain('wrong.example.net');
  });
});
