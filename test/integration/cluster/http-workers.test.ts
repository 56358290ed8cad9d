import { writeFileSync } from 'node:fs';
import { request as httpRequest, Agent } from 'node:http';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import NodeVault from 'node-vault';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Jwks } from '../../../src/keys/key-ring.ts';
import { startWebhookReceiver, type WebhookReceiver } from '../../fakes/webhook-receiver.ts';
import { until } from '../../helpers/chaos-process.ts';
import { runJit } from '../../helpers/cli.ts';
import { openSse } from '../../helpers/sse.ts';
import { CLUSTER_ROOT_TOKEN, startClusterBroker, type ClusterBroker } from '../../helpers/cluster.ts';

/**
 * `jit serve` with JIT_HTTP_WORKERS=2: a primary and two HTTP worker
 * processes on one database, against a development Vault in this process
 * and a webhook receiver that verifies every signature.
 */
const policy = (tier1: boolean, receiverUrl: string) => `
agents:
  moltbot:
    sessions: ["hook:jit:moltbot*"]
    default_session: "hook:jit:moltbot"
    webhook: { url: "${receiverUrl}/events", format: standard }
rules:
  - name: docker-read
    agents: [moltbot]
    resource: vault
    paths: ["homelab/data/docker/*"]
    capabilities: [read]
    tier: ${tier1 ? 1 : 2}
    max_ttl: 1h
  - name: homelab-write
    agents: [moltbot]
    resource: vault
    paths: ["homelab/data/*"]
    capabilities: [read, update]
    tier: 2
    max_ttl: 30m
`;

let env: Record<string, string>;
let vault: ClusterBroker['vault'];
let receiver: WebhookReceiver;
let serve: ClusterBroker['serve'];
let token: string;
let jwks: Jwks = { keys: [] };

/** One request on a connection of its own, so the cluster's round robin spreads them over the workers. */
function call(method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<{ status: number; body: any; text: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(`${serve.url}${path}`, {
      method,
      agent: new Agent({ keepAlive: false }),
      headers: { authorization: `Bearer ${token}`, ...(body ? { 'content-type': 'application/json' } : {}), ...headers },
    });
    req.on('response', (res) => {
      let text = '';
      res.on('data', (d: Buffer) => (text += d.toString()));
      res.on('end', () => {
        let parsed: unknown;
        try {
          parsed = JSON.parse(text);
        } catch {
          parsed = undefined;
        }
        resolve({ status: res.statusCode!, body: parsed, text });
      });
    });
    req.on('error', reject);
    req.end(body ? JSON.stringify(body) : undefined);
  });
}

const write = { resource: 'vault', tier: 2, reason: 'rotate the web key', vault_paths: [{ path: 'homelab/data/apps/web', capabilities: ['read', 'update'] }] };
const tier1 = { resource: 'vault', tier: 1, reason: 'read the registry login', vault_paths: [{ path: 'homelab/data/docker/registry', capabilities: ['read'] }], ttl: '10m' };

/** Request log lines name the worker that served them. */
const servingWorkers = () => new Set([...serve.output().matchAll(/"http_worker":(\d+)[^\n]*"msg":"request"/g)].map((m) => m[1]));


let cluster: ClusterBroker;
beforeAll(async () => {
  receiver = await startWebhookReceiver({ jwks: () => jwks });
  // More requests than the default 60 a minute, from one agent.
  cluster = await startClusterBroker({ policy: policy(true, receiver.url), env: { JIT_RATE_PER_MINUTE: '1000' } });
  ({ env, vault, serve, token } = cluster);
  await NodeVault({ endpoint: vault.url, token: CLUSTER_ROOT_TOKEN }).write('homelab/data/docker/registry', { data: { password: 'from-vault' } });
  jwks = (await (await fetch(`${serve.url}/.well-known/jwks.json`)).json()) as Jwks;
}, 60_000);

afterAll(async () => {
  await cluster?.close();
  await receiver?.close();
});

describe('JIT_HTTP_WORKERS=2', () => {
  it('serves from both workers and issues exactly one credential per request', async () => {
    const answers = await Promise.all(Array.from({ length: 40 }, () => call('POST', '/jit/request', tier1)));
    expect(answers.map((a) => a.status)).toEqual(Array(40).fill(201));
    const ids = new Set(answers.map((a) => a.body.id));
    expect(ids.size).toBe(40);
    // Every token works in Vault, bound to its own grant.
    const secret = await NodeVault({ endpoint: vault.url, token: answers[7]!.body.credential.token }).read('homelab/data/docker/registry');
    expect(secret.data.data.password).toBe('from-vault');
    expect(servingWorkers().size).toBe(2);
    // No secret in any process's log: the agent's token, the issued Vault tokens, the Vault token the workers were given.
    const logs = serve.output();
    for (const secretValue of [token, CLUSTER_ROOT_TOKEN, ...answers.map((a) => a.body.credential.token as string)]) expect(logs).not.toContain(secretValue);
    expect(logs).toMatch(/"msg":"request"/); // the logs were read, and they do log requests

    const db = new Database(env.JIT_DB!, { readonly: true });
    try {
      expect(db.prepare(`SELECT COUNT(*) FROM credentials WHERE state = 'live'`).pluck().get()).toBe(40);
      expect(db.prepare(`SELECT COUNT(DISTINCT request_id) FROM credentials`).pluck().get()).toBe(40);
    } finally {
      db.close();
    }
  });

  it('replays one Idempotency-Key to one credential across workers', async () => {
    const answers = await Promise.all(Array.from({ length: 12 }, () => call('POST', '/jit/request', tier1, { 'idempotency-key': 'same-key-across-workers' })));
    const ids = new Set(answers.filter((a) => a.status < 300).map((a) => a.body.id));
    expect(ids.size).toBe(1);
    expect(answers.filter((a) => a.status === 201)).toHaveLength(1);
    for (const a of answers) expect([200, 201, 409]).toContain(a.status);
  });

  it('wakes the primary to deliver a decision made in a worker, and sums every process into /metrics', async () => {
    const pending = await call('POST', '/jit/request', { resource: 'vault', tier: 2, reason: 'rotate the password', vault_paths: [{ path: 'homelab/data/docker/registry', capabilities: ['update'] }], ttl: '10m' });
    expect(pending.status).toBe(202);
    const before = receiver.requests.length;
    const revoked = await call('POST', `/jit/requests/${pending.body.id}/revoke`);
    expect(revoked.status).toBe(200);
    const [hook] = (await receiver.waitForRequests(before + 1)).slice(before);
    expect(hook!.verification.ok).toBe(true);
    expect(JSON.parse(hook!.body)).toMatchObject({ type: 'jit.request.revoked', request_id: pending.body.id });

    // Whichever worker answers, the counts are those of the whole broker.
    for (let i = 0; i < 4; i++) {
      const m = await call('GET', '/metrics');
      expect(m.status).toBe(200);
      const issued = /jit_requests_total\{resource="vault",tier="1",outcome="issued"\} (\d+)/.exec(m.text);
      expect(Number(issued?.[1])).toBe(41);
      expect(m.text).toMatch(/jit_webhook_deliveries_total\{outcome="delivered",target="standard"\} \d+/);
    }
  });

  it('reloads the policy in every worker on SIGHUP', async () => {
    writeFileSync(join(env.JIT_POLICIES!, 'p.yaml'), policy(false, receiver.url));
    serve.child.kill('SIGHUP');
    await until(() => (serve.output().match(/"http_worker":\d+[^\n]*"msg":"policies reloaded"/g)?.length ?? 0) >= 2, 15_000, 'both workers to reload', 50);
    const answers = await Promise.all(Array.from({ length: 8 }, () => call('POST', '/jit/request', tier1)));
    // Tier 1 is now tier 2 everywhere: pending, not issued.
    expect(answers.map((a) => a.status)).toEqual(Array(8).fill(202));
    writeFileSync(join(env.JIT_POLICIES!, 'p.yaml'), policy(true, receiver.url));
    serve.child.kill('SIGHUP');
    await until(() => (serve.output().match(/"http_worker":\d+[^\n]*"msg":"policies reloaded"/g)?.length ?? 0) >= 4, 15_000, 'both workers to reload again', 50);
  });

  it('replaces a worker that dies and keeps serving', async () => {
    const pids = [...new Set([...serve.output().matchAll(/"http_worker":(\d+)[^\n]*"msg":"HTTP worker listening"/g)].map((m) => Number(m[1])))];
    expect(pids).toHaveLength(2);
    process.kill(pids[0]!, 'SIGKILL');
    await until(() => /"msg":"HTTP worker exited; starting another"/.test(serve.output()) && [...serve.output().matchAll(/"msg":"HTTP worker listening"/g)].length >= 3, 15_000, 'a new worker', 50);
    const answers = await Promise.all(Array.from({ length: 10 }, () => call('POST', '/jit/request', tier1)));
    expect(answers.map((a) => a.status)).toEqual(Array(10).fill(201));
  });

  it("a worker's decision stream gets a decision made by `jit approve` in another process", async () => {
    const id = (await call('POST', '/jit/request', write)).body.id as string;
    const s = await openSse(`${serve.url}/jit/requests/${id}/events`, { authorization: `Bearer ${token}` });
    expect(s.status).toBe(200);
    expect((await s.next()).json.status).toBe('pending');
    expect((await runJit(['approve', id], env)).code).toBe(0);
    expect((await s.next()).json).toMatchObject({ id, status: 'approved', decision: { approver: 'local-cli', narrowed: false } });
    s.close();
  });

  it('stops every worker on SIGTERM, ending the open decision streams', async () => {
    const pids = [...new Set([...serve.output().matchAll(/"http_worker":(\d+)[^\n]*"msg":"HTTP worker listening"/g)].map((m) => Number(m[1])))];
    const id = (await call('POST', '/jit/request', write)).body.id as string;
    const s = await openSse(`${serve.url}/jit/requests/${id}/events`, { authorization: `Bearer ${token}` });
    await s.next();
    expect(await serve.stop()).toBe(0);
    await s.ended;
    for (const pid of pids) expect(() => process.kill(pid, 0)).toThrow();
  });
});
