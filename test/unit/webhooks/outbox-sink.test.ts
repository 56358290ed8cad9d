import { beforeEach, describe, expect, it } from 'vitest';
import { decideRequest } from '../../../src/broker/decide.ts';
import { createStorageDeps } from '../../../src/create-deps.ts';
import { openSqliteStorage, sqliteDatabase, type Db } from '../../../src/storage/sqlite/index.ts';
import type { Storage } from '../../../src/storage/storage.ts';
import { addressUnresolved } from '../../../src/webhooks/outbox.ts';
import { createAuditLog } from '../../../src/broker/audit.ts';
import { ManualClock } from '../../../src/lib/clock.ts';
import { createIdGenerator } from '../../../src/lib/ids.ts';
import { createOutboxSink, resolveTargetUrl, type OutboxRow, type TargetKind } from '../../../src/webhooks/outbox.ts';
import { renderEventBody, type EventFacts } from '../../../src/webhooks/payloads.ts';
import { DecisionEvent, OpenClawAgentBody } from '../../../src/wire/events.ts';
import { HOOKS_TOKEN, captureLogger, insertRequest, policiesWith, testConfig } from './helpers.ts';

const OPENCLAW_ENV = { OPENCLAW_HOOKS_URL: 'http://127.0.0.1:18789/hooks', OPENCLAW_HOOKS_TOKEN: HOOKS_TOKEN };
const POLICIES = policiesWith({
  moltbot: { kind: 'openclaw' },
  tuned: { kind: 'openclaw', agentId: 'main', sessionMode: 'persistent' },
  own: { kind: 'openclaw', url: 'http://10.0.0.5:18789/hooks' },
  ci: { kind: 'standard', url: 'https://ci.example.net/jit-events' },
  quiet: undefined,
});

let storage: Storage;
let db: Db;
let clock: ManualClock;
let logs: ReturnType<typeof captureLogger>;
let notified: number;

function sink() {
  return createOutboxSink({ storage, policies: POLICIES, ids: createIdGenerator(() => clock.now()), log: logs.log, notify: () => notified++ });
}
const rows = () => db.prepare('SELECT * FROM webhook_outbox ORDER BY created_at, id').all() as OutboxRow[];
/** What the dispatcher of a service configured with `env` sends for a row: its URL and body. */
function sent(row: OutboxRow, env: Record<string, string> = OPENCLAW_ENV) {
  const config = testConfig(env);
  return { url: resolveTargetUrl(row, config).url, body: JSON.parse(renderEventBody(JSON.parse(row.body) as EventFacts, row.target as TargetKind, config.publicUrl)) };
}

beforeEach(() => {
  storage = openSqliteStorage(':memory:');
  db = sqliteDatabase(storage);
  clock = new ManualClock();
  logs = captureLogger();
  notified = 0;
});

describe('outbox sink: OpenClaw target', () => {
  it('writes a pending row of facts, sent to {OPENCLAW_HOOKS_URL}/agent with the SPEC body', async () => {
    const r = await insertRequest(storage);
    await storage.transaction((tx) => sink().record(tx, r, 'approved', clock.now()));
    const [row] = rows();
    expect(row).toMatchObject({
      request_id: r.id,
      type: 'jit.request.approved',
      target: 'openclaw',
      url: null,
      url_source: 'config',
      body_format: 'facts',
      session_key: 'hook:jit:moltbot',
      state: 'pending',
      attempts: 0,
      next_attempt_at: clock.now(),
    });
    expect(row!.id).toMatch(/^evt_[0-9a-z]{26}$/);
    expect(sent(row!).url).toBe('http://127.0.0.1:18789/hooks/agent');
    const { body } = sent(row!);
    expect(Object.keys(body).sort()).toEqual(['deliver', 'message', 'name', 'sessionKey', 'wakeMode']);
    expect(OpenClawAgentBody.strict().safeParse(body).error).toBeUndefined();
    expect(body).toMatchObject({ name: 'JIT broker', sessionKey: 'hook:jit:moltbot', wakeMode: 'now', deliver: false });
    expect(notified).toBe(1);
  });

  it('states request id, outcome, grant, deadline and the exact claim call (token as a placeholder) for approvals', async () => {
    const r = await insertRequest(storage);
    await storage.transaction((tx) => sink().record(tx, r, 'approved', clock.now()));
    const { message } = sent(rows()[0]!).body as { message: string };
    expect(message).toContain(r.id);
    expect(message).toContain('APPROVED by telegram:1234');
    expect(message).toContain('homelab/data/docker/registry [read, update]');
    expect(message).toContain('valid for 30m from the claim');
    expect(message).toContain(`Claim it before ${new Date(r.claim_expires_at!).toISOString()}`);
    expect(message).toContain(`curl -sS -X POST -H "Authorization: Bearer $JIT_AGENT_TOKEN" https://jit.example.net/jit/requests/${r.id}/claim`);
  });

  it.each([
    ['denied', { status: 'denied', decision_reason: 'not during the freeze' }, /DENIED by telegram:1234.*"not during the freeze"[\s\S]*Nothing was granted/],
    ['timed_out', { status: 'timed_out', decided_by: 'timeout' }, /TIMED OUT[\s\S]*Nothing was granted/],
    ['revoked', { status: 'revoked' }, /REVOKED[\s\S]*can no longer be claimed/],
    ['expired', { status: 'expired' }, /approval EXPIRED[\s\S]*not claimed in time/],
  ] as const)('describes %s outcomes without a claim call', async (type, over, pattern) => {
    const r = await insertRequest(storage, over);
    await storage.transaction((tx) => sink().record(tx, r, type, clock.now()));
    const { message } = sent(rows()[0]!).body as { message: string };
    expect(message).toMatch(pattern);
    expect(message).not.toContain('/claim');
  });

  it('passes agentId and sessionMode from the policy, and uses a policy URL over OPENCLAW_HOOKS_URL', async () => {
    const a = await insertRequest(storage, { agent_name: 'tuned', session_key: 'hook:jit:tuned' });
    const b = await insertRequest(storage, { agent_name: 'own', session_key: 'hook:jit:own' });
    await storage.transaction(async (tx) => {
      await sink().record(tx, a, 'denied', clock.now());
      await sink().record(tx, b, 'denied', clock.now());
    });
    const tuned = rows().find((r) => r.request_id === a.id);
    const own = rows().find((r) => r.request_id === b.id);
    expect(sent(tuned!).body).toMatchObject({ agentId: 'main', sessionMode: 'persistent' });
    expect(own).toMatchObject({ url: 'http://10.0.0.5:18789/hooks/agent', url_source: 'policy' });
    expect(sent(own!).url).toBe('http://10.0.0.5:18789/hooks/agent');
  });

  it('needs no configuration: the row is the same whatever the writer\'s environment; the sender\'s decides URL and public URL', async () => {
    const r = await insertRequest(storage);
    await storage.transaction((tx) => sink().record(tx, r, 'approved', clock.now()));
    const [row] = rows();
    expect(row).toMatchObject({ state: 'pending', url: null, last_error: null });
    expect(notified).toBe(1);
    const elsewhere = sent(row!, { OPENCLAW_HOOKS_URL: 'http://10.1.2.3:18789/hooks', JIT_PUBLIC_URL: 'https://broker.internal' });
    expect(elsewhere.url).toBe('http://10.1.2.3:18789/hooks/agent');
    expect(elsewhere.body.message).toContain(`https://broker.internal/jit/requests/${r.id}/claim`);
    expect(resolveTargetUrl(row!, testConfig({})).problem).toMatch(/OPENCLAW_HOOKS_URL is not set in the service's environment/);
  });
});

describe('outbox sink: standard target and routing', () => {
  it('writes the generic JSON event for a standard target', async () => {
    const r = await insertRequest(storage, { agent_name: 'ci', session_key: 'hook:jit:ci' });
    await storage.transaction((tx) => sink().record(tx, r, 'approved', clock.now()));
    const [row] = rows();
    expect(row).toMatchObject({ target: 'standard', url: 'https://ci.example.net/jit-events', url_source: 'policy' });
    // The body is what the wire contract (and /openapi.json's webhooks) says, with no field beyond it.
    expect(DecisionEvent.strict().safeParse(sent(row!).body).error).toBeUndefined();
    expect(sent(row!).body).toEqual({
      type: 'jit.request.approved',
      id: row!.id,
      request_id: r.id,
      agent: 'ci',
      session_key: 'hook:jit:ci',
      status: 'approved',
      resource: 'vault',
      tier: 2,
      required_tier: 2,
      scope: { vault_paths: [{ path: 'homelab/data/docker/registry', capabilities: ['read', 'update'] }] },
      ttl_seconds: 1800,
      // Approved as asked (no stored grant): granted equals the request.
      granted: { vault_paths: [{ path: 'homelab/data/docker/registry', capabilities: ['read', 'update'] }], ttl_seconds: 1800 },
      narrowed: false,
      decided_by: 'telegram:1234',
      decided_at: new Date(r.decided_at!).toISOString(),
      reason: null,
      claim: { method: 'POST', url: `https://jit.example.net/jit/requests/${r.id}/claim`, expires_at: new Date(r.claim_expires_at!).toISOString() },
      occurred_at: new Date(clock.now()).toISOString(),
    });
  });

  it('gate requests carry repo and refs as scope', async () => {
    const r = await insertRequest(storage, { agent_name: 'ci', resource: 'gate', status: 'denied', scope: JSON.stringify({ repo: 'homelab/infra', refs: ['refs/heads/agent/x'] }) });
    await storage.transaction((tx) => sink().record(tx, r, 'denied', clock.now()));
    const { body } = sent(rows()[0]!);
    expect(body.scope).toEqual({ repo: 'homelab/infra', refs: ['refs/heads/agent/x'] });
    expect(body.claim).toBeUndefined();
  });

  it('writes no row for an agent without a webhook, or one not in policy', async () => {
    await storage.transaction(async (tx) => {
      await sink().record(tx, await insertRequest(tx, { agent_name: 'quiet' }), 'approved', clock.now());
      await sink().record(tx, await insertRequest(tx, { agent_name: 'ghost' }), 'approved', clock.now());
    });
    expect(rows()).toEqual([]);
  });

  it('stores one event per request and outcome even if recorded twice', async () => {
    const r = await insertRequest(storage);
    await storage.transaction(async (tx) => {
      await sink().record(tx, r, 'approved', clock.now());
      await sink().record(tx, r, 'approved', clock.now());
    });
    expect(rows()).toHaveLength(1);
  });

  it('strips credentials from a webhook URL and dead-letters the event instead of storing them', async () => {
    const policies = policiesWith({ ci: { kind: 'standard', url: 'https://user:s3cretpw@ci.example.net/hook' } });
    const s = createOutboxSink({ storage, policies, ids: createIdGenerator(), log: logs.log });
    const r = await insertRequest(storage, { agent_name: 'ci' });
    await storage.transaction((tx) => s.record(tx, r, 'denied', clock.now()));
    await storage.transaction((tx) => s.record(tx, r, 'denied', clock.now()));
    const [row] = rows();
    expect(row!.state).toBe('dead');
    expect(JSON.stringify(row)).not.toContain('s3cretpw');
  });
});

describe('outbox sink: transactions', () => {
  it('writes in the caller\'s transaction: if it throws after record(), no row exists', async () => {
    const r = await insertRequest(storage);
    await expect(
      storage.transaction(async (tx) => {
        await sink().record(tx, r, 'approved', clock.now());
        expect(rows()).toHaveLength(1);
        throw new Error('later step failed');
      }),
    ).rejects.toThrow('later step failed');
    expect(rows()).toEqual([]);
    expect(notified).toBe(0);
  });

  it('wakes the dispatcher only once the row is committed, never for a rolled-back one', async () => {
    const r = await insertRequest(storage);
    await expect(
      storage.transaction(async (tx) => {
        await sink().record(tx, r, 'approved', clock.now());
        throw new Error('later step failed');
      }),
    ).rejects.toThrow('later step failed');
    expect(notified).toBe(0);

    // The dispatcher claims from the database: when woken, it must find the row committed.
    let seenAtWake: number | undefined;
    const waking = createOutboxSink({ storage, policies: POLICIES, ids: createIdGenerator(() => clock.now()), log: logs.log, notify: () => (seenAtWake = rows().length) });
    await storage.transaction(async (tx) => {
      await waking.record(tx, r, 'approved', clock.now());
      expect(seenAtWake).toBeUndefined();
    });
    expect(seenAtWake).toBe(1);
  });

  it('is written by the real decide verb together with the decision', async () => {
    const config = testConfig(OPENCLAW_ENV);
    const ids = createIdGenerator(() => clock.now());
    const events = createOutboxSink({ storage, policies: POLICIES, ids, log: logs.log });
    const deps = createStorageDeps({ config, storage, clock, ids, events });
    const r = await insertRequest(storage, { status: 'pending', decided_by: null, decided_at: null, claim_expires_at: null, approval_expires_at: clock.now() + 60_000 });
    const out = await decideRequest(deps, r.id, { approver: 'local-cli', decision: 'approve' });
    expect(out.outcome).toBe('approved');
    const [row] = await storage.outbox.list();
    expect(row).toMatchObject({ request_id: r.id, type: 'jit.request.approved', state: 'pending' });
    expect((await storage.requests.get(r.id))!.status).toBe('approved');
  });

  it('never writes the OpenClaw token into a row', async () => {
    await storage.transaction(async (tx) => {
      for (const type of ['approved', 'denied', 'revoked'] as const) await sink().record(tx, await insertRequest(tx), type, clock.now());
    });
    expect(JSON.stringify(rows())).not.toContain(HOOKS_TOKEN);
  });
});

describe('outbox sink without a policy (a revocation while the policy files are invalid)', () => {
  const unaddressed = () => createOutboxSink({ storage, policies: undefined, ids: createIdGenerator(() => clock.now()), log: logs.log });

  it('writes the facts unresolved; the service addresses each from its policy as if written with it, or drops it when the agent has none', async () => {
    const tuned = await insertRequest(storage, { agent_name: 'tuned', status: 'revoked' });
    const ci = await insertRequest(storage, { agent_name: 'ci', status: 'revoked' });
    const quiet = await insertRequest(storage, { agent_name: 'quiet', status: 'revoked' });
    await storage.transaction(async (tx) => {
      for (const r of [tuned, ci, quiet]) await unaddressed().record(tx, r, 'revoked', clock.now());
    });
    const written = rows();
    expect(written.map((r) => [r.target, r.url, r.state])).toEqual(Array(3).fill(['unresolved', null, 'pending']));
    const idOf = (r: { id: string }) => written.find((w) => w.request_id === r.id)!.id;
    // Not sent while unresolved.
    expect((await storage.outbox.claim({ now: clock.now(), dueBy: clock.now(), owner: 'o', leaseUntil: clock.now() + 1000, limit: 1 }))[0]).toBeUndefined();

    const done = await storage.transaction((tx) => addressUnresolved(tx, createAuditLog(storage), POLICIES.current(), clock.now()));
    expect({ ...done, addressed: [...done.addressed].sort() }).toEqual({ addressed: [idOf(tuned), idOf(ci)].sort(), dropped: [idOf(quiet)], dead: [] });
    expect(rows().find((r) => r.request_id === quiet.id)).toBeUndefined();
    const t = rows().find((r) => r.request_id === tuned.id);
    const c = rows().find((r) => r.request_id === ci.id);
    expect(t).toMatchObject({ id: idOf(tuned), target: 'openclaw', url: null, url_source: 'config', state: 'pending' });
    expect(c).toMatchObject({ id: idOf(ci), target: 'standard', url: 'https://ci.example.net/jit-events', url_source: 'policy', state: 'pending' });
    // The same as the sink with the policy writes.
    const direct = await insertRequest(storage, { agent_name: 'tuned', status: 'revoked' });
    await storage.transaction((tx) => sink().record(tx, direct, 'revoked', clock.now()));
    const withPolicy = rows().find((r) => r.request_id === direct.id)!;
    const strip = (body: Record<string, unknown>) => JSON.stringify(body).replaceAll(direct.id, 'REQ').replaceAll(tuned.id, 'REQ');
    expect(strip(sent(t!).body)).toBe(strip(sent(withPolicy).body));
    expect(sent(t!).body).toMatchObject({ agentId: 'main', sessionMode: 'persistent' });
  });
});
