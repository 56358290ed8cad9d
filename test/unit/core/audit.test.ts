import { beforeEach, describe, expect, it } from 'vitest';
import { AUDIT_FULL_PER_WINDOW, AUDIT_WINDOW_MS, createAuditLog, signAuditHead, verifyAuditChain } from '../../../src/broker/audit.ts';
import { openDatabase, type Db } from '../../../src/db/open.ts';
import { createKeyRing } from '../../../src/keys/key-ring.ts';

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
    expect(verifyAuditChain(db)).toMatchObject({ ok: true, entries: 5 });
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

describe('signed chain heads', () => {
  const ring = () => createKeyRing({ config: { dbPath: ':memory:', signingKey: undefined } });

  it('an intact chain with a signed head verifies, and the head is reported', () => {
    const keys = ring();
    const head = signAuditHead(db, keys.current(), 2000);
    expect(head).toMatchObject({ seq: 5, kid: keys.current().kid });
    const verdict = verifyAuditChain(db, { jwks: keys.jwks() });
    expect(verdict).toMatchObject({ ok: true, entries: 5, heads: { checked: 1, unchecked: 0, newest: { seq: 5 } } });
  });

  it('signs again only when the chain moved (or the key changed)', () => {
    const keys = ring();
    expect(signAuditHead(db, keys.current(), 2000)).toBeDefined();
    expect(signAuditHead(db, keys.current(), 3000)).toBeUndefined();
    createAuditLog(db).append({ event: 'agent.added', actor: 'y' }, 3000);
    expect(signAuditHead(db, keys.current(), 4000)).toMatchObject({ seq: 6 });
    keys.rotate();
    expect(signAuditHead(db, keys.current(), 5000)).toMatchObject({ seq: 6, kid: keys.current().kid });
  });

  it('finds entries removed from the end after a signed head, naming the signed seq', () => {
    const keys = ring();
    signAuditHead(db, keys.current(), 2000);
    tamper('DELETE FROM audit_log WHERE seq >= 4');
    expect(verifyAuditChain(db).ok).toBe(true); // the chain alone cannot tell
    const verdict = verifyAuditChain(db, { jwks: keys.jwks() });
    expect(verdict).toMatchObject({ ok: false, seq: 4 });
    if (!verdict.ok) expect(verdict.problem).toMatch(/entries missing after entry 3 \(signed head seq 5, .*the log ends at entry 3/);
  });

  it('finds a chain rewritten under a signed head', () => {
    const keys = ring();
    signAuditHead(db, keys.current(), 2000);
    tamper('DELETE FROM audit_log WHERE seq = 5');
    createAuditLog(db).append({ event: 'request.created', actor: 'agent:a', data: { n: 'forged' } }, 1004);
    const verdict = verifyAuditChain(db, { jwks: keys.jwks() });
    expect(verdict).toMatchObject({ ok: false, seq: 5 });
    if (!verdict.ok) expect(verdict.problem).toMatch(/does not match the signed head/);
  });

  it('rejects a forged head signature', () => {
    const keys = ring();
    signAuditHead(db, keys.current(), 2000);
    db.exec("DROP TRIGGER audit_heads_no_update; UPDATE audit_heads SET hash = 'f' || substr(hash, 2)");
    const verdict = verifyAuditChain(db, { jwks: keys.jwks() });
    expect(verdict.ok).toBe(false);
    if (!verdict.ok) expect(verdict.problem).toMatch(/signed head for entry 5 .*invalid signature/);
  });

  it('cannot be fooled by a head signed with a key the ring does not know: reported unchecked, not trusted', () => {
    const keys = ring();
    const stranger = ring();
    signAuditHead(db, stranger.current(), 2000);
    tamper('DELETE FROM audit_log WHERE seq >= 4');
    const verdict = verifyAuditChain(db, { jwks: keys.jwks() });
    expect(verdict).toMatchObject({ ok: true, entries: 3, heads: { checked: 0, unchecked: 1, unknownKids: [stranger.current().kid] } });
  });
});

describe('coalesced entries', () => {
  const W = AUDIT_WINDOW_MS;
  const events = (event: string) => db.prepare('SELECT seq, actor, data FROM audit_log WHERE event = ? ORDER BY seq').all(event) as { seq: number; actor: string; data: string }[];

  it('writes the first of each key in full and counts repeats into one entry when the window closes', () => {
    const audit = createAuditLog(db);
    for (let i = 0; i < 10; i++) audit.appendCoalesced('k1', { event: 'request.rejected', actor: 'agent:a', data: { i } }, 10_000 + i);
    audit.appendCoalesced('k2', { event: 'request.rejected', actor: 'agent:b', data: {} }, 10_010);
    expect(events('request.rejected')).toHaveLength(2);
    expect(audit.closeWindows(10_000 + W - 1)).toBe(0);
    expect(audit.closeWindows(10_000 + W)).toBe(1);
    const [summary] = events('audit.suppressed');
    const first = events('request.rejected')[0]!;
    expect(JSON.parse(summary!.data)).toEqual({
      event: 'request.rejected',
      from: new Date(10_000).toISOString(),
      to: new Date(10_000 + W).toISOString(),
      suppressed: 9,
      repeats: [{ seq: first.seq, actor: 'agent:a', count: 9 }],
    });
    // A new window audits the first again.
    audit.appendCoalesced('k1', { event: 'request.rejected', actor: 'agent:a', data: {} }, 10_000 + W + 5);
    expect(events('request.rejected')).toHaveLength(3);
    expect(verifyAuditChain(db).ok).toBe(true);
  });

  it('closes every window at shutdown, so no count is lost on stop', () => {
    const audit = createAuditLog(db);
    audit.appendCoalesced('k', { event: 'auth.failed', actor: 'address:x', data: {} }, 1);
    audit.appendCoalesced('k', { event: 'auth.failed', actor: 'address:x', data: {} }, 2);
    expect(audit.closeWindows(3, { all: true })).toBe(1);
    expect(JSON.parse(events('audit.suppressed')[0]!.data)).toMatchObject({ event: 'auth.failed', suppressed: 1, to: new Date(3).toISOString() });
    expect(audit.closeWindows(4, { all: true })).toBe(0);
  });

  /** Runs `fn` inside a transaction of the caller's (as refuse() does) that then rolls back. */
  const rolledBack = (fn: () => void) => expect(() => db.transaction(() => (fn(), (() => { throw new Error('outer rollback'); })()))()).toThrow('outer rollback');

  it('a full entry whose outer transaction rolled back is not remembered: the next one is written in full', () => {
    const audit = createAuditLog(db);
    rolledBack(() => expect(audit.appendCoalesced('k', { event: 'request.rejected', actor: 'agent:a', data: { n: 1 } }, 10_000)).toBe(true));
    expect(events('request.rejected')).toHaveLength(0);
    // Not counted as a repeat of an entry that does not exist.
    expect(audit.appendCoalesced('k', { event: 'request.rejected', actor: 'agent:a', data: { n: 2 } }, 10_001)).toBe(true);
    expect(events('request.rejected').map((e) => JSON.parse(e.data))).toEqual([{ n: 2 }]);
    audit.appendCoalesced('k', { event: 'request.rejected', actor: 'agent:a', data: { n: 3 } }, 10_002);
    audit.closeWindows(10_003, { all: true });
    const first = events('request.rejected')[0]!;
    expect(JSON.parse(events('audit.suppressed')[0]!.data)).toMatchObject({ suppressed: 1, repeats: [{ seq: first.seq, count: 1 }] });
    expect(verifyAuditChain(db).ok).toBe(true);
  });

  it('a window whose summary was rolled back keeps its counts for the next close', () => {
    const audit = createAuditLog(db);
    for (let i = 0; i < 3; i++) audit.appendCoalesced('k', { event: 'request.rejected', actor: 'agent:a', data: {} }, 10_000 + i);
    // The next refusal, after the window, closes it (writing the summary) inside a transaction that rolls back.
    rolledBack(() => audit.appendCoalesced('k2', { event: 'request.rejected', actor: 'agent:b', data: {} }, 10_000 + W + 1));
    expect(events('audit.suppressed')).toHaveLength(0);
    expect(audit.closeWindows(10_000 + W + 2, { all: true })).toBe(1);
    expect(JSON.parse(events('audit.suppressed')[0]!.data)).toMatchObject({ event: 'request.rejected', suppressed: 2, repeats: [{ actor: 'agent:a', count: 2 }] });
    // And the rolled-back full entry of k2 is not remembered either.
    expect(audit.appendCoalesced('k2', { event: 'request.rejected', actor: 'agent:b', data: {} }, 10_000 + W + 3)).toBe(true);
    expect(events('request.rejected').map((e) => e.actor)).toEqual(['agent:a', 'agent:b']);
    expect(verifyAuditChain(db).ok).toBe(true);
  });

  it('an error inside its own transaction undoes its memory too', () => {
    const audit = createAuditLog(db);
    db.exec("CREATE TEMP TRIGGER fail_once BEFORE INSERT ON audit_log WHEN NEW.event = 'request.rejected' AND json_extract(NEW.data, '$.fail') = 1 BEGIN SELECT RAISE(ABORT, 'disk full'); END");
    expect(() => audit.appendCoalesced('k', { event: 'request.rejected', actor: 'agent:a', data: { fail: 1 } }, 10_000)).toThrow('disk full');
    expect(audit.appendCoalesced('k', { event: 'request.rejected', actor: 'agent:a', data: { fail: 0 } }, 10_001)).toBe(true);
    expect(events('request.rejected')).toHaveLength(1);
  });

  it('caps full entries per window across keys; the rest are counted', () => {
    const audit = createAuditLog(db);
    for (let i = 0; i < AUDIT_FULL_PER_WINDOW + 50; i++) audit.appendCoalesced(`addr${i}`, { event: 'auth.failed', actor: `address:${i}`, data: {} }, 100);
    expect(events('auth.failed')).toHaveLength(AUDIT_FULL_PER_WINDOW);
    audit.closeWindows(100 + W);
    expect(JSON.parse(events('audit.suppressed')[0]!.data)).toMatchObject({ suppressed: 50, repeats: [], over_cap: { count: 50, distinct: 50 } });
  });
});
