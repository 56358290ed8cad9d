import Database from 'better-sqlite3';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDevVault, type DevVault } from '../../src/vault/dev/index.ts';
import type { Jwks } from '../../src/keys/key-ring.ts';
import { startWebhookReceiver, type WebhookReceiver } from '../fakes/webhook-receiver.ts';
import { freePort, killAllServe, spawnServe, until, type ServeProcess } from '../helpers/chaos-process.ts';
import { figureLog } from '../helpers/chaos-report.ts';
import { runJit } from '../helpers/cli.ts';

/**
 * A SIGKILL in the middle of a delivery: the killed dispatcher's row stays
 * `delivering`, leased for 60 s (15 s timeout + 45 s), so the restarted
 * broker sends it again only once that lease has run out — with the same
 * webhook-id. It takes over a minute of real time, so it runs only in the
 * full chaos run (`npm run test:chaos`).
 */
const FULL = process.env.CHAOS_FULL === '1';
const ROOT = 'hvs.lease-root-token';
const HOOKS = 'openclaw-hooks-lease-token-0123456789abcdef';
const POLICY = `
agents:
  moltbot:
    sessions: ["hook:jit:moltbot*"]
    default_session: "hook:jit:moltbot"
    webhook: openclaw
rules:
  - name: homelab-write
    agents: [moltbot]
    resource: vault
    paths: ["homelab/data/*"]
    capabilities: [update]
    tier: 2
    max_ttl: 30m
`;

describe.runIf(FULL)('chaos: SIGKILL mid-delivery', () => {
  let dir: string;
  let vault: DevVault;
  let receiver: WebhookReceiver;
  let env: Record<string, string>;
  let broker: ServeProcess;
  let jwks: Jwks = { keys: [] };
  const row = (requestId: string) => {
    const db = new Database(join(dir, 'jit.db'), { readonly: true });
    try {
      return db.prepare('SELECT id, state, attempts, lease_expires_at FROM webhook_outbox WHERE request_id = ?').get(requestId) as
        | { id: string; state: string; attempts: number; lease_expires_at: number | null }
        | undefined;
    } finally {
      db.close();
    }
  };

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'jit-lease-'));
    mkdirSync(join(dir, 'policies'));
    writeFileSync(join(dir, 'policies', 'p.yaml'), POLICY);
    vault = await startDevVault({ host: '127.0.0.1', port: 0, rootToken: ROOT });
    receiver = await startWebhookReceiver({ jwks: () => jwks, bearer: HOOKS });
    env = {
      JIT_HOST: '127.0.0.1', JIT_PORT: String(await freePort()), JIT_DB: join(dir, 'jit.db'), JIT_POLICIES: join(dir, 'policies'),
      VAULT_ADDR: vault.url, VAULT_TOKEN: ROOT, OPENCLAW_HOOKS_URL: `${receiver.url}/hooks`, OPENCLAW_HOOKS_TOKEN: HOOKS, LOG_LEVEL: 'warn',
    };
    broker = await spawnServe(env);
    jwks = (await (await fetch(`${broker.url}/.well-known/jwks.json`)).json()) as Jwks;
  }, 60_000);
  afterAll(async () => {
    await killAllServe();
    await receiver?.close();
    await vault?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('redelivers the event a killed broker was sending, after its lease, with the same id', async () => {
    const f = figureLog('chaos: SIGKILL mid-delivery (lease)');
    const token = (await runJit(['agent', 'add', 'moltbot'], env)).stdout.trim().split('\n').at(-1)!;
    const res = await fetch(`${broker.url}/jit/request`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ resource: 'vault', tier: 2, reason: 'lease', vault_paths: [{ path: 'homelab/data/apps/x', capabilities: ['update'] }] }),
    });
    const id = ((await res.json()) as { id: string }).id;
    receiver.script({ hang: true });
    expect((await runJit(['approve', id], env)).code).toBe(0);
    await until(() => row(id)?.state === 'delivering' && receiver.requests.length === 1, 10_000, 'delivery in flight');
    await broker.kill('SIGKILL');
    const leased = row(id)!;
    const killedAt = Date.now();
    broker = await spawnServe(env);
    await until(() => row(id)?.state === 'delivered', 90_000, 'redelivery after the lease', 500);
    const after = Date.now() - killedAt;
    const ids = receiver.requests.map((r) => String(r.headers['webhook-id']));
    f.line(`killed while the receiver held the delivery: row ${leased.state}, lease until +${Math.round((leased.lease_expires_at! - killedAt) / 1000)} s; redelivered ${(after / 1000).toFixed(1)} s after the kill on attempt ${row(id)!.attempts}, ids seen ${[...new Set(ids)].length}`);
    f.set('lease_wait_s', (after / 1000).toFixed(1));
    f.set('lost', 0);
    f.print();
    expect(new Set(ids).size).toBe(1);
    expect(after).toBeGreaterThanOrEqual(50_000);
  }, 120_000);
});
