import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WRITE_LOCK_KEY } from '../../src/storage/postgres/index.ts';
import { startHarness, type Harness } from '../helpers/broker-harness.ts';
import { freshPostgresDatabase } from '../helpers/postgres.ts';

/**
 * A revocation while another broker holds the shared PostgreSQL write lock
 * past lock_timeout (5 s): what the 503 means. The multi-node crash test
 * (seed 183854727) counted such a 503 as "revoked" and then expected a
 * `revoked` webhook that could never come: the database was busy, nothing
 * was changed. Pinned here: the 503 is UNAVAILABLE (not VAULT_UNAVAILABLE,
 * which does mean "recorded"), with Retry-After; the request is still
 * issued, no audit entry and no outbox row were written; the same call
 * sent again once the lock is free revokes it and queues its one event.
 */
const readRegistry = { resource: 'vault', tier: 1, reason: 'busy revoke test', vault_paths: [{ path: 'homelab/data/docker/registry', capabilities: ['read'] }] };

describe('fault: PostgreSQL write lock held by another broker during a revoke', () => {
  let h: Harness;
  let url: string;
  let other: pg.Client;
  let token: string;

  beforeAll(async () => {
    url = await freshPostgresDatabase('jit_busy_revoke');
    h = await startHarness({ env: { JIT_DATABASE_URL: url, JIT_KEY_ENCRYPTION_KEY: randomBytes(32).toString('base64') } });
    token = await h.addAgent('moltbot');
    other = new pg.Client({ connectionString: url });
    await other.connect();
  }, 60_000);

  afterAll(async () => {
    await other?.query('ROLLBACK').catch(() => {});
    await other?.end();
    await h?.close();
  });

  const facts = async (id: string) => {
    const reader = new pg.Client({ connectionString: url });
    await reader.connect();
    try {
      const status = (await reader.query<{ status: string }>('SELECT status FROM requests WHERE id = $1', [id])).rows[0]?.status;
      const events = (await reader.query<{ type: string }>('SELECT type FROM webhook_outbox WHERE request_id = $1', [id])).rows.map((r) => r.type);
      const audit = (await reader.query<{ event: string }>(`SELECT event FROM audit_log WHERE request_id = $1 AND event = 'request.revoked'`, [id])).rows.length;
      return { status, events, audit };
    } finally {
      await reader.end();
    }
  };

  it('answers 503 UNAVAILABLE with nothing changed; sent again after the lock is free, it revokes once', async () => {
    const issued = await h.call('POST', '/jit/request', { token, body: readRegistry });
    expect(issued.status).toBe(201);
    const id = issued.body.id as string;

    // Another broker's transaction holds the write lock (as one stalled mid-transaction would).
    await other.query(`BEGIN; SELECT pg_advisory_xact_lock(${WRITE_LOCK_KEY})`);
    const busy = await h.call('POST', `/jit/requests/${id}/revoke`, { token });
    expect(busy.status).toBe(503);
    expect(busy.body.code).toBe('UNAVAILABLE');
    expect(busy.headers.get('retry-after')).toBeTruthy();
    expect(await facts(id)).toEqual({ status: 'issued', events: [], audit: 0 });
    await other.query('ROLLBACK');

    const again = await h.call('POST', `/jit/requests/${id}/revoke`, { token });
    expect(again.status).toBe(200);
    expect(again.body.status).toBe('revoked');
    expect(await facts(id)).toEqual({ status: 'revoked', events: ['jit.request.revoked'], audit: 1 });
  }, 60_000);
});
