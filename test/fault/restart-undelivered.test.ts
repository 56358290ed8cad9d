import Database from 'better-sqlite3';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDevVault, type DevVault } from '../../src/vault/dev/index.ts';
import type { Jwks } from '../../src/keys/key-ring.ts';
import { startFaultProxy } from '../fakes/fault-proxy.ts';
import { startWebhookReceiver, type WebhookReceiver } from '../fakes/webhook-receiver.ts';
import { freePort, killAllServe, spawnServe, until, type ServeProcess } from '../helpers/chaos-process.ts';
import { figureLog } from '../helpers/chaos-report.ts';
import { runJit } from '../helpers/cli.ts';
import { HOMELAB_WRITE, onePolicy } from '../helpers/policies.ts';

/**
 * Restart with undelivered events: decisions whose webhooks could not be
 * sent (receiver unreachable), and decisions made with the CLI while the
 * broker was down, are all delivered — once each, with their ids — by the
 * next `jit serve`, whether the last one was SIGKILLed or stopped mid-send.
 */
const ROOT = 'hvs.restart-undelivered-root';
const HOOKS = 'openclaw-hooks-restart-token-0123456789abcd';
const POLICY = onePolicy({ name: 'moltbot', sessions: 'hook:jit:moltbot*', defaultSession: 'hook:jit:moltbot', webhook: 'openclaw' }, [HOMELAB_WRITE]);
const write = (i: number) => ({ resource: 'vault', tier: 2, reason: `restart test ${i}`, vault_paths: [{ path: `homelab/data/apps/app${i}`, capabilities: ['update'] }] });

interface Row {
  id: string;
  request_id: string;
  type: string;
  state: string;
  attempts: number;
}

describe('fault: restart with undelivered events', () => {
  let dir: string;
  let dbPath: string;
  let vault: DevVault;
  let receiver: WebhookReceiver;
  let proxy: Awaited<ReturnType<typeof startFaultProxy>>;
  let env: Record<string, string>;
  let token: string;
  let broker: ServeProcess;
  let jwks: Jwks = { keys: [] };

  const rows = (): Row[] => {
    const db = new Database(dbPath, { readonly: true });
    try {
      return db.prepare('SELECT id, request_id, type, state, attempts FROM webhook_outbox ORDER BY created_at, id').all() as Row[];
    } finally {
      db.close();
    }
  };
  const post = async (path: string, body?: unknown) => {
    const res = await fetch(`${broker.url}${path}`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, ...(body ? { 'content-type': 'application/json' } : {}) },
      ...(body ? { body: JSON.stringify(body) } : {}),
    });
    return { status: res.status, body: (await res.json()) as Record<string, any> };
  };
  const start = async () => {
    broker = await spawnServe(env);
    if (jwks.keys.length === 0) jwks = (await (await fetch(`${broker.url}/.well-known/jwks.json`)).json()) as Jwks;
  };
  /** Delivered webhook-ids per outbox event (only 2xx answers with a valid signature count). */
  const deliveredIds = () => {
    const m = new Map<string, Set<string>>();
    for (const r of receiver.requests) {
      if (r.answer !== 200 || !r.verification.ok) continue;
      const id = String(r.headers['webhook-id']);
      m.set(id, (m.get(id) ?? new Set()).add(id));
    }
    return m;
  };

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'jit-restart-'));
    dbPath = join(dir, 'jit.db');
    mkdirSync(join(dir, 'policies'));
    writeFileSync(join(dir, 'policies', 'p.yaml'), POLICY);
    vault = await startDevVault({ host: '127.0.0.1', port: 0, rootToken: ROOT });
    receiver = await startWebhookReceiver({ jwks: () => jwks, bearer: HOOKS });
    proxy = await startFaultProxy(receiver.url);
    env = {
      JIT_HOST: '127.0.0.1',
      JIT_PORT: String(await freePort()),
      JIT_DB: dbPath,
      JIT_POLICIES: join(dir, 'policies'),
      VAULT_ADDR: vault.url,
      VAULT_TOKEN: ROOT,
      OPENCLAW_HOOKS_URL: `${proxy.url}/hooks`,
      OPENCLAW_HOOKS_TOKEN: HOOKS,
      LOG_LEVEL: 'warn',
    };
    token = (await runJit(['agent', 'add', 'moltbot'], env)).stdout.trim().split('\n').at(-1)!;
    await start();
  }, 60_000);

  afterAll(async () => {
    await killAllServe();
    await proxy?.close();
    await receiver?.close();
    await vault?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('delivers, once each, what a SIGKILLed broker and the offline CLI left in the outbox', async () => {
    const f = figureLog('fault: restart with undelivered events (SIGKILL)');
    proxy.setFault(() => 'reset'); // receiver unreachable
    const ids: string[] = [];
    for (let i = 0; i < 6; i++) ids.push((await post('/jit/request', write(i))).body.id);
    // Decided while the broker runs: it tries to deliver and fails.
    const cli = await Promise.all([runJit(['approve', ids[0]!], env), runJit(['deny', ids[1]!, '--reason', 'no'], env), runJit(['approve', ids[2]!], env)]);
    expect(cli.map((r) => r.code)).toEqual([0, 0, 0]);
    expect((await post(`/jit/requests/${ids[3]}/revoke`)).status).toBe(200);
    await until(() => rows().length === 4 && rows().every((r) => r.attempts >= 1 && r.state === 'pending'), 15_000, 'first attempts failed');
    const attempted = rows().length;
    f.line(`receiver unreachable: ${attempted} events attempted and failed (${proxy.seen.length} connections dropped)`);

    await broker.kill('SIGKILL');
    // Decided with the CLI while no broker runs: only the outbox knows.
    const offline = await Promise.all([runJit(['approve', ids[4]!], env), runJit(['deny', ids[5]!], env)]);
    expect(offline.map((r) => r.code)).toEqual([0, 0]);
    const events = rows();
    expect(events).toHaveLength(6);
    f.line(`broker SIGKILLed; ${events.length - attempted} more decisions made with the CLI while it was down; outbox: ${events.map((r) => `${r.state}/${r.attempts}`).join(' ')}`);

    proxy.setFault(undefined);
    const t0 = Date.now();
    await start();
    await until(() => rows().every((r) => r.state === 'delivered'), 20_000, 'every event delivered after the restart');
    const took = Date.now() - t0;
    const got = deliveredIds();
    for (const r of rows()) expect(got.has(r.id), `${r.type} of ${r.request_id}`).toBe(true);
    const received = receiver.requests.filter((r) => r.answer === 200);
    expect(received.every((r) => r.verification.ok)).toBe(true);
    expect(new Set(received.map((r) => String(r.headers['webhook-id']))).size).toBe(6);
    f.line(`restarted: all ${rows().length} delivered ${took} ms after start; ${received.length} deliveries for ${got.size} distinct ids; signatures valid`);
    f.set('events', rows().length);
    f.set('delivered_after_restart', rows().filter((r) => r.state === 'delivered').length);
    f.set('redeliveries', received.length - got.size);
    f.set('lost', rows().filter((r) => r.state !== 'delivered').length);
    f.print();
  }, 60_000);

  it('a graceful stop in the middle of a delivery gives the event back, and the next start sends it at once', async () => {
    const f = figureLog('fault: restart with an event in flight (SIGTERM)');
    receiver.script({ hang: true });
    const id = (await post('/jit/request', write(7))).body.id as string;
    expect((await runJit(['approve', id], env)).code).toBe(0);
    await until(() => rows().find((r) => r.request_id === id)?.state === 'delivering', 10_000, 'delivery in flight');
    const code = await broker.kill('SIGTERM');
    const row = rows().find((r) => r.request_id === id)!;
    f.line(`SIGTERM while the receiver hung on the delivery: exit ${code}, event left ${row.state} after ${row.attempts} attempt(s)`);
    expect(code).toBe(0);
    expect(row.state).toBe('pending');
    const t0 = Date.now();
    await start();
    await until(() => rows().find((r) => r.request_id === id)?.state === 'delivered', 10_000, 'delivered after restart');
    const ids = receiver.requests.filter((r) => JSON.parse(r.body).message?.includes(id)).map((r) => String(r.headers['webhook-id']));
    expect(new Set(ids).size).toBe(1);
    f.line(`restarted: delivered ${Date.now() - t0} ms after start, ${ids.length} receipts of one webhook-id (the hung one and the delivery)`);
    f.set('lost', 0);
    f.set('ids', new Set(ids).size);
    f.print();
  }, 60_000);
});
