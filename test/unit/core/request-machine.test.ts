import { beforeEach, describe, expect, it } from 'vitest';
import type { DecisionEventType } from '../../../src/broker/events.ts';
import type { RequestRow, RequestStatus } from '../../../src/broker/rows.ts';
import {
  MOVES,
  TRANSITIONS,
  approve,
  assertMove,
  create,
  deny,
  expireIssued,
  expireUnclaimed,
  failUnissued,
  markIssued,
  revoke,
  timeOut,
  type MachineTx,
  type MoveName,
} from '../../../src/broker/request-machine.ts';
import { statusChangeOf } from '../../../src/broker/request-stream.ts';
import { createStorageDeps, type StorageDeps } from '../../../src/create-deps.ts';
import { openSqliteStorage, sqliteDatabase, type Db } from '../../../src/storage/sqlite/index.ts';
import type { Storage, Transaction } from '../../../src/storage/storage.ts';
import { ManualClock } from '../../../src/lib/clock.ts';
import { insertRequest, testConfig } from '../webhooks/helpers.ts';

const STATUSES = Object.keys(TRANSITIONS) as RequestStatus[];
const MOVE_NAMES = Object.keys(MOVES) as MoveName[];
/** Where a request starts: inserted pending, or approved by a tier-1 rule (request-credential.ts). */
const INITIAL: RequestStatus[] = ['pending', 'approved'];

describe('the request state machine table', () => {
  it('has every allowed change made by a named move, and no named move outside the table', () => {
    const allowed = STATUSES.flatMap((from) => TRANSITIONS[from].map((to) => `${from}->${to}`)).sort();
    const made = [...new Set(MOVE_NAMES.flatMap((m) => MOVES[m].from.map((from) => `${from}->${MOVES[m].to}`)))].sort();
    expect(made).toEqual(allowed);
  });

  it('reaches every status from where requests start', () => {
    const reached = new Set<RequestStatus>(INITIAL);
    for (let grew = true; grew; ) {
      grew = false;
      for (const from of [...reached]) for (const to of TRANSITIONS[from]) if (!reached.has(to)) (reached.add(to), (grew = true));
    }
    expect([...reached].sort()).toEqual([...STATUSES].sort());
  });

  it('accepts each named move from each of its statuses', () => {
    for (const m of MOVE_NAMES) for (const from of MOVES[m].from) expect(() => assertMove(m, from, MOVES[m].to)).not.toThrow();
  });

  it('throws on any change a named move does not make (a programming error, not a lost race)', () => {
    let refused = 0;
    for (const m of MOVE_NAMES) {
      for (const from of STATUSES) {
        for (const to of STATUSES) {
          const named = MOVES[m] as { from: readonly RequestStatus[]; to: RequestStatus };
          if (named.from.includes(from) && named.to === to) continue;
          expect(() => assertMove(m, from, to), `${m}: ${from} -> ${to}`).toThrow(/request state machine/);
          refused++;
        }
      }
    }
    expect(refused).toBe(MOVE_NAMES.length * STATUSES.length ** 2 - MOVE_NAMES.reduce((n, m) => n + MOVES[m].from.length, 0));
  });

  it('leaves the final statuses with no way out', () => {
    for (const s of ['denied', 'timed_out', 'expired', 'revoked', 'failed'] as const) expect(TRANSITIONS[s]).toEqual([]);
  });
});

describe('the named moves, on a database', () => {
  let storage: Storage;
  let db: Db;
  let deps: StorageDeps;
  let recorded: { id: string; type: DecisionEventType; status: RequestStatus }[];
  const clock = new ManualClock(Date.UTC(2026, 0, 1));
  beforeEach(() => {
    storage = openSqliteStorage(':memory:');
    db = sqliteDatabase(storage);
    recorded = [];
    deps = createStorageDeps({
      config: testConfig(),
      storage,
      clock,
      events: { record: async (_tx: Transaction, request: RequestRow, type: DecisionEventType) => void recorded.push({ id: request.id, type, status: request.status }) },
    });
  });

  const statusOf = async (id: string) => (await storage.requests.get(id))!.status;
  const eventsOf = (id: string) => db.prepare('SELECT event FROM audit_log WHERE request_id = ? ORDER BY seq').pluck().all(id) as string[];
  const inTx = <T>(fn: (tx: Transaction) => Promise<T>): Promise<T> => storage.transaction(fn);

  /** A request in `from`; an issued one gets a live credential. */
  async function requestIn(from: RequestStatus): Promise<string> {
    const row = await insertRequest(storage, { status: from, idempotency_key: 'k-1', body_hash: 'h' });
    if (from === 'issued') {
      const now = clock.now();
      await storage.credentials.insert({ id: `cred_${row.id}`, request_id: row.id, type: 'vault_token', state: 'live', vault_policy: null, accessor: 'acc', jti: null, issued_at: now, expires_at: now + 1 });
    }
    return row.id;
  }

  type Case = { move: MoveName; from: RequestStatus; run: (m: MachineTx, tx: Transaction, id: string, now: number) => Promise<boolean>; audit: string; event: DecisionEventType | null };
  const decision = { decidedBy: 'local-cli', actor: 'local-cli', reason: 'ok', data: { approvers: 'local-cli' } };
  const cases: Case[] = [
    { move: 'approve', from: 'pending', run: (m, tx, id, now) => approve(m, tx, id, now, { ...decision, claimExpiresAt: now + 60_000 }), audit: 'request.approved', event: 'approved' },
    { move: 'deny', from: 'pending', run: (m, tx, id, now) => deny(m, tx, id, now, decision), audit: 'request.denied', event: 'denied' },
    { move: 'timeOut', from: 'pending', run: (m, tx, id, now) => timeOut(m, tx, id, now, { approval_expires_at: now }), audit: 'request.timed_out', event: 'timed_out' },
    { move: 'expireUnclaimed', from: 'approved', run: (m, tx, id, now) => expireUnclaimed(m, tx, { id, claim_expires_at: now }, now), audit: 'request.expired', event: 'expired' },
    { move: 'markIssued', from: 'approved', run: (m, tx, id, now) => markIssued(m, tx, id, now, { credential_id: 'cred_x' }), audit: 'credential.issued', event: null },
    {
      move: 'failUnissued',
      from: 'approved',
      run: (m, tx, id, now) => failUnissued(m, tx, id, now, 'vault down', { event: 'request.failed', data: { code: 'VAULT_UNAVAILABLE' } }),
      audit: 'request.failed',
      event: null,
    },
    ...(['pending', 'approved', 'issued'] as const).map(
      (from): Case => ({ move: 'revoke', from, run: (m, tx, id, now) => revoke(m, tx, id, from, now, { actor: 'operator', reason: 'r', data: {} }), audit: 'request.revoked', event: 'revoked' }),
    ),
    { move: 'expireIssued', from: 'issued', run: async (m, tx, id, now) => expireIssued(m, tx, (await tx.credentials.forRequest(id))!, now, 'expired'), audit: 'credential.expired', event: 'expired' },
  ];

  it('create inserts a request pending (tier 2, 3) or approved by policy (tier 1), with its entries and no decision event', async () => {
    const auditOf = (id: string) =>
      (db.prepare('SELECT event, actor, data FROM audit_log WHERE request_id = ? ORDER BY seq').all(id) as { event: string; actor: string; data: string }[]).map((e) => ({ ...e, data: JSON.parse(e.data) as unknown }));
    const scope = { vault_paths: [{ path: 'homelab/data/docker/registry', capabilities: ['read'] }] };
    const rules = ['homelab-read'];
    const row = (id: string, tier: 1 | 2, status: RequestStatus): RequestRow => {
      const now = clock.now();
      return {
        id, agent_id: 'agt_x', agent_name: 'moltbot', resource: 'vault', tier, required_tier: tier, status, reason: 'r', scope: JSON.stringify(scope),
        ttl_seconds: 900, session_key: 'hook:jit:moltbot', rules: JSON.stringify(rules), idempotency_key: null, body_hash: null, created_at: now, updated_at: now,
        approval_expires_at: tier === 1 ? null : now + 600_000, claim_expires_at: null, decided_by: tier === 1 ? 'policy' : null, decided_at: tier === 1 ? now : null,
        decision_reason: null, failure: null,
      };
    };
    const created = (tier: number) =>
      ({ agent: 'moltbot', resource: 'vault', tier, required_tier: tier, scope, ttl_seconds: 900, rules, session_key: 'hook:jit:moltbot' });
    await inTx((tx) => create(deps, tx, row('req_1', 1, 'approved'), { actor: 'agent:moltbot', scope, rules }));
    await inTx((tx) => create(deps, tx, row('req_2', 2, 'pending'), { actor: 'agent:moltbot', scope, rules }));
    expect(await statusOf('req_1')).toBe('approved');
    expect(await statusOf('req_2')).toBe('pending');
    expect(auditOf('req_1')).toEqual([
      { event: 'request.created', actor: 'agent:moltbot', data: created(1) },
      { event: 'request.approved', actor: 'policy', data: { tier: 1, rules } },
    ]);
    expect(auditOf('req_2')).toEqual([{ event: 'request.created', actor: 'agent:moltbot', data: created(2) }]);
    expect(recorded).toEqual([]);
    // A request starts where its tier says, nowhere else: a bug in the caller, so it throws and writes nothing.
    await expect(inTx((tx) => create(deps, tx, row('req_3', 2, 'approved'), { actor: 'agent:moltbot', scope, rules }))).rejects.toThrow(/tier-2 request cannot be created approved/);
    await expect(inTx((tx) => create(deps, tx, row('req_4', 1, 'pending'), { actor: 'agent:moltbot', scope, rules }))).rejects.toThrow(/tier-1 request cannot be created pending/);
    expect(await storage.requests.get('req_3')).toBeUndefined();
  });

  it('covers every named move from every status it leaves', () => {
    expect(cases.map((c) => `${c.move}:${c.from}`).sort()).toEqual(MOVE_NAMES.flatMap((m) => MOVES[m].from.map((f) => `${m}:${f}`)).sort());
  });

  describe.each(cases)('$move from $from', ({ move, from, run, audit, event }) => {
    it(`moves the request to its table status with its audit entry and decision event, once`, async () => {
      const id = await requestIn(from);
      expect(await inTx((tx) => run(deps, tx, id, clock.now()))).toBe(true);
      expect(await statusOf(id)).toBe(MOVES[move].to);
      expect(eventsOf(id)).toEqual([audit]);
      expect(recorded).toEqual(event ? [{ id, type: event, status: MOVES[move].to }] : []);
      // The decision stream reads the move back from its audit entry.
      expect(statusChangeOf({ event: audit }, (await storage.requests.get(id))!)).toBe(MOVES[move].to);
      // A second caller loses the race: nothing changes and nothing more is written.
      expect(await inTx((tx) => run(deps, tx, id, clock.now()))).toBe(false);
      expect(await statusOf(id)).toBe(MOVES[move].to);
      expect(eventsOf(id)).toEqual([audit]);
      expect(recorded).toHaveLength(event ? 1 : 0);
    });
  });

  it('the decision stream maps entries that move a request only sometimes by the status the request is in', () => {
    const failed = { status: 'failed', required_tier: 1 } as const;
    const approved = { status: 'approved', required_tier: 2 } as const;
    // settleInterruptedIssues: a tier-1 request failed with its interrupted credential; a tier-2 one stays approved.
    expect(statusChangeOf({ event: 'credential.interrupted' }, failed)).toBe('failed');
    expect(statusChangeOf({ event: 'credential.interrupted' }, approved)).toBeUndefined();
    expect(statusChangeOf({ event: 'credential.expired' }, approved)).toBeUndefined();
    // A tier-1 request is born approved (its request.approved follows); a tier-2 one pending.
    expect(statusChangeOf({ event: 'request.created' }, { status: 'issued', required_tier: 1 })).toBeUndefined();
    expect(statusChangeOf({ event: 'request.created' }, { status: 'issued', required_tier: 2 })).toBe('pending');
    for (const e of ['vote.cast', 'webhook.delivered', 'grant.narrowed', 'credential.abandoned']) expect(statusChangeOf({ event: e }, approved), e).toBeUndefined();
  });

  it('failUnissued frees the Idempotency-Key of the failed request', async () => {
    const id = await requestIn('approved');
    await inTx((tx) => failUnissued(deps, tx, id, clock.now(), 'vault down', null));
    expect(await storage.requests.get(id)).toMatchObject({ status: 'failed', failure: 'vault down', idempotency_key: null, body_hash: null });
    expect(eventsOf(id)).toEqual([]);
  });

  it('expireIssued ends the live credential; on a credential no longer live it changes nothing', async () => {
    const id = await requestIn('issued');
    const cred = (await storage.credentials.forRequest(id))!;
    expect(await inTx((tx) => expireIssued(deps, tx, cred, clock.now(), 'vanished'))).toBe(true);
    expect(await storage.credentials.forRequest(id)).toMatchObject({ state: 'ending', end_reason: 'token no longer in Vault' });
    expect(eventsOf(id)).toEqual(['credential.vanished']);
    expect(statusChangeOf({ event: 'credential.vanished' }, (await storage.requests.get(id))!)).toBe('expired');
    expect(await inTx((tx) => expireIssued(deps, tx, cred, clock.now(), 'expired'))).toBe(false);
    expect(eventsOf(id)).toEqual(['credential.vanished']);
  });
});
