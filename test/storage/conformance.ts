import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { StorageUniqueError, TransactionEndedError } from '../../src/storage/errors.ts';
import type { AgentRow, ApproverRow, AuditRow, ChallengeRow, ConsoleSessionRow, EnrolmentRow, PasskeyRow, NewCredentialRow, NewOutboxRow, NewRequestRow, OutboxRow } from '../../src/storage/rows.ts';
import type { Storage } from '../../src/storage/storage.ts';

/*
 * The storage conformance suite: what every engine behind src/storage/
 * must do, written against the interface alone (no SQL here), so the next
 * engine runs the same tests (test/storage/sqlite.test.ts runs SQLite).
 * Each test gets a fresh, migrated, empty database from `open`.
 */

export interface OpenedStorage {
  storage: Storage;
  dispose(): Promise<void>;
}

export const T0 = 1_700_000_000_000;

export function request(id: string, o: Partial<NewRequestRow> = {}): NewRequestRow {
  return {
    id,
    agent_id: 'agt_1',
    agent_name: 'moltbot',
    resource: 'vault',
    tier: 2,
    required_tier: 2,
    status: 'pending',
    reason: 'r',
    scope: '{"vault_paths":[]}',
    ttl_seconds: 600,
    session_key: null,
    rules: '[]',
    idempotency_key: null,
    body_hash: null,
    created_at: T0,
    updated_at: T0,
    approval_expires_at: null,
    claim_expires_at: null,
    decided_by: null,
    decided_at: null,
    decision_reason: null,
    failure: null,
    ...o,
  };
}

export function credential(id: string, requestId: string, o: Partial<NewCredentialRow> = {}): NewCredentialRow {
  return { id, request_id: requestId, type: 'vault_token', state: 'live', vault_policy: null, accessor: null, jti: null, issued_at: T0, expires_at: T0 + 60_000, ...o };
}

function outboxRow(id: string, requestId: string, o: Partial<NewOutboxRow> = {}): NewOutboxRow {
  return {
    id,
    request_id: requestId,
    type: 'jit.request.approved',
    target: 'standard',
    url: 'http://127.0.0.1:1/a',
    url_source: 'policy',
    session_key: null,
    body_format: 'facts',
    body: '{}',
    state: 'pending',
    next_attempt_at: T0,
    last_error: null,
    created_at: T0,
    ...o,
  };
}

function agent(id: string, name: string, o: Partial<AgentRow> = {}): AgentRow {
  return { id, name, token_id: `tok_${id}`, token_hash: 'h', session_key: null, created_at: T0, ...o };
}

function auditRow(seq: number, o: Partial<AuditRow> = {}): AuditRow {
  return { seq, at: T0 + seq, event: 'test.event', actor: 'test', request_id: null, data: '{}', prev_hash: `p${seq}`, hash: `h${seq}`, ...o };
}

const ids = (rows: { id: string }[]) => rows.map((r) => r.id);

/**
 * A transaction that inserts pending `req_a` (`wrote` resolves then), stays
 * open until `release()`, then moves it to approved and commits.
 */
export function transactionHeldOpen(s: Storage): { wrote: Promise<void>; release: () => void; running: Promise<void> } {
  let inserted!: () => void;
  const wrote = new Promise<void>((r) => (inserted = r));
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  const running = s.transaction(async (tx) => {
    await tx.requests.insert(request('req_a'));
    inserted();
    await gate; // test only: a real callback awaits nothing but tx calls
    await tx.requests.move('req_a', 'pending', 'approved', T0 + 1);
  });
  return { wrote, release, running };
}

/** Registers the conformance tests for the storage engine `name`. */
export function describeStorageConformance(name: string, open: () => Promise<OpenedStorage>): void {
  describe(`storage conformance: ${name}`, () => {
    let opened: OpenedStorage;
    let s: Storage;
    beforeEach(async () => {
      opened = await open();
      s = opened.storage;
    });
    afterEach(async () => {
      await opened.dispose();
    });

    describe('requests', () => {
      it('inserts and reads a request back, every field as written', async () => {
        const row = request('req_a', { idempotency_key: 'k', body_hash: 'b', approval_expires_at: T0 + 5, session_key: 'sess' });
        await s.requests.insert(row);
        expect(await s.requests.get('req_a')).toMatchObject(row);
        expect(await s.requests.get('req_missing')).toBeUndefined();
      });

      it('moves a status only from the expected one, setting the given fields and keeping the rest', async () => {
        await s.requests.insert(request('req_a', { decision_reason: 'kept' }));
        expect(await s.requests.move('req_a', 'approved', 'issued', T0 + 1)).toBe(false);
        expect((await s.requests.get('req_a'))!.status).toBe('pending');
        expect(await s.requests.move('req_a', 'pending', 'approved', T0 + 2, { decidedBy: 'alice', decidedAt: T0 + 2, claimExpiresAt: T0 + 100 })).toBe(true);
        const moved = (await s.requests.get('req_a'))!;
        expect(moved).toMatchObject({ status: 'approved', updated_at: T0 + 2, decided_by: 'alice', decided_at: T0 + 2, claim_expires_at: T0 + 100, decision_reason: 'kept', failure: null });
        expect(await s.requests.move('req_a', 'pending', 'denied', T0 + 3)).toBe(false);
        expect(await s.requests.move('req_a', 'approved', 'failed', T0 + 4, { failure: 'f' })).toBe(true);
        expect(await s.requests.get('req_a')).toMatchObject({ status: 'failed', failure: 'f', decided_by: 'alice' });
      });

      it('records a grant on a pending request only', async () => {
        await s.requests.insert(request('req_a'));
        expect(await s.requests.setGrant('req_a', '{"x":1}', 60)).toBe(true);
        expect(await s.requests.get('req_a')).toMatchObject({ granted_scope: '{"x":1}', granted_ttl_seconds: 60 });
        await s.requests.move('req_a', 'pending', 'denied', T0);
        expect(await s.requests.setGrant('req_a', '{"y":1}', 30)).toBe(false);
        expect((await s.requests.get('req_a'))!.granted_scope).toBe('{"x":1}');
      });

      it('finds pending requests past their deadline and approved ones past their claim window, soonest first, within the limit', async () => {
        await s.requests.insert(request('req_late2', { approval_expires_at: T0 + 20 }));
        await s.requests.insert(request('req_late1', { approval_expires_at: T0 + 10 }));
        await s.requests.insert(request('req_late3', { approval_expires_at: T0 + 30 }));
        await s.requests.insert(request('req_future', { approval_expires_at: T0 + 1000 }));
        await s.requests.insert(request('req_none'));
        await s.requests.insert(request('req_apprA', { status: 'approved', claim_expires_at: T0 + 15 }));
        await s.requests.insert(request('req_apprB', { status: 'approved', claim_expires_at: T0 + 5 }));
        await s.requests.insert(request('req_apprC', { status: 'approved', claim_expires_at: T0 + 500 }));
        expect(ids(await s.requests.pendingPastDeadline(T0 + 30, 10))).toEqual(['req_late1', 'req_late2', 'req_late3']);
        expect(ids(await s.requests.pendingPastDeadline(T0 + 30, 2))).toEqual(['req_late1', 'req_late2']);
        expect(ids(await s.requests.approvedPastClaimWindow(T0 + 15, 10))).toEqual(['req_apprB', 'req_apprA']);
        expect(ids(await s.requests.approvedPastClaimWindow(T0 + 15, 1))).toEqual(['req_apprB']);
      });

      it('finds tier-1 requests approved by policy before a time that hold no credential', async () => {
        const t1 = { status: 'approved' as const, decided_by: 'policy', tier: 1 as const, required_tier: 1 as const };
        await s.requests.insert(request('req_orphan', { ...t1, created_at: T0 }));
        await s.requests.insert(request('req_young', { ...t1, created_at: T0 + 100 }));
        await s.requests.insert(request('req_held', { ...t1, created_at: T0 }));
        await s.requests.insert(request('req_failedcred', { ...t1, created_at: T0 }));
        await s.requests.insert(request('req_human', { status: 'approved', decided_by: 'alice', created_at: T0 }));
        await s.credentials.insert(credential('cred_held', 'req_held', { state: 'minting', reserved_at: T0 }));
        await s.credentials.insert(credential('cred_failed', 'req_failedcred', { state: 'failed' }));
        expect(ids(await s.requests.tier1ApprovedWithoutCredential(T0 + 50)).sort()).toEqual(['req_failedcred', 'req_orphan']);
      });

      it('counts an agent\'s pending requests', async () => {
        await s.requests.insert(request('req_1'));
        await s.requests.insert(request('req_2'));
        await s.requests.insert(request('req_3', { status: 'denied' }));
        await s.requests.insert(request('req_4', { agent_id: 'agt_2' }));
        expect(await s.requests.pendingCount('agt_1')).toBe(2);
        expect(await s.requests.pendingCount('agt_none')).toBe(0);
      });

      it('lists newest first with filters and a limit, and the open requests oldest first', async () => {
        await s.requests.insert(request('req_1', { created_at: T0 + 1, status: 'issued' }));
        await s.requests.insert(request('req_2', { created_at: T0 + 2, agent_id: 'agt_2', agent_name: 'other' }));
        await s.requests.insert(request('req_3', { created_at: T0 + 3, status: 'denied' }));
        await s.requests.insert(request('req_4', { created_at: T0 + 4, status: 'approved' }));
        expect(ids(await s.requests.list({}))).toEqual(['req_4', 'req_3', 'req_2', 'req_1']);
        expect(ids(await s.requests.list({ limit: 2 }))).toEqual(['req_4', 'req_3']);
        expect(ids(await s.requests.list({ status: 'denied' }))).toEqual(['req_3']);
        expect(ids(await s.requests.list({ agentId: 'agt_2' }))).toEqual(['req_2']);
        expect(ids(await s.requests.list({ agentName: 'moltbot', status: 'issued' }))).toEqual(['req_1']);
        expect(ids(await s.requests.open())).toEqual(['req_1', 'req_2', 'req_4']);
        expect(ids(await s.requests.open({ agentName: 'other' }))).toEqual(['req_2']);
      });

      it('lists pages older than a cursor (ties broken by id) and searches id, agent, session key and reason, case-insensitively', async () => {
        await s.requests.insert(request('req_a', { created_at: T0 + 1, reason: 'Rotate the DOCKER registry' }));
        await s.requests.insert(request('req_b', { created_at: T0 + 2, session_key: 'hook:jit:Nightly' }));
        await s.requests.insert(request('req_c', { created_at: T0 + 2, agent_id: 'agt_2', agent_name: 'other', reason: '100% sure_ok' }));
        await s.requests.insert(request('req_d', { created_at: T0 + 3, reason: 'deploy' }));
        expect(ids(await s.requests.list({}))).toEqual(['req_d', 'req_c', 'req_b', 'req_a']);
        expect(ids(await s.requests.list({ before: { createdAt: T0 + 2, id: 'req_c' } }))).toEqual(['req_b', 'req_a']);
        expect(ids(await s.requests.list({ before: { createdAt: T0 + 3, id: 'req_d' }, limit: 1 }))).toEqual(['req_c']);
        expect(ids(await s.requests.list({ search: 'docker' }))).toEqual(['req_a']);
        expect(ids(await s.requests.list({ search: 'NIGHTLY' }))).toEqual(['req_b']);
        expect(ids(await s.requests.list({ search: 'oth' }))).toEqual(['req_c']);
        expect(ids(await s.requests.list({ search: 'REQ_D' }))).toEqual(['req_d']);
        // LIKE's wildcards are plain characters here.
        expect(ids(await s.requests.list({ search: '% sure_' }))).toEqual(['req_c']);
        expect(ids(await s.requests.list({ search: '_' }))).toEqual(['req_d', 'req_c', 'req_b', 'req_a']);
        expect(ids(await s.requests.list({ search: 'e', agentName: 'moltbot', before: { createdAt: T0 + 3, id: 'req_d' } }))).toEqual(['req_b', 'req_a']);
      });
    });

    describe('idempotency keys', () => {
      it('refuses a second request with the same key for one agent, allows it for another, and frees it on release', async () => {
        await s.requests.insert(request('req_1', { idempotency_key: 'k1', body_hash: 'b1' }));
        await expect(s.requests.insert(request('req_2', { idempotency_key: 'k1' }))).rejects.toBeInstanceOf(StorageUniqueError);
        await s.requests.insert(request('req_3', { idempotency_key: 'k1', agent_id: 'agt_2' }));
        await s.requests.insert(request('req_4'));
        await s.requests.insert(request('req_5'));
        expect((await s.idempotency.find('agt_1', 'k1'))?.id).toBe('req_1');
        expect(await s.idempotency.find('agt_1', 'k2')).toBeUndefined();
        await s.idempotency.release('req_1');
        expect(await s.requests.get('req_1')).toMatchObject({ idempotency_key: null, body_hash: null });
        expect(await s.idempotency.find('agt_1', 'k1')).toBeUndefined();
        await s.requests.insert(request('req_6', { idempotency_key: 'k1' }));
        expect((await s.idempotency.find('agt_1', 'k1'))?.id).toBe('req_6');
      });
    });

    describe('rate limits', () => {
      it('finds the n-th newest recorded event after a time, per agent, and prunes old events', async () => {
        for (const at of [T0 + 10, T0 + 20, T0 + 30, T0 + 40]) await s.rateLimits.record('agt_1', at);
        await s.rateLimits.record('agt_2', T0 + 50);
        expect(await s.rateLimits.nthNewestSince('agt_1', T0, 1)).toBe(T0 + 40);
        expect(await s.rateLimits.nthNewestSince('agt_1', T0, 2)).toBe(T0 + 30);
        expect(await s.rateLimits.nthNewestSince('agt_1', T0, 4)).toBe(T0 + 10);
        expect(await s.rateLimits.nthNewestSince('agt_1', T0, 5)).toBeUndefined();
        expect(await s.rateLimits.nthNewestSince('agt_1', T0 + 20, 3)).toBeUndefined();
        expect(await s.rateLimits.nthNewestSince('agt_2', T0, 1)).toBe(T0 + 50);
        expect(await s.rateLimits.nthNewestSince('agt_2', T0, 2)).toBeUndefined();
        expect(await s.rateLimits.nthNewestSince('agt_3', T0, 1)).toBeUndefined();
        // A request row alone counts for nothing: the broker records the event in the request's transaction.
        await s.requests.insert(request('req_1', { created_at: T0 + 45 }));
        expect(await s.rateLimits.nthNewestSince('agt_1', T0, 1)).toBe(T0 + 40);
        // In batches: one of the two events at or before T0 + 20, then the other, then none.
        expect(await s.rateLimits.prune(T0 + 20, 1)).toBe(1);
        expect(await s.rateLimits.prune(T0 + 20, 5)).toBe(1);
        expect(await s.rateLimits.prune(T0 + 20, 5)).toBe(0);
        expect(await s.rateLimits.nthNewestSince('agt_1', T0, 2)).toBe(T0 + 30);
        expect(await s.rateLimits.nthNewestSince('agt_1', T0, 3)).toBeUndefined();
        // Numbering goes on after a prune, and starts again for an agent whose events were all pruned.
        await s.rateLimits.record('agt_1', T0 + 60);
        expect(await s.rateLimits.nthNewestSince('agt_1', T0, 1)).toBe(T0 + 60);
        expect(await s.rateLimits.nthNewestSince('agt_1', T0, 3)).toBe(T0 + 30);
        expect(await s.rateLimits.prune(T0 + 100, 100)).toBe(4);
        expect(await s.rateLimits.nthNewestSince('agt_2', T0, 1)).toBeUndefined();
        await s.rateLimits.record('agt_2', T0 + 200);
        await s.rateLimits.record('agt_2', T0 + 210);
        expect(await s.rateLimits.nthNewestSince('agt_2', T0, 1)).toBe(T0 + 210);
        expect(await s.rateLimits.nthNewestSince('agt_2', T0, 2)).toBe(T0 + 200);
        expect(await s.rateLimits.nthNewestSince('agt_2', T0, 3)).toBeUndefined();
      });
    });

    describe('credentials', () => {
      beforeEach(async () => {
        await s.requests.insert(request('req_a', { status: 'issued' }));
        await s.requests.insert(request('req_b', { status: 'issued', agent_name: 'other' }));
      });

      it('requires a reservation time, and defaults it to the issue time', async () => {
        await expect(s.credentials.insert(credential('cred_x', 'req_a', { state: 'minting', issued_at: null }))).rejects.toThrow(/reserved_at/);
        await s.credentials.insert(credential('cred_a', 'req_a', { issued_at: T0 + 7 }));
        expect((await s.credentials.forRequest('req_a'))!.reserved_at).toBe(T0 + 7);
      });

      it('records the node that reserved a row (null when none was given)', async () => {
        await s.credentials.insert(credential('cred_a', 'req_a', { state: 'minting', issued_at: null, reserved_at: T0, node_id: 'node_1' }));
        await s.credentials.insert(credential('cred_b', 'req_b'));
        expect((await s.credentials.forRequest('req_a'))!.node_id).toBe('node_1');
        expect((await s.credentials.inState('minting', 10)).map((c) => c.node_id)).toEqual(['node_1']);
        expect((await s.credentials.forRequest('req_b'))!.node_id).toBeNull();
      });

      it('holds at most one credential per request that is neither abandoned nor failed', async () => {
        await s.credentials.insert(credential('cred_1', 'req_a', { state: 'minting', reserved_at: T0 }));
        await expect(s.credentials.insert(credential('cred_2', 'req_a', { state: 'minting', reserved_at: T0 }))).rejects.toBeInstanceOf(StorageUniqueError);
        expect(await s.credentials.move('cred_1', 'minting', 'abandoned', T0 + 1, 'stopped')).toBe(true);
        await s.credentials.insert(credential('cred_3', 'req_a', { state: 'minting', reserved_at: T0 + 2 }));
        expect((await s.credentials.forRequest('req_a'))!.id).toBe('cred_3');
        expect(await s.credentials.activeCount('req_a')).toBe(1);
        await s.credentials.move('cred_3', 'minting', 'failed', T0 + 3);
        // All failed or abandoned: the newest.
        expect((await s.credentials.forRequest('req_a'))!.id).toBe('cred_3');
        expect(await s.credentials.activeCount('req_a')).toBe(0);
        expect(await s.credentials.forRequest('req_none')).toBeUndefined();
      });

      it('marks a minting credential live once, and moves states conditionally with their end time and first reason', async () => {
        await s.credentials.insert(credential('cred_1', 'req_a', { state: 'minting', issued_at: null, reserved_at: T0 }));
        expect(await s.credentials.markLive('cred_1', 'acc1', T0 + 1, T0 + 61)).toBe(true);
        expect(await s.credentials.markLive('cred_1', 'acc2', T0 + 2, T0 + 62)).toBe(false);
        expect(await s.credentials.forRequest('req_a')).toMatchObject({ state: 'live', accessor: 'acc1', issued_at: T0 + 1, expires_at: T0 + 61, ended_at: null });
        expect(await s.credentials.move('cred_1', 'minting', 'abandoned', T0 + 3)).toBe(false);
        expect(await s.credentials.move('cred_1', 'live', 'ending', T0 + 4, 'expired')).toBe(true);
        expect(await s.credentials.forRequest('req_a')).toMatchObject({ state: 'ending', ended_at: null, end_reason: 'expired' });
        expect(await s.credentials.move('cred_1', 'ending', 'ended', T0 + 5, 'revoked')).toBe(true);
        expect(await s.credentials.forRequest('req_a')).toMatchObject({ state: 'ended', ended_at: T0 + 5, end_reason: 'expired' });
      });

      it('finds live credentials past expiry (soonest first), rows by unsettled state, and old minting rows', async () => {
        await s.requests.insert(request('req_c', { status: 'issued' }));
        await s.requests.insert(request('req_d', { status: 'approved' }));
        await s.credentials.insert(credential('cred_late', 'req_a', { expires_at: T0 + 20 }));
        await s.credentials.insert(credential('cred_later', 'req_b', { expires_at: T0 + 10 }));
        await s.credentials.insert(credential('cred_ok', 'req_c', { expires_at: T0 + 1000, accessor: 'acc_ok' }));
        await s.credentials.insert(credential('cred_mint', 'req_d', { state: 'minting', issued_at: null, reserved_at: T0 + 5 }));
        expect(ids(await s.credentials.livePastExpiry(T0 + 20, 10))).toEqual(['cred_later', 'cred_late']);
        expect(ids(await s.credentials.livePastExpiry(T0 + 20, 1))).toEqual(['cred_later']);
        expect(ids(await s.credentials.inState('minting', 10))).toEqual(['cred_mint']);
        expect(await s.credentials.inState('ending', 10)).toEqual([]);
        expect(ids(await s.credentials.liveWithAccessor())).toEqual(['cred_ok']);
      });

      it('records a late accessor on an abandoned row only once', async () => {
        await s.credentials.insert(credential('cred_1', 'req_a', { state: 'abandoned' }));
        await s.credentials.insert(credential('cred_2', 'req_b'));
        expect(await s.credentials.recordLateAccessor('cred_2', 'x')).toBe(false);
        expect(await s.credentials.recordLateAccessor('cred_1', 'acc')).toBe(true);
        expect(await s.credentials.recordLateAccessor('cred_1', 'acc2')).toBe(false);
        expect((await s.credentials.forRequest('req_a'))!.accessor).toBe('acc');
      });

      it('knows the Vault policies it owns, who holds one, and legacy names', async () => {
        await s.requests.insert(request('req_c', { status: 'issued' }));
        await s.requests.insert(request('req_d', { status: 'issued' }));
        await s.credentials.insert(credential('cred_1', 'req_a', { vault_policy: 'jit-x-grant-1' }));
        await s.credentials.insert(credential('cred_2', 'req_b', { vault_policy: 'jit-x-grant-1' }));
        await s.credentials.insert(credential('cred_3', 'req_c', { vault_policy: 'jit-req_old', state: 'ended' }));
        await s.credentials.insert(credential('cred_4', 'req_d', { vault_policy: 'jit-x-gone', state: 'abandoned' }));
        expect(await s.credentials.ownedPolicyNames()).toEqual(new Set(['jit-x-grant-1', 'jit-x-gone']));
        expect(await s.credentials.policyHolders('jit-x-grant-1', 'cred_1')).toBe(1);
        expect(await s.credentials.policyHolders('jit-x-grant-1', null)).toBe(2);
        expect(await s.credentials.policyHolders('jit-x-gone', null)).toBe(0);
        expect(await s.credentials.namesLegacyVaultPolicy('jit-req_old')).toBe(true);
        expect(await s.credentials.namesLegacyVaultPolicy('jit-req_other')).toBe(false);
        expect(await s.credentials.namesLegacyVaultPolicy('jit-x-grant-1')).toBe(false);
      });

      it('lists credentials in use with their requests, soonest expiry first, and live gate credentials by signing key', async () => {
        await s.requests.insert(request('req_c', { status: 'issued' }));
        await s.credentials.insert(credential('cred_1', 'req_a', { expires_at: T0 + 30 }));
        await s.credentials.insert(credential('cred_2', 'req_b', { expires_at: T0 + 20, state: 'ending' }));
        await s.credentials.insert(credential('cred_3', 'req_c', { expires_at: T0 + 10, state: 'ended' }));
        const all = await s.credentials.inUse();
        expect(all.map((x) => [x.credential.id, x.request.id])).toEqual([
          ['cred_2', 'req_b'],
          ['cred_1', 'req_a'],
        ]);
        expect(all[0]!.request.agent_name).toBe('other');
        expect((await s.credentials.inUse({ agentName: 'moltbot' })).map((x) => x.credential.id)).toEqual(['cred_1']);

        await s.requests.insert(request('req_g1', { resource: 'gate', status: 'issued' }));
        await s.requests.insert(request('req_g2', { resource: 'gate', status: 'issued' }));
        await s.credentials.insert(credential('cred_g1', 'req_g1', { type: 'gate_push', jti: 'j1', expires_at: T0 + 50 }));
        await s.credentials.insert(credential('cred_g2', 'req_g2', { type: 'gate_push', jti: 'j2', expires_at: T0 + 40 }));
        await s.audit.insert(auditRow(1, { event: 'credential.issued', request_id: 'req_g1', data: JSON.stringify({ credential_id: 'cred_g1', kid: 'k1' }) }));
        await s.audit.insert(auditRow(2, { event: 'credential.issued', request_id: 'req_g2', data: JSON.stringify({ credential_id: 'cred_g2', kid: 'k2' }) }));
        expect(ids(await s.credentials.liveGateSignedBy('k1'))).toEqual(['cred_g1']);
        expect(await s.credentials.liveGateSignedBy('k3')).toEqual([]);
      });
    });

    describe('grant policies', () => {
      it('creates a grant at generation 1 unwritten, records writes, and retires a generation once', async () => {
        expect(await s.grantPolicies.acquire('h1', T0)).toEqual({ generation: 1, written: false, updated_at: T0 });
        // A known grant writes nothing: the time stays the first.
        expect(await s.grantPolicies.acquire('h1', T0 + 5)).toEqual({ generation: 1, written: false, updated_at: T0 });
        await s.grantPolicies.markWritten('h1', 1, T0 + 6);
        expect(await s.grantPolicies.acquire('h1', T0 + 7)).toEqual({ generation: 1, written: true, updated_at: T0 + 6 });
        await s.grantPolicies.retire('h1', 1, T0 + 8);
        await s.grantPolicies.retire('h1', 1, T0 + 9);
        expect(await s.grantPolicies.acquire('h1', T0 + 10)).toEqual({ generation: 2, written: false, updated_at: T0 + 8 });
        await s.grantPolicies.markWritten('h1', 1, T0 + 11);
        expect((await s.grantPolicies.acquire('h1', T0 + 12)).written).toBe(false);
      });
    });

    describe('votes', () => {
      it('records one vote per approver, in order, and counts approvals', async () => {
        await s.requests.insert(request('req_a', { required_tier: 3, tier: 3 }));
        const vote = (approver: string, decision: 'approve' | 'deny', at: number) => ({ request_id: 'req_a', approver, decision, reason: null, at, grant_scope: decision === 'approve' ? '{}' : null, grant_ttl_seconds: decision === 'approve' ? 60 : null });
        expect(await s.votes.newestSeq()).toBe(0);
        expect(await s.votes.insert(vote('bob', 'approve', T0 + 2))).toBe(true);
        expect(await s.votes.insert(vote('alice', 'approve', T0 + 2))).toBe(true);
        expect(await s.votes.insert(vote('alice', 'deny', T0 + 3))).toBe(false);
        expect(await s.votes.insert(vote('carol', 'deny', T0 + 1))).toBe(true);
        expect(await s.votes.has('req_a', 'alice')).toBe(true);
        expect(await s.votes.has('req_a', 'dave')).toBe(false);
        expect(await s.votes.countApprovals('req_a')).toBe(2);
        expect((await s.votes.of('req_a')).map((v) => v.approver)).toEqual(['carol', 'alice', 'bob']);
        expect((await s.votes.approvals('req_a')).map((v) => [v.approver, v.grant_ttl_seconds])).toEqual([
          ['alice', 60],
          ['bob', 60],
        ]);
        expect((await s.votes.of('req_a'))[1]).toEqual({ approver: 'alice', decision: 'approve', reason: null, at: T0 + 2, grant_scope: '{}', grant_ttl_seconds: 60 });
      });

      it('numbers votes as cast and returns the newer ones with their requests', async () => {
        await s.requests.insert(request('req_a', { resource: 'gate' }));
        await s.votes.insert({ request_id: 'req_a', approver: 'a', decision: 'approve', reason: 'ok', at: T0 + 1, grant_scope: null, grant_ttl_seconds: null });
        const first = await s.votes.newestSeq();
        expect(first).toBeGreaterThan(0);
        await s.requests.move('req_a', 'pending', 'approved', T0 + 2, { decidedAt: T0 + 2 });
        await s.votes.insert({ request_id: 'req_a', approver: 'b', decision: 'deny', reason: null, at: T0 + 2, grant_scope: null, grant_ttl_seconds: null });
        const after = await s.votes.decisionsAfter(first, 10);
        expect(after).toEqual([{ seq: await s.votes.newestSeq(), decision: 'deny', at: T0 + 2, resource: 'gate', tier: 2, created_at: T0, decided_at: T0 + 2, status: 'approved' }]);
        expect((await s.votes.decisionsAfter(0, 1)).map((v) => v.seq)).toEqual([first]);
      });
    });

    describe('agents', () => {
      it('adds, finds, lists by name, refuses a taken name, and deletes', async () => {
        await s.agents.insert(agent('agt_2', 'zeta'));
        await s.agents.insert(agent('agt_1', 'alpha', { session_key: 'sk' }));
        await expect(s.agents.insert(agent('agt_3', 'alpha'))).rejects.toBeInstanceOf(StorageUniqueError);
        expect(await s.agents.byName('alpha')).toEqual(agent('agt_1', 'alpha', { session_key: 'sk' }));
        expect((await s.agents.byTokenId('tok_agt_2'))?.name).toBe('zeta');
        expect(await s.agents.byTokenId('nope')).toBeUndefined();
        expect((await s.agents.list()).map((a) => a.name)).toEqual(['alpha', 'zeta']);
        expect(await s.agents.delete('agt_1')).toBe(true);
        expect(await s.agents.delete('agt_1')).toBe(false);
        expect(await s.agents.byName('alpha')).toBeUndefined();
      });
    });

    describe('approvers', () => {
      const approver = (id: string, name: string, telegram_id: string | null = null): ApproverRow => ({ id, name, telegram_id, created_at: T0, removed_at: null });

      it("a removed approver's approvals stop counting (a pending quorum loses them); every vote stays in votes.of()", async () => {
        await s.requests.insert(request('req_a'));
        await s.approvers.insert(approver('apr_1', 'al', '111'));
        await s.approvers.insert(approver('apr_2', 'bo'));
        const vote = (voter: string) => ({ request_id: 'req_a', approver: voter, decision: 'approve' as const, reason: null, at: T0 + 1, grant_scope: '{}', grant_ttl_seconds: 60 });
        await s.votes.insert(vote('approver:apr_1'));
        await s.votes.insert(vote('approver:apr_2'));
        await s.votes.insert(vote('telegram:999'));
        expect(await s.votes.countApprovals('req_a')).toBe(3);
        expect(await s.approvers.remove('apr_1', T0 + 2)).toBe(true);
        expect(await s.votes.countApprovals('req_a')).toBe(2);
        expect((await s.votes.approvals('req_a')).map((v) => v.approver)).toEqual(['approver:apr_2', 'telegram:999']);
        expect((await s.votes.of('req_a')).map((v) => v.approver)).toEqual(['approver:apr_1', 'approver:apr_2', 'telegram:999']);
      });
      const enrolment = (token_hash: string, approver_id: string, o: Partial<EnrolmentRow> = {}): EnrolmentRow => ({ token_hash, approver_id, created_at: T0, expires_at: T0 + 900_000, used_at: null, ...o });
      const passkey = (id: string, approver_id: string, o: Partial<PasskeyRow> = {}): PasskeyRow => ({ id, approver_id, public_key: 'pk', sign_count: 0, transports: '["internal"]', created_at: T0, last_used_at: null, ...o });
      const session = (id_hash: string, approver_id: string, o: Partial<ConsoleSessionRow> = {}): ConsoleSessionRow => ({ id_hash, approver_id, created_at: T0, last_seen_at: T0, ...o });

      it('adds, finds, lists by name with counts; names and Telegram ids are unique among approvers not removed', async () => {
        await s.approvers.insert(approver('apr_2', 'zoe', '222'));
        await s.approvers.insert(approver('apr_1', 'al'));
        await s.approvers.insert(approver('apr_3', 'bo'));
        await expect(s.approvers.insert(approver('apr_4', 'al'))).rejects.toBeInstanceOf(StorageUniqueError);
        await expect(s.approvers.insert(approver('apr_5', 'cy', '222'))).rejects.toBeInstanceOf(StorageUniqueError);
        expect(await s.approvers.byName('zoe')).toEqual(approver('apr_2', 'zoe', '222'));
        expect((await s.approvers.byTelegramId('222'))?.id).toBe('apr_2');
        expect(await s.approvers.byTelegramId('333')).toBeUndefined();
        await s.passkeys.insert(passkey('cred_a', 'apr_2'));
        await s.passkeys.insert(passkey('cred_b', 'apr_2'));
        await s.consoleSessions.insert(session('sh_1', 'apr_2'));
        expect((await s.approvers.list()).map((a) => [a.name, a.telegram_id, a.passkeys, a.sessions])).toEqual([
          ['al', null, 0, 0],
          ['bo', null, 0, 0],
          ['zoe', '222', 2, 1],
        ]);
      });

      it('removes an approver with their sessions, passkeys and links in one step; the name and Telegram id free again', async () => {
        await s.approvers.insert(approver('apr_1', 'al', '111'));
        await s.approvers.insert(approver('apr_2', 'bo'));
        await s.approvers.addEnrolment(enrolment('eh_1', 'apr_1'));
        await s.passkeys.insert(passkey('cred_a', 'apr_1'));
        await s.consoleSessions.insert(session('sh_1', 'apr_1'));
        await s.consoleSessions.insert(session('sh_2', 'apr_2'));
        expect(await s.transaction((tx) => tx.approvers.remove('apr_1', T0 + 5))).toBe(true);
        expect(await s.approvers.remove('apr_1', T0 + 6)).toBe(false);
        expect(await s.approvers.remove('apr_missing', T0 + 6)).toBe(false);
        expect(await s.approvers.get('apr_1')).toMatchObject({ name: 'al', removed_at: T0 + 5 });
        expect(await s.approvers.byName('al')).toBeUndefined();
        expect(await s.approvers.byTelegramId('111')).toBeUndefined();
        expect(await s.consoleSessions.get('sh_1')).toBeUndefined();
        expect(await s.consoleSessions.get('sh_2')).toBeDefined();
        expect(await s.passkeys.of('apr_1')).toEqual([]);
        expect(await s.approvers.enrolment('eh_1', T0)).toBeUndefined();
        expect((await s.approvers.list()).map((a) => a.name)).toEqual(['bo']);
        await s.approvers.insert(approver('apr_3', 'al', '111'));
        expect((await s.approvers.byName('al'))?.id).toBe('apr_3');
        // Telegram messages name voters by identity, removed approvers too.
        await s.telegram.rememberName('telegram:111', 'Al Tg', T0);
        const names = await s.telegram.names();
        expect([names.get('approver:apr_1'), names.get('approver:apr_2'), names.get('approver:apr_3'), names.get('telegram:111')]).toEqual(['al', 'bo', 'al', 'Al Tg']);
      });

      it('rolls a removal back with its transaction: the sessions stay', async () => {
        await s.approvers.insert(approver('apr_1', 'al'));
        await s.consoleSessions.insert(session('sh_1', 'apr_1'));
        await expect(
          s.transaction(async (tx) => {
            await tx.approvers.remove('apr_1', T0 + 1);
            throw new Error('boom');
          }),
        ).rejects.toThrow('boom');
        expect(await s.approvers.byName('al')).toBeDefined();
        expect(await s.consoleSessions.get('sh_1')).toBeDefined();
      });

      it('uses an enrolment link once, before it expires, while its approver is not removed', async () => {
        await s.approvers.insert(approver('apr_1', 'al'));
        await s.approvers.addEnrolment(enrolment('eh_1', 'apr_1', { expires_at: T0 + 100 }));
        await s.approvers.addEnrolment(enrolment('eh_2', 'apr_1', { expires_at: T0 + 100 }));
        expect(await s.approvers.enrolment('eh_1', T0 + 99)).toMatchObject({ approver_id: 'apr_1', used_at: null });
        expect(await s.approvers.enrolment('eh_1', T0 + 100)).toBeUndefined();
        expect(await s.approvers.consumeEnrolment('eh_1', T0 + 100)).toBeUndefined();
        expect(await s.approvers.consumeEnrolment('eh_1', T0 + 50)).toBe('apr_1');
        expect(await s.approvers.consumeEnrolment('eh_1', T0 + 51)).toBeUndefined();
        expect(await s.approvers.enrolment('eh_1', T0 + 51)).toBeUndefined();
        expect(await s.approvers.consumeEnrolment('eh_missing', T0)).toBeUndefined();
        await s.approvers.addEnrolment(enrolment('eh_3', 'apr_1', { expires_at: T0 + 1000 }));
        expect(await s.approvers.pruneEnrolments(T0 + 100)).toBe(2);
        expect(await s.approvers.enrolment('eh_3', T0 + 100)).toBeDefined();
      });

      it('gives an enrolment link to exactly one of two racers', async () => {
        await s.approvers.insert(approver('apr_1', 'al'));
        await s.approvers.addEnrolment(enrolment('eh_1', 'apr_1'));
        const direct = await Promise.all([s.approvers.consumeEnrolment('eh_1', T0 + 1), s.approvers.consumeEnrolment('eh_1', T0 + 1)]);
        expect(direct.filter((r) => r !== undefined)).toEqual(['apr_1']);
        await s.approvers.addEnrolment(enrolment('eh_2', 'apr_1'));
        const inTx = await Promise.all([1, 2].map(() => s.transaction((tx) => tx.approvers.consumeEnrolment('eh_2', T0 + 1))));
        expect(inTx.filter((r) => r !== undefined)).toEqual(['apr_1']);
      });

      it('stores passkeys, refuses a credential id twice, and moves the sign count conditionally', async () => {
        await s.approvers.insert(approver('apr_1', 'al'));
        await s.passkeys.insert(passkey('cred_b', 'apr_1', { created_at: T0 + 1 }));
        await s.passkeys.insert(passkey('cred_a', 'apr_1', { transports: '["usb","nfc"]' }));
        await expect(s.passkeys.insert(passkey('cred_a', 'apr_1'))).rejects.toBeInstanceOf(StorageUniqueError);
        expect(await s.passkeys.get('cred_a')).toEqual(passkey('cred_a', 'apr_1', { transports: '["usb","nfc"]' }));
        expect((await s.passkeys.of('apr_1')).map((p) => p.id)).toEqual(['cred_a', 'cred_b']);
        expect(await s.passkeys.use('cred_a', 1, 2, T0 + 5)).toBe(false);
        const uses = await Promise.all([s.passkeys.use('cred_a', 0, 1, T0 + 5), s.passkeys.use('cred_a', 0, 1, T0 + 5)]);
        expect(uses.filter(Boolean)).toHaveLength(1);
        expect(await s.passkeys.get('cred_a')).toMatchObject({ sign_count: 1, last_used_at: T0 + 5 });
        expect(await s.passkeys.get('cred_missing')).toBeUndefined();
      });

      it('keeps console sessions: touch, delete, prune by idle and absolute timeouts', async () => {
        await s.approvers.insert(approver('apr_1', 'al'));
        await s.consoleSessions.insert(session('sh_1', 'apr_1'));
        await s.consoleSessions.insert(session('sh_2', 'apr_1', { created_at: T0 + 500, last_seen_at: T0 + 500 }));
        await s.consoleSessions.insert(session('sh_3', 'apr_1', { created_at: T0 + 10, last_seen_at: T0 + 900 }));
        await expect(s.consoleSessions.insert(session('sh_1', 'apr_1'))).rejects.toBeInstanceOf(StorageUniqueError);
        expect(await s.consoleSessions.touch('sh_1', T0 + 50)).toBe(true);
        expect(await s.consoleSessions.get('sh_1')).toEqual(session('sh_1', 'apr_1', { last_seen_at: T0 + 50 }));
        expect(await s.consoleSessions.touch('sh_missing', T0 + 50)).toBe(false);
        // Idle before T0 + 100 (sh_1) or created before T0 + 20 (sh_3).
        expect(await s.consoleSessions.prune(T0 + 100, T0 + 20)).toBe(2);
        expect(await s.consoleSessions.get('sh_2')).toBeDefined();
        expect(await s.consoleSessions.delete('sh_2')).toBe(true);
        expect(await s.consoleSessions.delete('sh_2')).toBe(false);
      });
    });

    describe('WebAuthn challenges', () => {
      const challenge = (challenge_hash: string, o: Partial<ChallengeRow> = {}): ChallengeRow => ({
        challenge_hash,
        purpose: 'step-up',
        approver_id: 'apr_1',
        action_hash: 'ah',
        created_at: T0,
        expires_at: T0 + 300_000,
        ...o,
      });

      it('uses a challenge once, of its purpose, before it expires; prunes used and expired ones', async () => {
        await s.challenges.insert(challenge('ch_1', { expires_at: T0 + 100 }));
        await s.challenges.insert(challenge('ch_2', { purpose: 'sign-in', approver_id: null, action_hash: null }));
        await s.challenges.insert(challenge('ch_3', { purpose: 'enrol', action_hash: null }));
        await expect(s.challenges.insert(challenge('ch_1'))).rejects.toBeInstanceOf(StorageUniqueError);
        expect(await s.challenges.consume('ch_1', 'sign-in', T0 + 1)).toBeUndefined();
        expect(await s.challenges.consume('ch_1', 'step-up', T0 + 100)).toBeUndefined();
        expect(await s.challenges.consume('ch_1', 'step-up', T0 + 99)).toEqual(challenge('ch_1', { expires_at: T0 + 100 }));
        expect(await s.challenges.consume('ch_1', 'step-up', T0 + 99)).toBeUndefined();
        expect(await s.challenges.consume('ch_2', 'sign-in', T0 + 1)).toEqual(challenge('ch_2', { purpose: 'sign-in', approver_id: null, action_hash: null }));
        expect(await s.challenges.consume('ch_missing', 'sign-in', T0 + 1)).toBeUndefined();
        await s.challenges.insert(challenge('ch_4', { expires_at: T0 + 50 }));
        // ch_1 and ch_2 are gone with their use; ch_4 expired at T0 + 50; ch_3 stays.
        expect(await s.challenges.prune(T0 + 50)).toBe(1);
        expect(await s.challenges.consume('ch_3', 'enrol', T0 + 51)).toMatchObject({ approver_id: 'apr_1', purpose: 'enrol' });
      });

      it('gives a challenge to exactly one of several racers, in transactions or not, and a prune never revives one', async () => {
        await s.challenges.insert(challenge('ch_1'));
        const direct = await Promise.all([1, 2, 3].map(() => s.challenges.consume('ch_1', 'step-up', T0 + 1)));
        expect(direct.filter((r) => r !== undefined)).toHaveLength(1);
        await s.challenges.insert(challenge('ch_2'));
        const inTx = await Promise.all([1, 2, 3].map(() => s.transaction((tx) => tx.challenges.consume('ch_2', 'step-up', T0 + 1))));
        expect(inTx.filter((r) => r !== undefined)).toHaveLength(1);
        await s.challenges.insert(challenge('ch_3'));
        await s.challenges.insert(challenge('ch_4', { expires_at: T0 + 1 }));
        const [pruned, used] = await Promise.all([s.challenges.prune(T0 + 1), s.challenges.consume('ch_3', 'step-up', T0 + 1)]);
        expect(pruned).toBe(1);
        expect(used?.challenge_hash).toBe('ch_3');
        expect(await s.challenges.consume('ch_3', 'step-up', T0 + 2)).toBeUndefined();
      });

      it('rolls a use back with its transaction: the challenge stays usable', async () => {
        await s.challenges.insert(challenge('ch_1'));
        await expect(
          s.transaction(async (tx) => {
            expect(await tx.challenges.consume('ch_1', 'step-up', T0 + 1)).toBeDefined();
            throw new Error('boom');
          }),
        ).rejects.toThrow('boom');
        expect(await s.challenges.consume('ch_1', 'step-up', T0 + 2)).toBeDefined();
      });
    });

    describe('audit', () => {
      it('appends rows, reads the newest, pages in order, finds a request\'s latest entry of an event', async () => {
        expect(await s.audit.last()).toBeUndefined();
        for (let seq = 1; seq <= 5; seq++) await s.audit.insert(auditRow(seq, { request_id: seq % 2 ? 'req_a' : null, event: seq === 5 ? 'other' : 'request.revoked', actor: `a${seq}` }));
        expect(await s.audit.last()).toEqual({ seq: 5, hash: 'h5' });
        expect(await s.audit.hashAt(3)).toBe('h3');
        expect(await s.audit.hashAt(9)).toBeUndefined();
        expect((await s.audit.page(0, 2)).map((r) => r.seq)).toEqual([1, 2]);
        expect(await s.audit.page(3, 10)).toEqual([auditRow(4, { request_id: null, event: 'request.revoked', actor: 'a4' }), auditRow(5, { request_id: 'req_a', event: 'other', actor: 'a5' })]);
        expect(await s.audit.latest('req_a', 'request.revoked')).toEqual({ actor: 'a3', at: T0 + 3 });
        expect(await s.audit.latest('req_b', 'request.revoked')).toBeUndefined();
      });

      it("reads one request's entries after a seq, in order, at most limit", async () => {
        for (let seq = 1; seq <= 7; seq++) await s.audit.insert(auditRow(seq, { request_id: seq === 4 ? null : seq % 2 ? 'req_a' : 'req_b', event: 'request.revoked', actor: `a${seq}` }));
        expect((await s.audit.ofRequest('req_a', 0, 10)).map((r) => r.seq)).toEqual([1, 3, 5, 7]);
        expect((await s.audit.ofRequest('req_a', 3, 10)).map((r) => r.seq)).toEqual([5, 7]);
        expect((await s.audit.ofRequest('req_a', 0, 2)).map((r) => r.seq)).toEqual([1, 3]);
        expect(await s.audit.ofRequest('req_b', 2, 10)).toEqual([auditRow(6, { request_id: 'req_b', event: 'request.revoked', actor: 'a6' })]);
        expect(await s.audit.ofRequest('req_b', 6, 10)).toEqual([]);
        expect(await s.audit.ofRequest('req_none', 0, 10)).toEqual([]);
      });

      it('refuses a row whose seq is taken', async () => {
        await s.audit.insert(auditRow(1));
        await expect(s.audit.insert(auditRow(1, { hash: 'other' }))).rejects.toThrow();
        expect(await s.audit.last()).toEqual({ seq: 1, hash: 'h1' });
      });

      it('in a transaction, last() follows the entries the transaction inserted', async () => {
        await s.audit.insert(auditRow(1));
        await s.transaction(async (tx) => {
          expect(await tx.audit.last()).toEqual({ seq: 1, hash: 'h1' });
          await tx.audit.insert(auditRow(2));
          expect(await tx.audit.last()).toEqual({ seq: 2, hash: 'h2' });
          await tx.audit.insert(auditRow(3));
          expect(await tx.audit.last()).toEqual({ seq: 3, hash: 'h3' });
        });
        expect(await s.audit.last()).toEqual({ seq: 3, hash: 'h3' });
        // A later transaction reads the head afresh.
        await s.transaction(async (tx) => {
          expect(await tx.audit.last()).toEqual({ seq: 3, hash: 'h3' });
        });
      });

      it('a refused audit insert fails its transaction, also as its last statement or before others; nothing of it commits', async () => {
        await s.audit.insert(auditRow(1));
        // The refused insert last: the transaction must not report a commit.
        await expect(
          s.transaction(async (tx) => {
            await tx.requests.insert(request('req_x'));
            await tx.audit.insert(auditRow(2));
            await tx.audit.insert(auditRow(2, { hash: 'other' }));
          }),
        ).rejects.toThrow();
        expect(await s.requests.get('req_x')).toBeUndefined();
        expect(await s.audit.last()).toEqual({ seq: 1, hash: 'h1' });
        // Statements after it: they fail (with it), and nothing commits.
        await expect(
          s.transaction(async (tx) => {
            await tx.audit.insert(auditRow(1, { hash: 'other' }));
            await tx.requests.insert(request('req_y'));
          }),
        ).rejects.toThrow();
        expect(await s.requests.get('req_y')).toBeUndefined();
        // The storage stays usable.
        await s.transaction(async (tx) => {
          await tx.audit.insert(auditRow(2));
          await tx.requests.insert(request('req_z'));
        });
        expect(await s.requests.get('req_z')).toBeDefined();
        expect(await s.audit.last()).toEqual({ seq: 2, hash: 'h2' });
      });

      it('keeps signed heads in order', async () => {
        expect(await s.audit.lastHead()).toBeUndefined();
        const head = (seq: number) => ({ seq, hash: `h${seq}`, at: T0 + seq, kid: 'k', signature: `sig${seq}` });
        await s.audit.insertHead(head(1));
        await s.audit.insertHead(head(3));
        await s.audit.insertHead(head(2));
        expect(await s.audit.lastHead()).toEqual(head(2));
        expect(await s.audit.heads()).toEqual([head(1), head(3), head(2)]);
      });
    });

    describe('outbox', () => {
      beforeEach(async () => {
        await s.requests.insert(request('req_a'));
        await s.requests.insert(request('req_b'));
        await s.requests.insert(request('req_c'));
      });
      const claim = (o: Partial<Parameters<Storage['outbox']['claim']>[0]> = {}) => s.outbox.claim({ now: T0 + 100, dueBy: T0 + 100, owner: 'w1', leaseUntil: T0 + 1000, limit: 10, ...o });

      it('keeps one event per request and type', async () => {
        expect(await s.outbox.insert(outboxRow('evt_1', 'req_a'))).toBe(true);
        expect(await s.outbox.insert(outboxRow('evt_2', 'req_a'))).toBe(false);
        expect(await s.outbox.insert(outboxRow('evt_3', 'req_a', { type: 'jit.request.revoked' }))).toBe(true);
        expect(await s.outbox.get('evt_1')).toMatchObject({ state: 'pending', attempts: 0, updated_at: T0, lease_owner: null });
        expect(await s.outbox.get('evt_2')).toBeUndefined();
      });

      it('leases due rows oldest first, counting the attempt, and never the same row twice', async () => {
        await s.outbox.insert(outboxRow('evt_late', 'req_a', { next_attempt_at: T0 + 50 }));
        await s.outbox.insert(outboxRow('evt_early', 'req_b', { next_attempt_at: T0 + 10, url: 'http://127.0.0.1:2/b' }));
        await s.outbox.insert(outboxRow('evt_future', 'req_c', { next_attempt_at: T0 + 500 }));
        const leased = await claim();
        expect(ids(leased)).toEqual(['evt_early', 'evt_late']);
        expect(leased[0]).toMatchObject({ state: 'delivering', attempts: 1, lease_owner: 'w1', lease_expires_at: T0 + 1000 });
        expect(await claim({ owner: 'w2' })).toEqual([]);
        expect(ids(await claim({ dueBy: T0 + 500, owner: 'w2' }))).toEqual(['evt_future']);
      });

      it('takes over an expired lease first, caps rows per target and never leases an unresolved row', async () => {
        await s.outbox.insert(outboxRow('evt_1', 'req_a', { next_attempt_at: T0 + 1 }));
        await s.outbox.insert(outboxRow('evt_2', 'req_b', { next_attempt_at: T0 + 2 }));
        await s.outbox.insert(outboxRow('evt_3', 'req_c', { next_attempt_at: T0 + 3, url: 'http://127.0.0.1:2/b' }));
        await s.outbox.insert(outboxRow('evt_u', 'req_c', { type: 'jit.request.denied', target: 'unresolved', url: null, url_source: 'config' }));
        expect(ids(await claim({ limit: 1, leaseUntil: T0 + 150 }))).toEqual(['evt_1']);
        const capped = await claim({ now: T0 + 200, dueBy: T0 + 200, owner: 'w2', room: (url) => (url === 'http://127.0.0.1:1/a' ? 1 : 5) });
        expect(ids(capped)).toEqual(['evt_1', 'evt_3']);
        expect(capped[0]).toMatchObject({ attempts: 2, lease_owner: 'w2' });
        expect(await claim({ limit: 0 })).toEqual([]);
        expect((await s.outbox.get('evt_u'))!.state).toBe('pending');
      });

      it('settles a lease only for its owner', async () => {
        for (const id of ['evt_1', 'evt_2', 'evt_3']) await s.outbox.insert(outboxRow(id, { evt_1: 'req_a', evt_2: 'req_b', evt_3: 'req_c' }[id]!));
        await claim();
        expect(await s.outbox.markDelivered('evt_1', 'w2', T0 + 101, 200)).toBe(false);
        expect(await s.outbox.markDelivered('evt_1', 'w1', T0 + 101, 200)).toBe(true);
        expect(await s.outbox.get('evt_1')).toMatchObject({ state: 'delivered', delivered_at: T0 + 101, last_status: 200, lease_owner: null });
        expect(await s.outbox.markRetry('evt_2', 'w1', T0 + 102, { status: 500, error: 'e', nextAttemptAt: T0 + 300 })).toBe(true);
        expect(await s.outbox.get('evt_2')).toMatchObject({ state: 'pending', next_attempt_at: T0 + 300, last_status: 500, last_error: 'e' });
        expect(await s.outbox.markDead('evt_3', 'w1', T0 + 103, { status: null, error: 'gone' })).toBe(true);
        expect(await s.outbox.markDead('evt_3', 'w1', T0 + 103, { status: null, error: 'gone' })).toBe(false);
        expect(await s.outbox.deadCount()).toBe(1);
        expect(await s.outbox.pendingCount()).toBe(1);
        expect(await s.outbox.countByState()).toEqual({ pending: 1, delivering: 0, delivered: 1, dead: 1 });
        expect(await s.outbox.requeue('evt_3', T0 + 104)).toBe(true);
        expect(await s.outbox.requeue('evt_3', T0 + 104)).toBe(false);
        expect(await s.outbox.get('evt_3')).toMatchObject({ state: 'pending', attempts: 0, next_attempt_at: T0 + 104, last_error: null });
        const again = await claim({ now: T0 + 400, dueBy: T0 + 400 });
        expect(ids(again).sort()).toEqual(['evt_2', 'evt_3']);
        expect(await s.outbox.release('evt_2', 'w9', T0 + 401)).toBe(false);
        expect(await s.outbox.release('evt_2', 'w1', T0 + 401)).toBe(true);
        expect(await s.outbox.get('evt_2')).toMatchObject({ state: 'pending', next_attempt_at: T0 + 401, lease_owner: null });
      });

      it('lists newest first with a state filter and a limit, and a request\'s events oldest first', async () => {
        await s.outbox.insert(outboxRow('evt_1', 'req_a', { created_at: T0 + 1 }));
        await s.outbox.insert(outboxRow('evt_2', 'req_a', { created_at: T0 + 2, type: 'jit.request.revoked', state: 'dead' }));
        await s.outbox.insert(outboxRow('evt_3', 'req_b', { created_at: T0 + 3 }));
        expect(ids(await s.outbox.list())).toEqual(['evt_3', 'evt_2', 'evt_1']);
        expect(ids(await s.outbox.list({ limit: 1 }))).toEqual(['evt_3']);
        expect(ids(await s.outbox.list({ state: 'dead' }))).toEqual(['evt_2']);
        expect(ids(await s.outbox.forRequest('req_a'))).toEqual(['evt_1', 'evt_2']);
      });

      it('addresses or drops unresolved rows once', async () => {
        const unresolved = { target: 'unresolved' as const, url: null, url_source: 'config' as const };
        await s.outbox.insert(outboxRow('evt_u1', 'req_a', { ...unresolved, created_at: T0 + 2 }));
        await s.outbox.insert(outboxRow('evt_u2', 'req_b', { ...unresolved, created_at: T0 + 1 }));
        await s.outbox.insert(outboxRow('evt_r', 'req_c'));
        expect(ids(await s.outbox.unresolved(10))).toEqual(['evt_u2', 'evt_u1']);
        const address = { target: 'standard' as const, url: 'http://127.0.0.1:3/x', url_source: 'policy' as const, body: '{"a":1}', state: 'pending' as const, last_error: null };
        expect(await s.outbox.address('evt_u1', address, T0 + 5)).toBe(true);
        expect(await s.outbox.address('evt_u1', address, T0 + 5)).toBe(false);
        expect(await s.outbox.get('evt_u1')).toMatchObject({ target: 'standard', url: 'http://127.0.0.1:3/x', body: '{"a":1}', updated_at: T0 + 5 });
        expect(await s.outbox.dropUnresolved('evt_r')).toBe(false);
        expect(await s.outbox.dropUnresolved('evt_u2')).toBe(true);
        expect(await s.outbox.get('evt_u2')).toBeUndefined();
        expect(await s.outbox.unresolved(10)).toEqual([]);
      });
    });

    describe('telegram', () => {
      it('claims a post once, records it, and lets a stale claim be taken over', async () => {
        await s.requests.insert(request('req_a', { created_at: T0 + 1 }));
        await s.requests.insert(request('req_b', { created_at: T0 + 2, approval_expires_at: T0 + 10 }));
        await s.requests.insert(request('req_t1', { tier: 1, required_tier: 1 }));
        expect(ids(await s.telegram.unposted(T0 + 5, T0, 10))).toEqual(['req_a', 'req_b']);
        expect(ids(await s.telegram.unposted(T0 + 10, T0, 10))).toEqual(['req_a']);
        expect(await s.telegram.claim('req_a', 'chat', 'tok1', T0 + 5, T0)).toBe(true);
        expect(await s.telegram.claim('req_a', 'chat', 'tok2', T0 + 6, T0)).toBe(false);
        expect(ids(await s.telegram.unposted(T0 + 5, T0, 10))).toEqual(['req_b']);
        // Stale (claimed before the cut-off): someone else may take it.
        expect(await s.telegram.claim('req_a', 'chat', 'tok3', T0 + 7, T0 + 6)).toBe(true);
        expect(await s.telegram.posted('req_a', 'tok1', 11, 'pending', 'hash', false, T0 + 8)).toBe(false);
        expect(await s.telegram.posted('req_a', 'tok3', 11, 'pending', 'hash', false, T0 + 8)).toBe(true);
        expect(await s.telegram.get('req_a')).toMatchObject({ message_id: 11, claim_token: null, rendered_hash: 'hash', settled: 0, posted_at: T0 + 8 });
        expect(await s.telegram.claim('req_a', 'chat', 'tok4', T0 + 9999, T0 + 9999)).toBe(false);
        expect(await s.telegram.claim('req_b', 'chat', 'tokb', T0 + 5, T0)).toBe(true);
        await s.telegram.release('req_b', 'wrong');
        expect(await s.telegram.get('req_b')).toBeDefined();
        await s.telegram.release('req_b', 'tokb');
        expect(await s.telegram.get('req_b')).toBeUndefined();
      });

      it('adopts an unrecorded post, tracks unsettled messages and loses a concurrent render', async () => {
        await s.requests.insert(request('req_a'));
        await s.requests.insert(request('req_b'));
        await s.telegram.claim('req_a', 'chat', 'tok', T0, T0);
        expect(await s.telegram.adopt('req_a', 'other-chat', 5, T0 + 1)).toBe(false);
        expect(await s.telegram.adopt('req_a', 'chat', 5, T0 + 1)).toBe(true);
        expect(await s.telegram.adopt('req_a', 'chat', 6, T0 + 2)).toBe(false);
        await s.telegram.claim('req_b', 'chat', 'tb', T0, T0);
        await s.telegram.posted('req_b', 'tb', 7, 'pending', 'hb', false, T0 + 2);
        expect((await s.telegram.unsettled(10)).map((m) => m.request_id)).toEqual(['req_a', 'req_b']);
        expect(await s.telegram.rendered('req_a', null, 'denied', 'h1', true, T0 + 3)).toBe(true);
        expect((await s.telegram.unsettled(10)).map((m) => m.request_id)).toEqual(['req_b']);
        expect(await s.telegram.rendered('req_b', 'stale', 'denied', 'h2', true, T0 + 4)).toBe(false);
        expect(await s.telegram.get('req_b')).toMatchObject({ rendered_hash: null, settled: 0 });
      });

      it('opens one narrowing panel per request, updates it by version and prunes panels of decided requests', async () => {
        await s.requests.insert(request('req_a'));
        await s.requests.insert(request('req_b'));
        expect(await s.telegram.pruneDrafts()).toBe(0);
        const opened = await s.telegram.openDraft({ id: 'd1', request_id: 'req_a', narrowing: '{}', by: 'alice', now: T0 });
        expect(opened).toEqual({ id: 'd1', request_id: 'req_a', narrowing: '{}', version: 1, opened_by: 'alice', updated_by: 'alice' });
        expect(await s.telegram.openDraft({ id: 'd2', request_id: 'req_a', narrowing: '{"x":1}', by: 'bob', now: T0 })).toEqual(opened);
        expect(await s.telegram.draft('d2')).toBeUndefined();
        expect(await s.telegram.updateDraft('d1', 1, '{"y":2}', 'bob', T0 + 1)).toBe(true);
        expect(await s.telegram.updateDraft('d1', 1, '{"z":3}', 'carol', T0 + 2)).toBe(false);
        expect(await s.telegram.draftFor('req_a')).toMatchObject({ narrowing: '{"y":2}', version: 2, updated_by: 'bob' });
        await s.telegram.openDraft({ id: 'd3', request_id: 'req_b', narrowing: '{}', by: 'alice', now: T0 });
        await s.requests.move('req_b', 'pending', 'denied', T0 + 3);
        expect(await s.telegram.pruneDrafts()).toBe(1);
        expect(await s.telegram.draft('d3')).toBeUndefined();
        await s.telegram.closeDraft('d1');
        expect(await s.telegram.draftFor('req_a')).toBeUndefined();
      });

      it('remembers approver names', async () => {
        await s.telegram.rememberName('telegram:1', 'Alice', T0);
        await s.telegram.rememberName('telegram:2', 'Bob', T0);
        await s.telegram.rememberName('telegram:1', 'Alicia', T0 + 1);
        expect(await s.telegram.names()).toEqual(new Map([['telegram:1', 'Alicia'], ['telegram:2', 'Bob']]));
      });
    });

    describe('leases', () => {
      it('takes a free lease, renews it for its holder, refuses another holder until it expires, then hands it over', async () => {
        expect(await s.leases.get('node:a')).toBeUndefined();
        expect(await s.leases.acquire('node:a', 'a', T0, T0 + 15_000)).toBe(true);
        expect(await s.leases.get('node:a')).toEqual({ name: 'node:a', holder: 'a', expires_at: T0 + 15_000, acquired_at: T0 });
        // Renewed by its holder: later expiry, same acquisition time.
        expect(await s.leases.acquire('node:a', 'a', T0 + 5_000, T0 + 20_000)).toBe(true);
        expect(await s.leases.get('node:a')).toEqual({ name: 'node:a', holder: 'a', expires_at: T0 + 20_000, acquired_at: T0 });
        // Another holder while it holds: refused, nothing changed.
        expect(await s.leases.acquire('node:a', 'b', T0 + 19_999, T0 + 40_000)).toBe(false);
        expect((await s.leases.get('node:a'))!.holder).toBe('a');
        // Expired (at its expiry time exactly): another holder takes it.
        expect(await s.leases.acquire('node:a', 'b', T0 + 20_000, T0 + 35_000)).toBe(true);
        expect(await s.leases.get('node:a')).toEqual({ name: 'node:a', holder: 'b', expires_at: T0 + 35_000, acquired_at: T0 + 20_000 });
        // Leases are independent by name.
        expect(await s.leases.acquire('telegram:leader', 'a', T0 + 20_000, T0 + 30_000)).toBe(true);
      });

      it('releases only for its holder; a released lease is free at once', async () => {
        await s.leases.acquire('telegram:leader', 'a', T0, T0 + 15_000);
        expect(await s.leases.release('telegram:leader', 'b')).toBe(false);
        expect((await s.leases.get('telegram:leader'))!.holder).toBe('a');
        expect(await s.leases.release('telegram:leader', 'a')).toBe(true);
        expect(await s.leases.get('telegram:leader')).toBeUndefined();
        expect(await s.leases.release('telegram:leader', 'a')).toBe(false);
        expect(await s.leases.acquire('telegram:leader', 'b', T0 + 1, T0 + 15_000)).toBe(true);
      });

      it('of callers racing for a free or an expired lease, exactly one holds it', async () => {
        const holders = ['a', 'b', 'c', 'd', 'e', 'f'];
        const first = await Promise.all(holders.map((h) => s.leases.acquire('telegram:leader', h, T0, T0 + 10_000)));
        expect(first.filter(Boolean)).toHaveLength(1);
        const winner = holders[first.indexOf(true)];
        expect((await s.leases.get('telegram:leader'))!.holder).toBe(winner);
        const second = await Promise.all(holders.map((h) => s.leases.acquire('telegram:leader', h, T0 + 10_000, T0 + 20_000)));
        expect(second.filter(Boolean)).toHaveLength(1);
        expect((await s.leases.get('telegram:leader'))!.holder).toBe(holders[second.indexOf(true)]);
      });

      it('reads and writes leases inside a transaction like any repository', async () => {
        await s.transaction(async (tx) => {
          expect(await tx.leases.acquire('node:a', 'a', T0, T0 + 1_000)).toBe(true);
          expect(await tx.leases.acquire('node:a', 'b', T0, T0 + 1_000)).toBe(false);
          expect((await tx.leases.get('node:a'))!.holder).toBe('a');
        });
        await expect(
          s.transaction(async (tx) => {
            await tx.leases.release('node:a', 'a');
            throw new Error('roll back');
          }),
        ).rejects.toThrow('roll back');
        expect((await s.leases.get('node:a'))!.holder).toBe('a');
      });
    });

    describe('settings', () => {
      it('has an installation id made with the database, and keeps the last recorded service settings', async () => {
        const id = await s.settings.installationId();
        expect(id).toMatch(/^[0-9a-f]{16}$/);
        expect(await s.settings.installationId()).toBe(id);
        expect(await s.settings.readService()).toBeUndefined();
        await s.settings.recordService({ settings: '{"a":1}', recorded_at: T0, pid: 1 });
        await s.settings.recordService({ settings: '{"a":2}', recorded_at: T0 + 1, pid: 2 });
        expect(await s.settings.readService()).toEqual({ settings: '{"a":2}', recorded_at: T0 + 1, pid: 2 });
      });

      it('answers a ping', async () => {
        await expect(s.ping()).resolves.toBeUndefined();
      });
    });

    describe('transactions', () => {
      it('commits what the callback wrote and returns its result, then runs the commit hooks only', async () => {
        const hooks: string[] = [];
        const result = await s.transaction(async (tx) => {
          await tx.requests.insert(request('req_a'));
          tx.afterCommit(() => hooks.push('commit'));
          tx.afterRollback(() => hooks.push('rollback'));
          expect(hooks).toEqual([]);
          return 42;
        });
        expect(result).toBe(42);
        expect(hooks).toEqual(['commit']);
        expect((await s.requests.get('req_a'))?.status).toBe('pending');
      });

      it('rolls back everything on a throw: nothing written, the audit chain unchanged, rollback hooks run, the error rethrown', async () => {
        await s.audit.insert(auditRow(1));
        const hooks: string[] = [];
        const boom = new Error('boom');
        await expect(
          s.transaction(async (tx) => {
            await tx.requests.insert(request('req_a'));
            await tx.agents.insert(agent('agt_1', 'alpha'));
            await tx.audit.insert(auditRow(2));
            expect(await tx.audit.last()).toEqual({ seq: 2, hash: 'h2' });
            tx.afterCommit(() => hooks.push('commit'));
            tx.afterRollback(() => hooks.push('rollback'));
            throw boom;
          }),
        ).rejects.toBe(boom);
        expect(hooks).toEqual(['rollback']);
        expect(await s.requests.get('req_a')).toBeUndefined();
        expect(await s.agents.list()).toEqual([]);
        expect(await s.audit.last()).toEqual({ seq: 1, hash: 'h1' });
        expect(await s.audit.page(0, 10)).toEqual([auditRow(1)]);
      });

      it('rolls back when a statement inside fails, and the storage stays usable', async () => {
        await s.requests.insert(request('req_a', { idempotency_key: 'k' }));
        await expect(
          s.transaction(async (tx) => {
            await tx.requests.insert(request('req_b'));
            await tx.requests.insert(request('req_c', { idempotency_key: 'k' }));
          }),
        ).rejects.toBeInstanceOf(StorageUniqueError);
        expect(await s.requests.get('req_b')).toBeUndefined();
        await s.transaction(async (tx) => tx.requests.insert(request('req_d')));
        expect(await s.requests.get('req_d')).toBeDefined();
      });

      it('refuses calls on a transaction that ended', async () => {
        const kept = await s.transaction(async (tx) => tx);
        await expect(kept.requests.get('req_a')).rejects.toBeInstanceOf(TransactionEndedError);
        expect(() => kept.afterCommit(() => {})).toThrow(TransactionEndedError);
      });

      it('never lets a call outside the transaction see its uncommitted writes', async () => {
        const { wrote, release, running } = transactionHeldOpen(s);
        await wrote;
        // Before the commit (nothing) or after it (approved), never the pending row in between.
        const outside = s.requests.get('req_a').then((r) => r?.status ?? 'absent');
        release();
        await running;
        expect(['absent', 'approved']).toContain(await outside);
        expect((await s.requests.get('req_a'))?.status).toBe('approved');
      });

      it('of two transactions racing for the same move, exactly one wins', async () => {
        await s.requests.insert(request('req_a'));
        const attempt = (to: 'approved' | 'denied') =>
          s.transaction(async (tx) => {
            const r = await tx.requests.get('req_a');
            if (r?.status !== 'pending') return false;
            return tx.requests.move('req_a', 'pending', to, T0 + 1, { decidedBy: to });
          });
        const results = await Promise.all([attempt('approved'), attempt('denied'), attempt('approved'), attempt('denied')]);
        expect(results.filter(Boolean)).toHaveLength(1);
        const final = (await s.requests.get('req_a'))!;
        expect(final.status).toBe(results[0] ? 'approved' : results[1] ? 'denied' : results[2] ? 'approved' : 'denied');
        // And outside transactions: the conditional move alone decides.
        await s.requests.insert(request('req_b'));
        const moves = await Promise.all([s.requests.move('req_b', 'pending', 'approved', T0), s.requests.move('req_b', 'pending', 'denied', T0)]);
        expect(moves.filter(Boolean)).toHaveLength(1);
      });

      it('leases an outbox row to one of two competing claims', async () => {
        await s.requests.insert(request('req_a'));
        await s.outbox.insert(outboxRow('evt_1', 'req_a'));
        const claims = await Promise.all(
          ['w1', 'w2'].map((owner) => s.transaction(async (tx) => tx.outbox.claim({ now: T0 + 1, dueBy: T0 + 1, owner, leaseUntil: T0 + 100, limit: 5 }))),
        );
        expect(claims.flat().map((r: OutboxRow) => r.id)).toEqual(['evt_1']);
      });
    });
  });
}
