import { createHash } from 'node:crypto';
import type { Db } from '../db/open.ts';
import { canonicalJson } from '../lib/canonical-json.ts';

export const GENESIS_HASH = '0'.repeat(64);

export interface AuditEntry {
  event: string;
  actor: string;
  requestId?: string | undefined;
  /** Identifiers and decisions only; callers never pass secrets here. */
  data?: Record<string, unknown>;
}

export interface AuditRow {
  seq: number;
  at: number;
  event: string;
  actor: string;
  request_id: string | null;
  data: string;
  prev_hash: string;
  hash: string;
}

function entryHash(prevHash: string, row: Omit<AuditRow, 'hash' | 'prev_hash'>): string {
  return createHash('sha256')
    .update(prevHash)
    .update(canonicalJson({ seq: row.seq, at: row.at, event: row.event, actor: row.actor, request_id: row.request_id, data: row.data }))
    .digest('hex');
}

/**
 * Appends to the hash-chained audit log. Call it inside the transaction that
 * makes the state change it records, so both land or neither does.
 */
export function createAuditLog(db: Db) {
  // The newest entry by primary key (a lookup, not a scan, whatever the log's length).
  const last = db.prepare('SELECT seq, hash FROM audit_log WHERE seq = (SELECT MAX(seq) FROM audit_log)');
  const insert = db.prepare(
    'INSERT INTO audit_log (seq, at, event, actor, request_id, data, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?)',
  );
  return {
    append(entry: AuditEntry, at: number): void {
      const prev = last.get() as { seq: number; hash: string } | undefined;
      const row = {
        seq: (prev?.seq ?? 0) + 1,
        at,
        event: entry.event,
        actor: entry.actor,
        request_id: entry.requestId ?? null,
        data: canonicalJson(entry.data ?? {}),
      };
      const prevHash = prev?.hash ?? GENESIS_HASH;
      insert.run(row.seq, row.at, row.event, row.actor, row.request_id, row.data, prevHash, entryHash(prevHash, row));
    },
  };
}

export type AuditLog = ReturnType<typeof createAuditLog>;

export type AuditVerdict = { ok: true; entries: number } | { ok: false; entries: number; seq: number; problem: string };

/**
 * Walks the chain from the first entry: a changed field breaks that entry's
 * hash, a removed entry leaves a gap in `seq` or a wrong `prev_hash`, a
 * reordered one both.
 */
export function verifyAuditChain(db: Db, onProgress?: (entries: number) => void): AuditVerdict {
  let prevHash = GENESIS_HASH;
  let expectedSeq = 1;
  let entries = 0;
  for (const row of db.prepare('SELECT * FROM audit_log ORDER BY seq').iterate() as Iterable<AuditRow>) {
    entries++;
    if (onProgress && entries % 100_000 === 0) onProgress(entries);
    if (row.seq !== expectedSeq) return { ok: false, entries, seq: row.seq, problem: `expected entry ${expectedSeq}, found ${row.seq} (entry removed or reordered)` };
    if (row.prev_hash !== prevHash) return { ok: false, entries, seq: row.seq, problem: 'prev_hash does not match the previous entry' };
    if (entryHash(prevHash, row) !== row.hash) return { ok: false, entries, seq: row.seq, problem: 'hash does not match the entry content (entry altered)' };
    prevHash = row.hash;
    expectedSeq++;
  }
  return { ok: true, entries };
}

/** Audit entries in order as plain objects (`data` parsed), for `jit audit export`. */
export function* auditEntries(db: Db, sinceSeq = 0): Generator<Record<string, unknown>> {
  for (const row of db.prepare('SELECT * FROM audit_log WHERE seq > ? ORDER BY seq').iterate(sinceSeq) as Iterable<AuditRow>) {
    yield {
      seq: row.seq,
      at: new Date(row.at).toISOString(),
      event: row.event,
      actor: row.actor,
      request_id: row.request_id,
      data: JSON.parse(row.data) as unknown,
      prev_hash: row.prev_hash,
      hash: row.hash,
    };
  }
}
