import { PolicyStore } from '../../../src/broker/policy/policy-store.ts';
import type { AgentPolicy, WebhookTarget } from '../../../src/broker/policy/types.ts';
import type { RequestRow } from '../../../src/broker/rows.ts';
import { loadConfig, type Config } from '../../../src/config/config.ts';
import type { Storage } from '../../../src/storage/storage.ts';
import type { OutboxRow } from '../../../src/webhooks/outbox.ts';
export { captureLogger } from '../../helpers/log-capture.ts';

export const HOOKS_TOKEN = 'hook-token-5f2c9a7e1d3b4c6a8e0f';

/** A policy store with the given agents and their webhook targets (no rules needed here). */
export function policiesWith(agents: Record<string, WebhookTarget | undefined>): PolicyStore {
  const map = new Map<string, AgentPolicy>();
  for (const [name, webhook] of Object.entries(agents)) {
    map.set(name, { name, sessions: [`hook:jit:${name}*`], defaultSession: `hook:jit:${name}`, ...(webhook ? { webhook } : {}) });
  }
  return new PolicyStore({ agents: map, rules: [], deny: [], files: [] });
}

export function testConfig(env: Record<string, string> = {}): Config {
  return loadConfig({ JIT_DB: ':memory:', JIT_PUBLIC_URL: 'https://jit.example.net', ...env });
}

let seq = 0;
/** Inserts a request row (as the broker would have) and returns it. */
export async function insertRequest(storage: Pick<Storage, 'requests'>, over: Partial<RequestRow> = {}): Promise<RequestRow> {
  seq++;
  const now = over.created_at ?? Date.UTC(2026, 0, 1);
  const row: RequestRow = {
    id: `req_${String(seq).padStart(26, '0')}`,
    agent_id: 'agt_x',
    agent_name: 'moltbot',
    resource: 'vault',
    tier: 2,
    required_tier: 2,
    status: 'approved',
    reason: 'rotate the registry password',
    scope: JSON.stringify({ vault_paths: [{ path: 'homelab/data/docker/registry', capabilities: ['read', 'update'] }] }),
    ttl_seconds: 1800,
    session_key: 'hook:jit:moltbot',
    rules: JSON.stringify(['homelab-write']),
    idempotency_key: null,
    body_hash: null,
    created_at: now,
    updated_at: now,
    approval_expires_at: now + 600_000,
    claim_expires_at: now + 600_000,
    decided_by: 'telegram:1234',
    decided_at: now,
    decision_reason: null,
    failure: null,
    ...over,
  };
  await storage.requests.insert(row);
  return row;
}

let events = 0;
/** A pending standard event for `url`, due at `due`; returns its id. */
export async function insertEvent(storage: Storage, url: string | null, due: number): Promise<string> {
  const id = `evt_${String(++events).padStart(4, '0')}`;
  const request = await insertRequest(storage);
  await storage.outbox.insert({
    id, request_id: request.id, type: 'jit.request.approved', target: 'standard', url, url_source: 'policy', session_key: null,
    body_format: 'rendered', body: '{}', state: 'pending', next_attempt_at: due, last_error: null, created_at: due,
  });
  return id;
}

/** `count` events for `url`, leased by one claim at `now` (state `delivering`), as the dispatcher holds them while sending. */
export async function insertLeased(storage: Storage, count: number, url: string, now: number): Promise<OutboxRow[]> {
  for (let i = 0; i < count; i++) await insertEvent(storage, url, now);
  return storage.outbox.claim({ now, dueBy: now, owner: `owner-${events}`, leaseUntil: now + 60_000, limit: count });
}
