import type { AuditHeadRow, AuditRow } from '../rows.ts';
import type { AuditRepository } from '../storage.ts';
import type { Db } from './open.ts';
import type { Sync } from './sync.ts';

export function sqliteAudit(db: Db): Sync<AuditRepository> {
  const s = {
    // The newest entry by primary key (a lookup, not a scan, whatever the log's length).
    last: db.prepare('SELECT seq, hash FROM audit_log WHERE seq = (SELECT MAX(seq) FROM audit_log)'),
    insert: db.prepare('INSERT INTO audit_log (seq, at, event, actor, request_id, data, prev_hash, hash) VALUES (@seq, @at, @event, @actor, @request_id, @data, @prev_hash, @hash)'),
    hashAt: db.prepare('SELECT hash FROM audit_log WHERE seq = ?').pluck(),
    page: db.prepare('SELECT * FROM audit_log WHERE seq > ? ORDER BY seq LIMIT ?'),
    // audit_request (request_id; seq is the rowid, so each request's entries are in seq order in the index).
    ofRequest: db.prepare('SELECT * FROM audit_log WHERE request_id = ? AND seq > ? ORDER BY seq LIMIT ?'),
    latest: db.prepare(`SELECT actor, at FROM audit_log WHERE request_id = ? AND event = ? ORDER BY seq DESC LIMIT 1`),
    lastHead: db.prepare('SELECT seq, hash, at, kid, signature FROM audit_heads ORDER BY id DESC LIMIT 1'),
    insertHead: db.prepare('INSERT INTO audit_heads (seq, hash, at, kid, signature) VALUES (@seq, @hash, @at, @kid, @signature)'),
    heads: db.prepare('SELECT seq, hash, at, kid, signature FROM audit_heads ORDER BY id'),
  };
  return {
    last: () => s.last.get() as { seq: number; hash: string } | undefined,
    insert(row) {
      s.insert.run(row);
    },
    hashAt: (seq) => s.hashAt.get(seq) as string | undefined,
    page: (afterSeq, limit) => s.page.all(afterSeq, limit) as AuditRow[],
    ofRequest: (requestId, afterSeq, limit) => s.ofRequest.all(requestId, afterSeq, limit) as AuditRow[],
    latest: (requestId, event) => s.latest.get(requestId, event) as { actor: string; at: number } | undefined,
    lastHead: () => s.lastHead.get() as AuditHeadRow | undefined,
    insertHead(head) {
      s.insertHead.run(head);
    },
    heads: () => s.heads.all() as AuditHeadRow[],
  };
}
