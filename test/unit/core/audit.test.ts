import { createHash } from 'node:crypto';
import { beforeEach, describe, expect, it } from 'vitest';
import { canonicalJson } from '../../../src/lib/canonical-json.ts';
import { AUDIT_FULL_PER_WINDOW, AUDIT_WINDOW_MS, createAuditLog, signAuditHead, verifyAuditChain, type AuditEntry, type AuditLog } from '../../../src/broker/audit.ts';
import { openSqliteStorage, sqliteDatabase, type Db } from '../../../src/storage/sqlite/index.ts';
import type { Storage, Transaction } from '../../../src/storage/storage.ts';
import { createKeyRing } from '../../../src/keys/key-ring.ts';

let storage: Storage;
let db: Db;
/** One entry in a transaction of its own. */
const appendOne = (audit: AuditLog, entry: AuditEntry, at: number): Promise<number> => storage.transaction((tx) => audit.append(tx, entry, at));
beforeEach(async () => {
  storage = openSqliteStorage(':memory:');
  db = sqliteDatabase(storage);
  const audit = createAuditLog(storage);
  for (let i = 0; i < 5; i++) await appendOne(audit, { event: 'request.created', actor: 'agent:a', requestId: `req_${i}`, data: { n: i } }, 1000 + i);
});

/** What an attacker with the database file can do: drop the guards, then edit. */
function tamper(sql: string) {
  db.exec('DROP TRIGGER audit_log_no_update; DROP TRIGGER audit_log_no_delete;');
  db.exec(sql);
}

describe('audit hash chain', () => {
  it('verifies an intact chain', async () => {
    expect(await verifyAuditChain(storage)).toMatchObject({ ok: true, entries: 5 });
  });

  it('each hash is sha256(prev_hash || canonical JSON of the entry), as every earlier version computed it', async () => {
    const audit = createAuditLog(storage);
    // Text that JSON escapes, a null request id, nested data: the entry's canonical form is written out by hand in audit.ts.
    await appendOne(audit, { event: 'agent.added', actor: 'operator:"ä\\n\u2028', data: { z: [1, { y: 'é' }], a: null } }, 2000);
    const rows = db.prepare('SELECT * FROM audit_log ORDER BY seq').all() as { seq: number; at: number; event: string; actor: string; request_id: string | null; data: string; prev_hash: string; hash: string }[];
    expect(rows).toHaveLength(6);
    expect(rows[5]!.request_id).toBeNull();
    let prev = '0'.repeat(64);
    for (const r of rows) {
      const canonical = canonicalJson({ seq: r.seq, at: r.at, event: r.event, actor: r.actor, request_id: r.request_id, data: r.data });
      expect(r.prev_hash).toBe(prev);
      expect(r.hash).toBe(createHash('sha256').update(prev).update(canonical).digest('hex'));
      prev = r.hash;
    }
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
  ])('finds %s and names the first bad entry', async (_name, sql, seq, problem) => {
    tamper(sql);
    const verdict = await verifyAuditChain(storage);
    expect(verdict.ok).toBe(false);
    if (!verdict.ok) {
      expect(verdict.seq).toBe(seq);
      expect(verdict.problem).toMatch(problem);
    }
  });
});

describe('signed chain heads', () => {
  const ring = () => createKeyRing({ config: { dbPath: ':memory:', signingKey: undefined } });

  it('an intact chain with a signed head verifies, and the head is reported', async () => {
    const keys = ring();
    const head = await signAuditHead(storage, keys.current(), 2000);
    expect(head).toMatchObject({ seq: 5, kid: keys.current().kid });
    const verdict = await verifyAuditChain(storage, { jwks: keys.jwks() });
    expect(verdict).toMatchObject({ ok: true, entries: 5, heads: { checked: 1, unchecked: 0, newest: { seq: 5 } } });
  });

  it('signs again only when the chain moved (or the key changed)', async () => {
    const keys = ring();
    expect(await signAuditHead(storage, keys.current(), 2000)).toBeDefined();
    expect(await signAuditHead(storage, keys.current(), 3000)).toBeUndefined();
    await appendOne(createAuditLog(storage), { event: 'agent.added', actor: 'y' }, 3000);
    expect(await signAuditHead(storage, keys.current(), 4000)).toMatchObject({ seq: 6 });
    keys.rotate();
    expect(await signAuditHead(storage, keys.current(), 5000)).toMatchObject({ seq: 6, kid: keys.current().kid });
  });

  it('finds entries removed from the end after a signed head, naming the signed seq', async () => {
    const keys = ring();
    await signAuditHead(storage, keys.current(), 2000);
    tamper('DELETE FROM audit_log WHERE seq >= 4');
    expect((await verifyAuditChain(storage)).ok).toBe(true); // the chain alone cannot tell
    const verdict = await verifyAuditChain(storage, { jwks: keys.jwks() });
    expect(verdict).toMatchObject({ ok: false, seq: 4 });
    if (!verdict.ok) expect(verdict.problem).toMatch(/entries missing after entry 3 \(signed head seq 5, .*the log ends at entry 3/);
  });

  it('finds a chain rewritten under a signed head', async () => {
    const keys = ring();
    await signAuditHead(storage, keys.current(), 2000);
    tamper('DELETE FROM audit_log WHERE seq = 5');
    await appendOne(createAuditLog(storage), { event: 'request.created', actor: 'agent:a', data: { n: 'forged' } }, 1004);
    const verdict = await verifyAuditChain(storage, { jwks: keys.jwks() });
    expect(verdict).toMatchObject({ ok: false, seq: 5 });
    if (!verdict.ok) expect(verdict.problem).toMatch(/does not match the signed head/);
  });

  it('rejects a forged head signature', async () => {
    const keys = ring();
    await signAuditHead(storage, keys.current(), 2000);
    db.exec("DROP TRIGGER audit_heads_no_update; UPDATE audit_heads SET hash = 'f' || substr(hash, 2)");
    const verdict = await verifyAuditChain(storage, { jwks: keys.jwks() });
    expect(verdict.ok).toBe(false);
    if (!verdict.ok) expect(verdict.problem).toMatch(/signed head for entry 5 .*invalid signature/);
  });

  it('cannot be fooled by a head signed with a key the ring does not know: reported unchecked, not trusted', async () => {
    const keys = ring();
    const stranger = ring();
    await signAuditHead(storage, stranger.current(), 2000);
    tamper('DELETE FROM audit_log WHERE seq >= 4');
    const verdict = await verifyAuditChain(storage, { jwks: keys.jwks() });
    expect(verdict).toMatchObject({ ok: true, entries: 3, heads: { checked: 0, unchecked: 1, unknownKids: [stranger.current().kid] } });
  });
});

describe('coalesced entries', () => {
  const W = AUDIT_WINDOW_MS;
  const events = (event: string) => db.prepare('SELECT seq, actor, data FROM audit_log WHERE event = ? ORDER BY seq').all(event) as { seq: number; actor: string; data: string }[];

  it('writes the first of each key in full and counts repeats into one entry when the window closes', async () => {
    const audit = createAuditLog(storage);
    for (let i = 0; i < 10; i++) await audit.appendCoalesced('k1', { event: 'request.rejected', actor: 'agent:a', data: { i } }, 10_000 + i);
    await audit.appendCoalesced('k2', { event: 'request.rejected', actor: 'agent:b', data: {} }, 10_010);
    expect(events('request.rejected')).toHaveLength(2);
    expect(await audit.closeWindows(10_000 + W - 1)).toBe(0);
    expect(await audit.closeWindows(10_000 + W)).toBe(1);
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
    await audit.appendCoalesced('k1', { event: 'request.rejected', actor: 'agent:a', data: {} }, 10_000 + W + 5);
    expect(events('request.rejected')).toHaveLength(3);
    expect((await verifyAuditChain(storage)).ok).toBe(true);
  });

  it('closes every window at shutdown, so no count is lost on stop', async () => {
    const audit = createAuditLog(storage);
    await audit.appendCoalesced('k', { event: 'auth.failed', actor: 'address:x', data: {} }, 1);
    await audit.appendCoalesced('k', { event: 'auth.failed', actor: 'address:x', data: {} }, 2);
    expect(await audit.closeWindows(3, { all: true })).toBe(1);
    expect(JSON.parse(events('audit.suppressed')[0]!.data)).toMatchObject({ event: 'auth.failed', suppressed: 1, to: new Date(3).toISOString() });
    expect(await audit.closeWindows(4, { all: true })).toBe(0);
  });

  /** Runs `fn` inside a transaction of the caller's (as refuse() does) that then rolls back. */
  const rolledBack = (fn: (tx: Transaction) => Promise<unknown>) =>
    expect(storage.transaction(async (tx) => { await fn(tx); throw new Error('outer rollback'); })).rejects.toThrow('outer rollback');

  it('a full entry whose outer transaction rolled back is not remembered: the next one is written in full', async () => {
    const audit = createAuditLog(storage);
    await rolledBack(async (tx) => expect(await audit.appendCoalesced('k', { event: 'request.rejected', actor: 'agent:a', data: { n: 1 } }, 10_000, tx)).toBe(true));
    expect(events('request.rejected')).toHaveLength(0);
    // Not counted as a repeat of an entry that does not exist.
    expect(await audit.appendCoalesced('k', { event: 'request.rejected', actor: 'agent:a', data: { n: 2 } }, 10_001)).toBe(true);
    expect(events('request.rejected').map((e) => JSON.parse(e.data))).toEqual([{ n: 2 }]);
    await audit.appendCoalesced('k', { event: 'request.rejected', actor: 'agent:a', data: { n: 3 } }, 10_002);
    await audit.closeWindows(10_003, { all: true });
    const first = events('request.rejected')[0]!;
    expect(JSON.parse(events('audit.suppressed')[0]!.data)).toMatchObject({ suppressed: 1, repeats: [{ seq: first.seq, count: 1 }] });
    expect((await verifyAuditChain(storage)).ok).toBe(true);
  });

  it('a window whose summary was rolled back keeps its counts for the next close', async () => {
    const audit = createAuditLog(storage);
    for (let i = 0; i < 3; i++) await audit.appendCoalesced('k', { event: 'request.rejected', actor: 'agent:a', data: {} }, 10_000 + i);
    // The next refusal, after the window, closes it (writing the summary) inside a transaction that rolls back.
    await rolledBack((tx) => audit.appendCoalesced('k2', { event: 'request.rejected', actor: 'agent:b', data: {} }, 10_000 + W + 1, tx));
    expect(events('audit.suppressed')).toHaveLength(0);
    expect(await audit.closeWindows(10_000 + W + 2, { all: true })).toBe(1);
    expect(JSON.parse(events('audit.suppressed')[0]!.data)).toMatchObject({ event: 'request.rejected', suppressed: 2, repeats: [{ actor: 'agent:a', count: 2 }] });
    // And the rolled-back full entry of k2 is not remembered either.
    expect(await audit.appendCoalesced('k2', { event: 'request.rejected', actor: 'agent:b', data: {} }, 10_000 + W + 3)).toBe(true);
    expect(events('request.rejected').map((e) => e.actor)).toEqual(['agent:a', 'agent:b']);
    expect((await verifyAuditChain(storage)).ok).toBe(true);
  });

  it('an error inside its own transaction undoes its memory too', async () => {
    const audit = createAuditLog(storage);
    db.exec("CREATE TEMP TRIGGER fail_once BEFORE INSERT ON audit_log WHEN NEW.event = 'request.rejected' AND json_extract(NEW.data, '$.fail') = 1 BEGIN SELECT RAISE(ABORT, 'disk full'); END");
    await expect(audit.appendCoalesced('k', { event: 'request.rejected', actor: 'agent:a', data: { fail: 1 } }, 10_000)).rejects.toThrow('disk full');
    expect(await audit.appendCoalesced('k', { event: 'request.rejected', actor: 'agent:a', data: { fail: 0 } }, 10_001)).toBe(true);
    expect(events('request.rejected')).toHaveLength(1);
  });

  it('a repeat arriving while its window\'s summary is being written is not lost', async () => {
    const audit = createAuditLog(storage);
    const entry = { event: 'request.rejected', actor: 'agent:a', data: {} } as const;
    await audit.appendCoalesced('k', entry, 10_000);
    await audit.appendCoalesced('k', entry, 10_001);
    // The close reads the window and starts writing its summary; a repeat (dated inside the window) arrives meanwhile.
    const closing = audit.closeWindows(10_000 + W);
    const late = audit.appendCoalesced('k', entry, 10_002);
    await Promise.all([closing, late]);
    await audit.closeWindows(10_000 + 2 * W, { all: true });
    const suppressed = events('audit.suppressed').reduce((n, e) => n + (JSON.parse(e.data) as { suppressed: number }).suppressed, 0);
    // Three refusals: each either written in full or counted in a summary.
    expect(events('request.rejected').length + suppressed).toBe(3);
    expect((await verifyAuditChain(storage)).ok).toBe(true);
  });

  it('caps full entries per window across keys; the rest are counted', async () => {
    const audit = createAuditLog(storage);
    for (let i = 0; i < AUDIT_FULL_PER_WINDOW + 50; i++) await audit.appendCoalesced(`addr${i}`, { event: 'auth.failed', actor: `address:${i}`, data: {} }, 100);
    expect(events('auth.failed')).toHaveLength(AUDIT_FULL_PER_WINDOW);
    await audit.closeWindows(100 + W);
    expect(JSON.parse(events('audit.suppressed')[0]!.data)).toMatchObject({ suppressed: 50, repeats: [], over_cap: { count: 50, distinct: 50 } });
  });
});
