import type { StorageDeps } from '../create-deps.ts';
import { BrokerError } from './errors.ts';
import type { RequestRow, RequestStatus } from './repository.ts';

export type DecideOutcome =
  | { outcome: 'approved'; request: RequestRow }
  | { outcome: 'denied'; request: RequestRow }
  /** Tier 3: the vote counted; more distinct approvers are needed. */
  | { outcome: 'vote_recorded'; request: RequestRow; approvals: number; needed: number }
  /** Nothing changed: the request was already decided (or this approver already voted). */
  | { outcome: 'already_decided'; request: RequestRow; status: RequestStatus; decidedBy: string | null }
  | { outcome: 'already_voted'; request: RequestRow; approvals: number; needed: number };

export interface DecisionInput {
  /** `local-cli`, `telegram:<user id>`, … — distinct strings are distinct approvers. */
  approver: string;
  decision: 'approve' | 'deny';
  reason?: string | undefined;
}

/**
 * Applies one approver's decision to a pending request, exactly once. The
 * whole thing is one SQLite transaction with a conditional update, so any
 * number of taps, bots, CLIs or restarts racing on the same request produce
 * one outcome; everyone else is told it was already decided.
 *
 * Tier 2: the first approve or deny decides. Tier 3: any deny decides;
 * approval needs `JIT_TIER3_QUORUM` distinct approvers.
 */
export function decideRequest(deps: StorageDeps, requestId: string, input: DecisionInput): DecideOutcome {
  const { db, repo, audit, clock, config, events } = deps;
  return db.transaction((): DecideOutcome => {
    const now = clock.now();
    const request = repo.getRequest(requestId);
    if (!request) throw new BrokerError('NOT_FOUND', `request ${requestId} not found`);
    if (request.status !== 'pending') {
      audit.append({ event: 'vote.ignored', actor: input.approver, requestId, data: { decision: input.decision, status: request.status } }, now);
      return { outcome: 'already_decided', request, status: request.status, decidedBy: request.decided_by };
    }
    if (request.approval_expires_at !== null && request.approval_expires_at <= now) {
      // The deadline passed before the sweep noticed: time it out now rather than approve late.
      repo.transition(requestId, 'pending', 'timed_out', now, { decidedBy: 'timeout', decidedAt: now, decisionReason: 'no decision before the approval deadline' });
      audit.append({ event: 'request.timed_out', actor: 'broker', requestId, data: { late_vote_by: input.approver } }, now);
      const timedOut = repo.getRequest(requestId)!;
      events.record(timedOut, 'timed_out', now);
      return { outcome: 'already_decided', request: timedOut, status: 'timed_out', decidedBy: 'timeout' };
    }

    const needed = request.required_tier === 3 ? config.tier3Quorum : 1;
    const inserted = db
      .prepare('INSERT OR IGNORE INTO votes (request_id, approver, decision, reason, at) VALUES (?, ?, ?, ?, ?)')
      .run(requestId, input.approver, input.decision, input.reason ?? null, now).changes === 1;
    const approvals = db.prepare(`SELECT COUNT(*) FROM votes WHERE request_id = ? AND decision = 'approve'`).pluck().get(requestId) as number;
    if (!inserted) {
      audit.append({ event: 'vote.duplicate', actor: input.approver, requestId, data: { decision: input.decision } }, now);
      return { outcome: 'already_voted', request, approvals, needed };
    }
    audit.append({ event: 'vote.cast', actor: input.approver, requestId, data: { decision: input.decision, reason: input.reason, tier: request.required_tier } }, now);

    if (input.decision === 'approve' && approvals < needed) {
      return { outcome: 'vote_recorded', request, approvals, needed };
    }
    const to = input.decision === 'approve' ? 'approved' : 'denied';
    const approvers =
      to === 'approved'
        ? (db.prepare(`SELECT approver FROM votes WHERE request_id = ? AND decision = 'approve' ORDER BY at, approver`).pluck().all(requestId) as string[]).join(', ')
        : input.approver;
    const changed = repo.transition(requestId, 'pending', to, now, {
      decidedBy: approvers,
      decidedAt: now,
      ...(input.reason ? { decisionReason: input.reason } : {}),
      ...(to === 'approved' ? { claimExpiresAt: now + config.claimWindowSeconds * 1000 } : {}),
    });
    if (!changed) throw new Error('pending request changed inside its own transaction');
    audit.append({ event: `request.${to}`, actor: input.approver, requestId, data: { approvers, reason: input.reason, tier: request.required_tier } }, now);
    const decided = repo.getRequest(requestId)!;
    events.record(decided, to, now);
    return to === 'approved' ? { outcome: 'approved', request: decided } : { outcome: 'denied', request: decided };
  }).immediate();
}
