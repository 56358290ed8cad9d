import type { VoteDecisionRow, VoteRow } from '../rows.ts';
import type { VotesRepository } from '../storage.ts';
import { STILL_AN_APPROVER } from '../vote-rules.ts';
import { all, changedOne, count, sql, type Exec } from './exec.ts';

const VOTE = 'approver, decision, reason, at, grant_scope, grant_ttl_seconds';

const S = {
  insert: sql('votes_insert', `INSERT INTO votes (request_id, approver, decision, reason, at, grant_scope, grant_ttl_seconds) VALUES ($1, $2, $3, $4, $5, $6, $7)
    ON CONFLICT (request_id, approver) DO NOTHING`),
  has: sql('votes_has', 'SELECT 1 FROM votes WHERE request_id = $1 AND approver = $2'),
  countApprovals: sql('votes_count_approvals', `SELECT COUNT(*) AS n FROM votes WHERE request_id = $1 AND decision = 'approve' ${STILL_AN_APPROVER}`),
  of: sql('votes_of', `SELECT ${VOTE} FROM votes WHERE request_id = $1 ORDER BY at, approver`),
  approvals: sql('votes_approvals', `SELECT ${VOTE} FROM votes WHERE request_id = $1 AND decision = 'approve' ${STILL_AN_APPROVER} ORDER BY at, approver`),
  // `seq` numbers the votes as cast (inserted under the write lock, so in commit order): each metrics scrape reads only what is new.
  newest: sql('votes_newest', 'SELECT COALESCE(MAX(seq), 0) AS n FROM votes'),
  after: sql('votes_after', `SELECT v.seq, v.decision, v.at, r.resource, r.required_tier AS tier, r.created_at, r.decided_at, r.status
    FROM votes v JOIN requests r ON r.id = v.request_id WHERE v.seq > $1 ORDER BY v.seq LIMIT $2`),
};

export function pgVotes(x: Exec): VotesRepository {
  return {
    insert: (v) => changedOne(x.write(S.insert, [v.request_id, v.approver, v.decision, v.reason, v.at, v.grant_scope, v.grant_ttl_seconds])),
    has: async (requestId, approver) => (await x.read(S.has, [requestId, approver])).rows.length > 0,
    countApprovals: (requestId) => count(x.read(S.countApprovals, [requestId])),
    of: (requestId) => all<VoteRow>(x.read(S.of, [requestId])),
    approvals: (requestId) => all<VoteRow>(x.read(S.approvals, [requestId])),
    newestSeq: () => count(x.read(S.newest)),
    decisionsAfter: (seq, limit) => all<VoteDecisionRow>(x.read(S.after, [seq, limit])),
  };
}
