import { describe, expect, it, vi } from 'vitest';
import type { RequestRow } from '../../../src/broker/rows.ts';
import { openSqliteStorage, sqliteDatabase } from '../../../src/storage/sqlite/index.ts';
import type { Transaction } from '../../../src/storage/storage.ts';
import { createMetrics, instrumentVault, metricsDecisionSink } from '../../../src/metrics/index.ts';
import { VaultError } from '../../../src/vault/errors.ts';
import type { VaultClient } from '../../../src/vault/types.ts';

function sample(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const got = Object.fromEntries([...(m[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((l) => [l[1], l[2]]));
    if (Object.entries(labels).every(([k, v]) => got[k] === v)) return Number(m[3]);
  }
  return undefined;
}

describe('createMetrics', () => {
  it('gives every broker its own registry', async () => {
    const a = createMetrics({ processMetrics: false });
    const b = createMetrics({ processMetrics: false });
    a.requestOutcome('vault', 1, 'issued');
    a.requestOutcome('vault', 1, 'issued');
    b.requestOutcome('gate', 2, 'pending');
    const ta = await a.render();
    const tb = await b.render();
    expect(sample(ta, 'jit_requests_total', { resource: 'vault', tier: '1', outcome: 'issued' })).toBe(2);
    expect(sample(ta, 'jit_requests_total', { resource: 'gate' })).toBeUndefined();
    expect(sample(tb, 'jit_requests_total', { resource: 'gate', tier: '2', outcome: 'pending' })).toBe(1);
    expect(ta).toContain('# HELP jit_requests_total');
    expect(ta).not.toContain('process_cpu');
    expect(a.contentType).toMatch(/^text\/plain; version=0\.0\.4/);
  });

  it('reads the outbox gauges from a source when given one (0 without)', async () => {
    const m = createMetrics({ processMetrics: false });
    expect(sample(await m.render(), 'jit_webhook_outbox_depth')).toBe(0);
    const source = vi.fn(() => ({ depth: 3, dead: 1 }));
    m.setOutboxSource(source);
    const text = await m.render();
    expect(sample(text, 'jit_webhook_outbox_depth')).toBe(3);
    expect(sample(text, 'jit_webhook_outbox_dead')).toBe(1);
    expect(source).toHaveBeenCalledTimes(1);
    m.setOutboxSource(() => {
      throw new Error('database closed');
    });
    expect(sample(await m.render(), 'jit_webhook_outbox_depth')).toBe(0);
  });

  it('observes each approval or denial once, from the votes of any process, from its start on', async () => {
    const storage = openSqliteStorage(':memory:');
    const db = sqliteDatabase(storage);
    const insertRequest = (id: string, tier: number, createdAt: number) =>
      db
        .prepare(`INSERT INTO requests (id, agent_id, agent_name, resource, tier, required_tier, status, reason, scope, ttl_seconds, rules, created_at, updated_at)
          VALUES (?, 'agt_1', 'a', 'vault', ?, ?, 'pending', 'r', '{}', 60, '[]', ?, ?)`)
        .run(id, tier, tier, createdAt, createdAt);
    const vote = (id: string, approver: string, decision: 'approve' | 'deny', at: number, decides: boolean) => {
      db.prepare('INSERT INTO votes (request_id, approver, decision, at) VALUES (?, ?, ?, ?)').run(id, approver, decision, at);
      if (decides) db.prepare(`UPDATE requests SET status = ?, decided_at = ? WHERE id = ?`).run(decision === 'approve' ? 'approved' : 'denied', at, id);
    };
    insertRequest('req_old', 2, 0);
    vote('req_old', 'x', 'approve', 1_000, true); // before the broker started: not counted
    const m = createMetrics({ storage, processMetrics: false });
    insertRequest('req_a', 2, 10_000);
    vote('req_a', 'alice', 'approve', 40_000, true);
    insertRequest('req_b', 3, 10_000);
    vote('req_b', 'alice', 'approve', 20_000, false); // the first of a quorum of two does not decide
    let text = await m.render();
    expect(sample(text, 'jit_decisions_total', { tier: '2', decision: 'approved' })).toBe(1);
    expect(sample(text, 'jit_approval_latency_seconds_sum', { tier: '2', decision: 'approved' })).toBe(30);
    expect(sample(text, 'jit_approval_latency_seconds_count', { tier: '3' })).toBeUndefined();
    vote('req_b', 'bob', 'approve', 70_000, true);
    insertRequest('req_c', 2, 0);
    vote('req_c', 'carol', 'deny', 5_000, true);
    text = await m.render();
    expect(sample(text, 'jit_approval_latency_seconds_count', { tier: '2', decision: 'approved' })).toBe(1);
    expect(sample(text, 'jit_approval_latency_seconds_sum', { tier: '3', decision: 'approved' })).toBe(60);
    expect(sample(text, 'jit_decisions_total', { tier: '2', decision: 'denied' })).toBe(1);
    expect(sample(text, 'jit_approval_latency_seconds_bucket', { tier: '2', decision: 'denied', le: '5' })).toBe(1);
    db.close();
  });

  it('counts each vote once when two scrapes overlap', async () => {
    const storage = openSqliteStorage(':memory:');
    const db = sqliteDatabase(storage);
    const m = createMetrics({ storage, processMetrics: false });
    for (const id of ['req_a', 'req_b']) {
      db.prepare(`INSERT INTO requests (id, agent_id, agent_name, resource, tier, required_tier, status, reason, scope, ttl_seconds, rules, created_at, updated_at)
          VALUES (?, 'agt_1', 'a', 'vault', 2, 2, 'pending', 'r', '{}', 60, '[]', 0, 0)`).run(id);
      db.prepare(`INSERT INTO votes (request_id, approver, decision, at) VALUES (?, 'alice', 'approve', 1000)`).run(id);
      db.prepare(`UPDATE requests SET status = 'approved', decided_at = 1000 WHERE id = ?`).run(id);
    }
    const [a, b] = await Promise.all([m.render(), m.render(), m.snapshot()]);
    expect(sample(a, 'jit_decisions_total', { tier: '2', decision: 'approved' })).toBeGreaterThan(0);
    expect(sample(b, 'jit_decisions_total', { tier: '2', decision: 'approved' })).toBe(2);
    expect(sample(await m.render(), 'jit_decisions_total', { tier: '2', decision: 'approved' })).toBe(2);
    await storage.close();
  });
});

describe('instrumentVault', () => {
  it('times every call and counts failures by kind, passing results and errors through', async () => {
    const m = createMetrics({ processMetrics: false });
    const start = vi.fn(async () => {});
    const inner = {
      writePolicy: async () => {},
      createOrphanToken: async () => {
        throw new VaultError('unreachable', 'connection refused');
      },
      deletePolicy: async () => {
        throw new Error('boom');
      },
      listPolicies: async () => ['a'],
      start,
      stop: () => {},
    } as unknown as VaultClient;
    const vault = instrumentVault(inner, m);
    await vault.writePolicy('p', '{}');
    expect(await vault.listPolicies()).toEqual(['a']);
    await expect(vault.createOrphanToken({ policies: [], ttlSeconds: 1, meta: {}, displayName: 'x' })).rejects.toMatchObject({ kind: 'unreachable' });
    await expect(vault.deletePolicy('p')).rejects.toThrow('boom');
    await vault.start();
    expect(start).toHaveBeenCalled();
    const text = await m.render();
    expect(sample(text, 'jit_vault_request_duration_seconds_count', { operation: 'write_policy' })).toBe(1);
    expect(sample(text, 'jit_vault_request_duration_seconds_count', { operation: 'create_token' })).toBe(1);
    expect(sample(text, 'jit_vault_request_errors_total', { operation: 'create_token', kind: 'unreachable' })).toBe(1);
    expect(sample(text, 'jit_vault_request_errors_total', { operation: 'delete_policy', kind: 'unknown' })).toBe(1);
    expect(sample(text, 'jit_vault_request_errors_total', { operation: 'write_policy' })).toBeUndefined();
  });
});

describe('metricsDecisionSink', () => {
  it('passes every event on and counts timeouts, revocations and expiries (approvals come from the votes)', async () => {
    const m = createMetrics({ processMetrics: false });
    const record = vi.fn();
    const sink = metricsDecisionSink({ record }, m);
    const row = { resource: 'gate', required_tier: 2 } as RequestRow;
    for (const type of ['approved', 'denied', 'timed_out', 'revoked', 'expired', 'timed_out'] as const) await sink.record({} as Transaction, row, type, 0);
    expect(record).toHaveBeenCalledTimes(6);
    const text = await m.render();
    expect(sample(text, 'jit_decisions_total', { resource: 'gate', tier: '2', decision: 'timed_out' })).toBe(2);
    expect(sample(text, 'jit_decisions_total', { decision: 'revoked' })).toBe(1);
    expect(sample(text, 'jit_decisions_total', { decision: 'approved' })).toBeUndefined();
  });
});
