import { beforeEach, describe, expect, it } from 'vitest';
import { createAuditLog, verifyAuditChain } from '../../../src/broker/audit.ts';
import { openDatabase, type Db } from '../../../src/db/open.ts';

let db: Db;
beforeEach(() => {
  db = openDatabase(':memory:');
  const audit = createAuditLog(db);
  for (let i = 0; i < 5; i++) audit.append({ event: 'request.created', actor: 'agent:a', requestId: `req_${i}`, data: { n: i } }, 1000 + i);
});

/** What an attacker with the database file can do: drop the guards, then edit. */
function tamper(sql: string) {
  db.exec('DROP TRIGGER audit_log_no_update; DROP TRIGGER audit_log_no_delete;');
  db.exec(sql);
}

describe('audit hash chain', () => {
  it('verifies an intact chain', () => {
    expect(verifyAuditChain(db)).toEqual({ ok: true, entries: 5 });
  });

  it('refuses updates and deletes through SQL', () => {
    expect(() => db.exec("UPDATE audit_log SET actor = 'x' WHERE seq = 2")).toThrow(/append-only/);
    expect(() => db.exec('DELETE FROM audit_log WHERE seq = 2')).toThrow(/append-only/);
  });

  it.each([
    ['an altered field', "UPDATE audit_log SET data = '{\"n\":99}' WHERE seq = 3", 3, /altered/],
    ['a removed entry', 'DELETE FROM audit_log WHERE seq = 2', 3, /removed or reordered/],
    ['a removed last-but-one entry', 'DELETE FROM audit_log WHERE seq = 4', 5, /removed or reordered/],
    ['swapped entries', 'UPDATE audit_log SET seq = seq + 100 WHERE seq IN (2, 3); UPDATE audit_log SET seq = 3 WHERE seq = 102; UPDATE audit_log SET seq = 2 WHERE seq = 103', 2, /prev_hash|altered/],
  ])('finds %s and names the first bad entry', (_name, sql, seq, problem) => {
    tamper(sql);
    const verdict = verifyAuditChain(db);
    expect(verdict.ok).toBe(false);
    if (!verdict.ok) {
      expect(verdict.seq).toBe(seq);
      expect(verdict.problem).toMatch(problem);
    }
  });
});
