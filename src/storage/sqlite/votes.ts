import type { VoteDecisionRow, VoteRow } from '../rows.ts';
import type { VotesRepository } from '../storage.ts';
import { STILL_AN_APPROVER } from '../vote-rules.ts';
import type { Db } from './open.ts';
import type { Sync } from './sync.ts';

export function sqliteVotes(db: Db): Sync<VotesRepository> {
  const s = {
    insert: db.prepare('INSERT OR IGNORE INTO votes (request_id, approver, decision, reason, at, grant_scope, grant_ttl_seconds) VALUES (?, ?, ?, ?, ?, ?, ?)'),
    has: db.prepare('SELECT 1 FROM votes WHERE request_id = ? AND approver = ?'),
    countApprovals: db.prepare(`SELECT COUNT(*) FROM votes WHERE request_id = ? AND decision = 'approve' ${STILL_AN_APPROVER}`).pluck(),
    of: db.prepare(`SELECT approver, decision, reason, at, grant_scope, grant_ttl_seconds FROM votes WHERE request_id = ? ORDER BY at, approver`),
    approvals: db.prepare(`SELECT approver, decision, reason, at, grant_scope, grant_ttl_seconds FROM votes WHERE request_id = ? AND decision = 'approve' ${STILL_AN_APPROVER} ORDER BY at, approver`),
    // The rowid numbers the votes as cast: each metrics scrape reads only what is new.
    newest: db.prepare('SELECT COALESCE(MAX(rowid), 0) FROM votes').pluck(),
    after: db.prepare(`SELECT v.rowid AS seq, v.decision, v.at, r.resource, r.required_tier AS tier, r.created_at, r.decided_at, r.status
        FROM votes v JOIN requests r ON r.id = v.request_id WHERE v.rowid > ? ORDER BY v.rowid LIMIT ?`),
  };
  return {
    insert: (v) => s.insert.run(v.request_id, v.approver, v.decision, v.reason, v.at, v.grant_scope, v.grant_ttl_seconds).changes === 1,
    has: (requestId, approver) => s.has.get(requestId, approver) !== undefined,
    countApprovals: (requestId) => s.countApprovals.get(requestId) as number,
    of: (requestId) => s.of.all(requestId) as VoteRow[],
    approvals: (requestId) => s.approvals.all(requestId) as VoteRow[],
    newestSeq: () => s.newest.get() as number,
    decisionsAfter: (seq, limit) => s.after.all(seq, limit) as VoteDecisionRow[],
  };
}
