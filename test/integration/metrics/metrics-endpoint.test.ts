import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { decideRequest } from '../../../src/broker/decide.ts';
import { loadConfig } from '../../../src/config/config.ts';
import { createStorageDeps } from '../../../src/create-deps.ts';
import { startHarness, type Harness } from '../../helpers/broker-harness.ts';
import { openSqliteStorage } from '../../../src/storage/sqlite/index.ts';

/** The value of one sample of `name` whose labels include `labels`; undefined when absent. */
function sample(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const got = Object.fromEntries([...(m[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((l) => [l[1], l[2]]));
    if (Object.entries(labels).every(([k, v]) => got[k] === v)) return Number(m[3]);
  }
  return undefined;
}

let h: Harness;
let token: string;
beforeEach(async () => {
  h = await startHarness();
  token = await h.addAgent('moltbot');
});
afterEach(async () => {
  await h.close();
});

const read = (path = 'homelab/data/docker/registry') => ({ resource: 'vault', tier: 1, reason: 'r', vault_paths: [{ path, capabilities: ['read'] }] });
const write = { resource: 'vault', tier: 2, reason: 'rotate', vault_paths: [{ path: 'homelab/data/apps/web', capabilities: ['read', 'update'] }] };

async function scrape(): Promise<string> {
  const res = await fetch(`${h.broker.url}/metrics`);
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
  return res.text();
}

describe('GET /metrics', () => {
  it('counts requests, decisions, latencies, Vault calls and HTTP traffic', async () => {
    const before = await scrape();
    expect(sample(before, 'jit_requests_total')).toBeUndefined();
    expect(sample(before, 'jit_webhook_outbox_depth')).toBe(0);
    expect(sample(before, 'jit_webhook_outbox_dead')).toBe(0);
    expect(sample(before, 'process_cpu_user_seconds_total')).toBeGreaterThan(0);

    // Two tier-1 issues of one grant, a refusal, a pending request, a 404.
    expect((await h.call('POST', '/jit/request', { token, body: read() })).status).toBe(201);
    const second = await h.call('POST', '/jit/request', { token, body: read() });
    expect(second.status).toBe(201);
    expect((await h.call('POST', '/jit/request', { token, body: read('homelab/data/vault/unseal') })).status).toBe(403);
    const pending = await h.call('POST', '/jit/request', { token, body: write });
    expect(pending.status).toBe(202);
    expect((await h.call('GET', `/jit/requests/${second.body.id}`, { token })).status).toBe(200);
    expect((await h.call('GET', '/no/such/route')).status).toBe(404);

    // Approved 90 s later by `jit approve` in another process (its own connection), then claimed and revoked.
    h.clock.advance(90_000);
    const db = openSqliteStorage(join(h.dir, 'jit.db'));
    try {
      const cli = createStorageDeps({ config: loadConfig({ JIT_DB: join(h.dir, 'jit.db') }), storage: db, clock: h.clock });
      expect((await decideRequest(cli, pending.body.id, { approver: 'local-cli', decision: 'approve' })).outcome).toBe('approved');
    } finally {
      await db.close();
    }
    expect((await h.call('POST', `/jit/requests/${pending.body.id}/claim`, { token })).status).toBe(201);
    expect((await h.call('POST', `/jit/requests/${pending.body.id}/revoke`, { token })).status).toBe(200);

    // A Vault failure.
    h.proxy.setFault(() => 'reset');
    expect((await h.call('POST', '/jit/request', { token, body: read('homelab/data/docker/other') })).status).toBe(503);
    h.proxy.setFault(undefined);

    const text = await scrape();
    const requests = (tier: string, outcome: string) => sample(text, 'jit_requests_total', { resource: 'vault', tier, outcome });
    expect(requests('1', 'issued')).toBe(2);
    expect(requests('1', 'denied_by_policy')).toBe(1);
    expect(requests('2', 'pending')).toBe(1);
    expect(requests('1', 'vault_unavailable')).toBe(1);

    expect(sample(text, 'jit_decisions_total', { resource: 'vault', tier: '2', decision: 'approved' })).toBe(1);
    expect(sample(text, 'jit_decisions_total', { resource: 'vault', tier: '2', decision: 'revoked' })).toBe(1);
    expect(sample(text, 'jit_approval_latency_seconds_count', { tier: '2', decision: 'approved' })).toBe(1);
    expect(sample(text, 'jit_approval_latency_seconds_sum', { tier: '2', decision: 'approved' })).toBe(90);
    expect(sample(text, 'jit_approval_latency_seconds_bucket', { tier: '2', decision: 'approved', le: '60' })).toBe(0);
    expect(sample(text, 'jit_approval_latency_seconds_bucket', { tier: '2', decision: 'approved', le: '120' })).toBe(1);

    expect(sample(text, 'jit_credential_issuance_seconds_count', { resource: 'vault', outcome: 'issued' })).toBe(3);
    expect(sample(text, 'jit_credential_issuance_seconds_count', { resource: 'vault', outcome: 'failed' })).toBe(1);

    // Three credentials, each with a policy of its own (the default), and one issue whose two calls
    // (policy write and token create go out together) both failed.
    expect(sample(text, 'jit_vault_request_duration_seconds_count', { operation: 'create_token' })).toBe(4);
    expect(sample(text, 'jit_vault_request_duration_seconds_count', { operation: 'write_policy' })).toBe(4);
    expect(sample(text, 'jit_vault_request_duration_seconds_count', { operation: 'revoke_accessor' })).toBe(1);
    expect(sample(text, 'jit_vault_request_errors_total', { operation: 'write_policy', kind: 'unreachable' })).toBe(1);
    expect(sample(text, 'jit_vault_request_errors_total', { operation: 'create_token', kind: 'unreachable' })).toBe(1);

    const http = (method: string, route: string, status: string) => sample(text, 'jit_http_requests_total', { method, route, status });
    expect(http('POST', '/jit/request', '201')).toBe(2);
    expect(http('POST', '/jit/request', '403')).toBe(1);
    expect(http('POST', '/jit/request', '503')).toBe(1);
    expect(http('GET', '/jit/requests/:id', '200')).toBe(1);
    expect(http('POST', '/jit/requests/:id/claim', '201')).toBe(1);
    expect(http('GET', 'unmatched', '404')).toBe(1);
    expect(http('GET', '/metrics', '200')).toBe(1);
    expect(sample(text, 'jit_http_request_duration_seconds_count', { method: 'POST', route: '/jit/request' })).toBe(5);
  });

  it('labels a request refused before its handler (401, 413) with the route it asked for', async () => {
    expect((await h.call('POST', '/jit/request', { token: 'nope', body: read() })).status).toBe(401);
    expect((await h.call('POST', '/jit/request', { token, raw: JSON.stringify({ pad: 'x'.repeat(70_000) }) })).status).toBe(413);
    const text = await scrape();
    expect(sample(text, 'jit_http_requests_total', { method: 'POST', route: '/jit/request', status: '401' })).toBe(1);
    expect(sample(text, 'jit_http_requests_total', { method: 'POST', route: '/jit/request', status: '413' })).toBe(1);
    expect(sample(text, 'jit_requests_total')).toBeUndefined();
  });

  it('exposes the webhook hooks: deliveries counted by the dispatcher, outbox gauges from the table or a source', async () => {
    const { metrics } = h.broker.deps;
    metrics.webhookDelivery('delivered', 'openclaw');
    metrics.webhookDelivery('delivered', 'openclaw');
    metrics.webhookDelivery('dead', 'standard');
    let text = await scrape();
    expect(sample(text, 'jit_webhook_deliveries_total', { outcome: 'delivered', target: 'openclaw' })).toBe(2);
    expect(sample(text, 'jit_webhook_deliveries_total', { outcome: 'dead', target: 'standard' })).toBe(1);

    metrics.setOutboxSource(() => ({ depth: 7, dead: 2 }));
    text = await scrape();
    expect(sample(text, 'jit_webhook_outbox_depth')).toBe(7);
    expect(sample(text, 'jit_webhook_outbox_dead')).toBe(2);
  });

  it('keeps each broker\'s numbers in its own registry', async () => {
    const other = await startHarness();
    try {
      expect((await h.call('POST', '/jit/request', { token, body: read() })).status).toBe(201);
      const mine = await scrape();
      const res = await fetch(`${other.broker.url}/metrics`);
      const theirs = await res.text();
      expect(sample(mine, 'jit_requests_total', { outcome: 'issued' })).toBe(1);
      expect(sample(theirs, 'jit_requests_total', { outcome: 'issued' })).toBeUndefined();
      expect(h.broker.deps.metrics.registry).not.toBe(other.broker.deps.metrics.registry);
    } finally {
      await other.close();
    }
  });
});
