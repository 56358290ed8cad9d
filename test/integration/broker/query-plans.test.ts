import { afterAll, beforeAll, expect, it } from 'vitest';
import { decideRequest } from '../../../src/broker/decide.ts';
import { sweep } from '../../../src/broker/lifecycle.ts';
import { startHarness, type Harness } from '../../helpers/broker-harness.ts';

/*
 * Every SQL statement that runs while the broker serves requests (issue,
 * replay, pending, approve, claim, revoke, reads, gate verify, health,
 * metrics scrape) must find its rows through an index: a table that grows
 * with history is never scanned on the hot path. The statements are
 * recorded as they run, then each is explained with the arguments it ran
 * with.
 */

type Recorded = { source: string; args: unknown[] };
let h: Harness;
const recorded = new Map<string, Recorded>();

beforeAll(async () => {
  h = await startHarness();
  const token = await h.addAgent('moltbot');
  await h.call('GET', '/healthz'); // let startup reconciliation finish first
  const proto = Object.getPrototypeOf(h.db.prepare('SELECT 1')) as Record<string, (...args: unknown[]) => unknown>;
  const originals = Object.fromEntries(['run', 'get', 'all', 'iterate'].map((m) => [m, proto[m]!]));
  for (const [name, fn] of Object.entries(originals)) {
    proto[name] = function (this: { source: string }, ...args: unknown[]) {
      if (!recorded.has(this.source)) recorded.set(this.source, { source: this.source, args });
      return fn.apply(this, args);
    };
  }
  try {
    const read = { resource: 'vault', tier: 1, reason: 'r', vault_paths: [{ path: 'homelab/data/docker/registry', capabilities: ['read'] }] };
    const call = (method: string, path: string, o: Parameters<Harness['call']>[2] = {}) => h.call(method, path, { token, ...o });
    expect((await call('POST', '/jit/request', { body: read })).status).toBe(201);
    // A policy refusal: recorded for the rate limit and audited.
    expect((await call('POST', '/jit/request', { body: { ...read, vault_paths: [{ path: 'sys/policies/acl/x', capabilities: ['read'] }] } })).status).toBe(403);
    const issued = await call('POST', '/jit/request', { body: read });
    expect(issued.status).toBe(201);
    expect((await call('POST', '/jit/request', { body: read, headers: { 'idempotency-key': 'k1' } })).status).toBe(201);
    expect((await call('POST', '/jit/request', { body: read, headers: { 'idempotency-key': 'k1' } })).status).toBe(200);
    const pending = await call('POST', '/jit/request', { body: { ...read, tier: 2, vault_paths: [{ path: 'homelab/data/apps/web', capabilities: ['update'] }] } });
    expect(pending.status).toBe(202);
    await decideRequest(h.broker.deps, pending.body.id, { approver: 'local-cli', decision: 'approve' });
    expect((await call('POST', `/jit/requests/${pending.body.id}/claim`)).status).toBe(201);
    const gate = await call('POST', '/jit/request', { body: { resource: 'gate', tier: 1, reason: 'r', repo: 'homelab/app', refs: ['refs/heads/agent/x'] } });
    expect(gate.status).toBe(201);
    expect((await h.call('POST', '/gate/verify', { body: { credential: gate.body.credential.credential, repo: 'homelab/app', ref: 'refs/heads/agent/x' } })).body.valid).toBe(true);
    expect((await call('GET', `/jit/requests/${issued.body.id}`)).status).toBe(200);
    expect((await call('POST', `/jit/requests/${issued.body.id}/revoke`)).status).toBe(200);
    expect((await h.call('GET', '/healthz')).status).toBe(200);
    expect((await h.call('GET', '/metrics')).status).toBe(200);
    expect((await h.call('GET', '/metrics')).status).toBe(200);
  } finally {
    Object.assign(proto, originals);
  }
});
afterAll(async () => {
  await h.close();
});

/** Partial indexes whose every entry is a row the scanning statement reads: scanning them costs what they hold, and that is the answer. */
const PARTIAL_INDEX_SCANS = ['webhook_outbox_unresolved'];

it('runs every hot-path statement through an index', () => {
  const { db } = h;
  const plans: string[] = [];
  const scans: string[] = [];
  for (const { source, args } of recorded.values()) {
    if (!/^\s*(SELECT|UPDATE|DELETE|INSERT|WITH)/i.test(source)) continue;
    const steps = db.prepare(`EXPLAIN QUERY PLAN ${source}`).all(...args) as { detail: string }[];
    plans.push(`${source.replace(/\s+/g, ' ').slice(0, 140)}\n    ${steps.map((s) => s.detail).join('\n    ')}`);
    // A full SCAN of a table or index is what must not happen; scanning a
    // constant row or a subquery's (bounded) result is fine, and so is a
    // temp b-tree sorting the rows an index search found.
    // A partial index that holds only the rows the statement wants (outbox rows awaiting an address) may be scanned.
    for (const s of steps) if (/^SCAN (?!CONSTANT ROW|\()/.test(s.detail) && !PARTIAL_INDEX_SCANS.some((i) => s.detail.endsWith(`USING INDEX ${i}`))) scans.push(`${s.detail}  <=  ${source.replace(/\s+/g, ' ')}`);
  }
  expect(plans.length).toBeGreaterThan(20);
  expect(scans, plans.join('\n')).toEqual([]);
});

it('reads the rate limit, pending count and policy references from their indexes', () => {
  const plan = (sql: string, ...args: unknown[]) =>
    (h.db.prepare(`EXPLAIN QUERY PLAN ${sql}`).all(...args) as { detail: string }[]).map((s) => s.detail).join(' | ');
  // The agent's newest event number, then the one n - 1 below it: two lookups in the primary key, whatever the limit.
  expect(plan(`SELECT at FROM rate_events WHERE agent_id = ? AND at > ? AND seq = (SELECT MAX(seq) FROM rate_events WHERE agent_id = ?) - ?`, 'a', 0, 'a', 59)).toMatch(
    /^SEARCH rate_events USING INDEX sqlite_autoindex_rate_events_1 \(agent_id=\? AND seq=\?\) \| SCALAR SUBQUERY 1 \| SEARCH rate_events USING COVERING INDEX sqlite_autoindex_rate_events_1 \(agent_id=\?\)$/,
  );
  expect(plan(`SELECT COUNT(*) FROM requests WHERE agent_id = ? AND status = 'pending'`, 'a')).toMatch(/USING (COVERING )?INDEX requests_agent_pending/);
  expect(plan(`SELECT COUNT(*) FROM credentials WHERE vault_policy = ? AND state IN ('minting', 'live', 'ending') AND id != ?`, 'p', 'c')).toMatch(
    /USING INDEX credentials_policy_holders \(vault_policy=\?\)/,
  );
});

it('runs every statement of the periodic sweep through an index (it settles stale mints every pass)', async () => {
  const { db } = h;
  const proto = Object.getPrototypeOf(db.prepare('SELECT 1')) as Record<string, (...args: unknown[]) => unknown>;
  const originals = Object.fromEntries(['run', 'get', 'all', 'iterate'].map((m) => [m, proto[m]!]));
  const swept = new Map<string, unknown[]>();
  for (const [name, fn] of Object.entries(originals)) {
    proto[name] = function (this: { source: string }, ...args: unknown[]) {
      if (!swept.has(this.source)) swept.set(this.source, args);
      return fn.apply(this, args);
    };
  }
  try {
    await sweep(h.broker.deps);
  } finally {
    Object.assign(proto, originals);
  }
  const scans: string[] = [];
  for (const [source, args] of swept) {
    if (!/^\s*(SELECT|UPDATE|DELETE|INSERT|WITH)/i.test(source)) continue;
    for (const s of db.prepare(`EXPLAIN QUERY PLAN ${source}`).all(...args) as { detail: string }[]) {
      if (/^SCAN (?!CONSTANT ROW|\()/.test(s.detail)) scans.push(`${s.detail}  <=  ${source.replace(/\s+/g, ' ')}`);
    }
  }
  // The minting rows (the mints under way, a handful), each then checked against its node's lease or the stale bound.
  const minting = [...swept.keys()].find((sql) => sql.includes(`state IN ('minting', 'ending', 'abandoned') AND state = ?`));
  expect(minting, [...swept.keys()].join('\n')).toBeDefined();
  expect([...swept.keys()].some((sql) => sql.includes(`r.decided_by = 'policy' AND r.created_at < ?`))).toBe(true);
  expect(scans).toEqual([]);
  const plan = (sql: string, ...args: unknown[]) =>
    (db.prepare(`EXPLAIN QUERY PLAN ${sql}`).all(...args) as { detail: string }[]).map((s) => s.detail).join(' | ');
  expect(plan(minting!, 'minting', 10)).toMatch(/SEARCH credentials USING INDEX credentials_unsettled \(state=\?\)/);
  expect(plan('SELECT name, holder, expires_at, acquired_at FROM leases WHERE name = ?', 'node:x')).toMatch(/SEARCH leases USING INDEX sqlite_autoindex_leases_1 \(name=\?\)/);
});
