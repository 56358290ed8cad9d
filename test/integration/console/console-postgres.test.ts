import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { PublicKeyCredentialCreationOptionsJSON } from '@simplewebauthn/server';
import { addApprover } from '../../../src/broker/approvers.ts';
import { startBroker, type RunningBroker } from '../../../src/main.ts';
import { startDevVault } from '../../../src/vault/dev/index.ts';
import { ROOT_TOKEN, TEST_POLICY } from '../../helpers/broker-harness.ts';
import { freshPostgresDatabase } from '../../helpers/postgres.ts';
import { SoftAuthenticator } from '../../helpers/soft-authenticator.ts';

/**
 * The console on PostgreSQL: enrol, the live stream (its poller reads the
 * audit head of the shared database), and a decision, end to end over HTTP.
 */

const PUBLIC_URL = 'http://localhost:8787';
let dir: string;
let vault: Awaited<ReturnType<typeof startDevVault>>;
let broker: RunningBroker;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'jit-console-pg-'));
  mkdirSync(join(dir, 'policies'));
  writeFileSync(join(dir, 'policies', 'p.yaml'), TEST_POLICY);
  vault = await startDevVault({ host: '127.0.0.1', port: 0, rootToken: ROOT_TOKEN });
  broker = await startBroker(
    {
      JIT_HOST: '127.0.0.1',
      JIT_PORT: '0',
      JIT_PUBLIC_URL: PUBLIC_URL,
      JIT_POLICIES: join(dir, 'policies'),
      JIT_DATABASE_URL: await freshPostgresDatabase('jit_console'),
      JIT_KEY_ENCRYPTION_KEY: randomBytes(32).toString('base64'),
      VAULT_ADDR: vault.url,
      VAULT_TOKEN: ROOT_TOKEN,
      LOG_LEVEL: 'warn',
    },
    { sweepIntervalMs: 3_600_000 },
  );
});
afterAll(async () => {
  await broker?.stop();
  await vault?.close();
  rmSync(dir, { recursive: true, force: true });
});

const post = (path: string, init: { cookie?: string; json?: unknown; form?: URLSearchParams }) =>
  fetch(`${broker.url}${path}`, {
    method: 'POST',
    redirect: 'manual',
    headers: {
      origin: PUBLIC_URL,
      accept: init.form ? 'text/html' : 'application/json',
      ...(init.cookie ? { cookie: `jit_console=${init.cookie}` } : {}),
      ...(init.json !== undefined ? { 'content-type': 'application/json' } : {}),
    },
    ...(init.json !== undefined ? { body: JSON.stringify(init.json) } : init.form ? { body: init.form } : {}),
  });

it('enrol, watch the live stream, approve: on PostgreSQL', async () => {
  const { token } = await addApprover(broker.deps, { name: 'ann' });
  const auth = new SoftAuthenticator({ origin: PUBLIC_URL });
  const options = (await (await post(`/console/enrol/${token}/options`, {})).json()) as PublicKeyCredentialCreationOptionsJSON;
  const finish = await post(`/console/enrol/${token}/finish`, { json: auth.register(options) });
  expect(finish.status).toBe(200);
  const cookie = /^jit_console=([^;]+)/.exec(finish.headers.get('set-cookie') ?? '')![1]!;

  const events = await fetch(`${broker.url}/console/events`, { headers: { cookie: `jit_console=${cookie}`, accept: 'text/event-stream' } });
  expect(events.status).toBe(200);
  const reader = events.body!.getReader();
  let text = '';
  const until = async (what: string) => {
    while (!text.includes(what)) {
      const { value, done } = await reader.read();
      if (done) throw new Error(`stream ended before ${what}`);
      text += Buffer.from(value).toString('utf8');
    }
  };
  await until('event: ready');

  const agent = (await broker.deps.agents.add('moltbot')).token;
  const created = await fetch(`${broker.url}/jit/request`, {
    method: 'POST',
    headers: { authorization: `Bearer ${agent}`, 'content-type': 'application/json' },
    body: JSON.stringify({ resource: 'vault', tier: 2, reason: 'on postgres', vault_paths: [{ path: 'homelab/data/apps/web', capabilities: ['read'] }], ttl: '10m' }),
  });
  expect(created.status).toBe(202);
  const id = ((await created.json()) as { id: string }).id;
  await until('event: change');
  await reader.cancel();

  const page = await (await fetch(`${broker.url}/console`, { headers: { cookie: `jit_console=${cookie}`, accept: 'text/html' } })).text();
  expect(page).toContain(`<code>${id}</code>`);
  const csrf = /<meta name="csrf-token" content="([^"]+)">/.exec(page)![1]!;
  const decided = await post(`/console/requests/${id}/decision`, { cookie, form: new URLSearchParams({ csrf, decision: 'approve' }) });
  expect(decided.status).toBe(200);
  expect((await broker.deps.storage.requests.get(id))!.status).toBe('approved');
});
