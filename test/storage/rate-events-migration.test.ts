import { describe, expect, it } from 'vitest';
import { createSqliteStorage } from '../../src/storage/sqlite/index.ts';
import { migrate, openDatabase } from '../../src/storage/sqlite/open.ts';
import { openPostgresStorage, postgresPool } from '../../src/storage/postgres/index.ts';
import type { Storage } from '../../src/storage/storage.ts';
import { postgresSchemas } from '../helpers/postgres.ts';
import { T0, request } from './conformance.ts';

/*
 * The rate limit's ledger (SQLite 0021, PostgreSQL 0007) replaces counting
 * requests and agent_refusals: on upgrade, the last minute's requests and
 * refusals carry over as events, numbered per agent in time order, so an
 * agent at its limit stays there across the upgrade. agent_refusals stays
 * for a broker of the previous version still running (a rolling restart).
 */

const MINUTE = 60_000;

/** A database as the version before the ledger left it: requests and refusals, no rate_events. */
const BEFORE = {
  undo: `DROP TABLE rate_events`,
  refusals: [
    ['agt_1', T0 + 20],
    ['agt_1', T0 + 40],
  ] as const,
  requests: [
    request('req_old', { created_at: T0 + 40 - MINUTE }),
    request('req_1', { created_at: T0 + 10 }),
    request('req_2', { created_at: T0 + 30 }),
    request('req_3', { created_at: T0 + 50, agent_id: 'agt_2' }),
  ],
};

async function expectCarriedOver(s: Storage): Promise<void> {
  const since = T0 - 10 * MINUTE;
  expect(await s.rateLimits.nthNewestSince('agt_1', since, 1)).toBe(T0 + 40);
  expect(await s.rateLimits.nthNewestSince('agt_1', since, 2)).toBe(T0 + 30);
  expect(await s.rateLimits.nthNewestSince('agt_1', since, 4)).toBe(T0 + 10);
  // A minute or more before the newest event: not carried.
  expect(await s.rateLimits.nthNewestSince('agt_1', since, 5)).toBeUndefined();
  expect(await s.rateLimits.nthNewestSince('agt_2', since, 1)).toBe(T0 + 50);
  // Numbering goes on after the carried events.
  await s.rateLimits.record('agt_1', T0 + 60);
  expect(await s.rateLimits.nthNewestSince('agt_1', since, 1)).toBe(T0 + 60);
  expect(await s.rateLimits.nthNewestSince('agt_1', since, 5)).toBe(T0 + 10);
}

describe('rate limit ledger migration', () => {
  it('SQLite: carries the last minute of requests and refusals over, and keeps agent_refusals for the previous version\'s brokers', async () => {
    const db = openDatabase(':memory:');
    const before = createSqliteStorage(db);
    for (const r of BEFORE.requests) await before.requests.insert(r);
    db.exec(`${BEFORE.undo}; DELETE FROM schema_migrations WHERE version = 21`);
    for (const [agent, at] of BEFORE.refusals) db.prepare('INSERT INTO agent_refusals (agent_id, at) VALUES (?, ?)').run(agent, at);
    migrate(db);
    expect(db.prepare('SELECT COUNT(*) FROM agent_refusals').pluck().get()).toBe(2);
    await expectCarriedOver(createSqliteStorage(db));
    db.close();
  });

  it('PostgreSQL: the same', async () => {
    const url = await postgresSchemas('jit', 'm')();
    const first = await openPostgresStorage(url);
    try {
      const pool = postgresPool(first);
      for (const r of BEFORE.requests) await first.requests.insert(r);
      await pool.query(`${BEFORE.undo}; DELETE FROM schema_migrations WHERE version = 7`);
      for (const [agent, at] of BEFORE.refusals) await pool.query('INSERT INTO agent_refusals (agent_id, at) VALUES ($1, $2)', [agent, at]);
    } finally {
      await first.close();
    }
    const upgraded = await openPostgresStorage(url);
    try {
      const { rows } = await postgresPool(upgraded).query<{ n: number }>('SELECT COUNT(*)::int AS n FROM agent_refusals');
      expect(rows[0]!.n).toBe(2);
      await expectCarriedOver(upgraded);
    } finally {
      await upgraded.close();
    }
  });
});
