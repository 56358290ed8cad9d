import type { StorageDeps } from '../create-deps.ts';
import { BrokerError, type ErrorCode } from './errors.ts';
import {
  applyNarrowing,
  ceilingOf,
  checkGrantAgainstPolicy,
  differenceJson,
  grantDifference,
  grantJson,
  isEmptyNarrowing,
  requestedGrant,
  sameGrant,
  scopeOf,
  type Grant,
  type Narrowing,
} from './narrowing.ts';
import type { PolicyStore } from './policy/index.ts';
import type { RequestRow, RequestStatus } from './repository.ts';
import { approve, deny, timeOut, type DecisionRecord } from './request-machine.ts';

export type DecideOutcome =
  /** `grant` is what was approved; `narrowed` when it is less than the request asked. */
  | { outcome: 'approved'; request: RequestRow; grant: Grant; narrowed: boolean }
  | { outcome: 'denied'; request: RequestRow }
  /** Tier 3: the vote counted; more distinct approvers are needed. `grant` is the most the next vote can approve. */
  | { outcome: 'vote_recorded'; request: RequestRow; approvals: number; needed: number; grant: Grant; narrowed: boolean }
  /** Nothing changed: the request was already decided (or this approver already voted). */
  | { outcome: 'already_decided'; request: RequestRow; status: RequestStatus; decidedBy: string | null }
  | { outcome: 'already_voted'; request: RequestRow; approvals: number; needed: number }
  /**
   * The approval was not recorded and nothing changed (the request stays
   * pending): the narrowing was invalid (names something not requested,
   * widens, or leaves nothing), or the policy in force no longer allows the
   * grant. The refusal is in the audit log (`approval.refused`).
   */
  | { outcome: 'refused'; request: RequestRow; code: ErrorCode; message: string };

export interface DecisionInput {
  /** `local-cli`, `telegram:<user id>`, … — distinct strings are distinct approvers. */
  approver: string;
  decision: 'approve' | 'deny';
  reason?: string | undefined;
  /** Approve only: grant less than the grant on offer (see narrowing.ts). */
  narrowing?: Narrowing | undefined;
}

/**
 * What decideRequest needs. With `policies`, every approval's grant is
 * re-evaluated against the policy in force (the service and `jit approve`
 * always pass it); narrowing requires it.
 */
export type DecideDeps = StorageDeps & { policies?: Pick<PolicyStore, 'current'> | undefined };

/**
 * Applies one approver's decision to a pending request, exactly once. The
 * whole thing is one SQLite transaction with a conditional update, so any
 * number of taps, bots, CLIs or restarts racing on the same request produce
 * one outcome; everyone else is told it was already decided.
 *
 * Tier 2: the first approve or deny decides. Tier 3: any deny decides;
 * approval needs `JIT_TIER3_QUORUM` distinct approvers.
 *
 * Narrowing: an approve vote approves a grant, never more than the request
 * and never more than any earlier approve vote of the same request approved
 * (the "ceiling"), optionally cut down further by `input.narrowing`. On
 * tier 3 the final grant is therefore the last, narrowest one; earlier
 * votes still count because the grant only shrank after they were cast.
 * The grant is stored on the request in this same transaction, together
 * with the audit entries (`vote.cast`, `grant.narrowed`, `request.approved`)
 * and the decision event, and minting reads it from there.
 */
export function decideRequest(deps: DecideDeps, requestId: string, input: DecisionInput): DecideOutcome {
  const { db, repo, audit, clock, config } = deps;
  if (input.decision === 'deny' && !isEmptyNarrowing(input.narrowing)) throw new BrokerError('BAD_REQUEST', 'narrowing applies to approvals only');
  if (!isEmptyNarrowing(input.narrowing) && !deps.policies) throw new Error('decideRequest: narrowing needs the policy store (deps.policies)');
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
      timeOut(deps, requestId, now, { late_vote_by: input.approver });
      const timedOut = repo.getRequest(requestId)!;
      return { outcome: 'already_decided', request: timedOut, status: 'timed_out', decidedBy: 'timeout' };
    }

    const needed = request.required_tier === 3 ? config.tier3Quorum : 1;
    const countApprovals = () => db.prepare(`SELECT COUNT(*) FROM votes WHERE request_id = ? AND decision = 'approve'`).pluck().get(requestId) as number;
    if (db.prepare('SELECT 1 FROM votes WHERE request_id = ? AND approver = ?').get(requestId, input.approver) !== undefined) {
      audit.append({ event: 'vote.duplicate', actor: input.approver, requestId, data: { decision: input.decision } }, now);
      return { outcome: 'already_voted', request, approvals: countApprovals(), needed };
    }

    let grant: Grant | undefined;
    let ceiling: Grant | undefined;
    const requested = requestedGrant(request);
    if (input.decision === 'approve') {
      const earlier = db
        .prepare(`SELECT grant_scope, grant_ttl_seconds FROM votes WHERE request_id = ? AND decision = 'approve' ORDER BY at, approver`)
        .all(requestId) as { grant_scope: string | null; grant_ttl_seconds: number | null }[];
      ceiling = ceilingOf(requested, earlier);
      const refuse = (code: ErrorCode, message: string): DecideOutcome => {
        audit.append({ event: 'approval.refused', actor: input.approver, requestId, data: { code, message, ...(input.narrowing ? { narrowing: input.narrowing } : {}) } }, now);
        return { outcome: 'refused', request, code, message };
      };
      if (isEmptyNarrowing(input.narrowing)) {
        grant = ceiling;
      } else {
        const narrowed = applyNarrowing(requested, ceiling, input.narrowing!);
        if (!narrowed.ok) return refuse('BAD_REQUEST', narrowed.message);
        grant = narrowed.grant;
      }
      if (deps.policies) {
        const checked = checkGrantAgainstPolicy(deps.policies.current(), request, grant);
        if (!checked.ok) return refuse(checked.code, checked.message);
        grant = checked.grant;
      }
    }

    const inserted = db
      .prepare('INSERT OR IGNORE INTO votes (request_id, approver, decision, reason, at, grant_scope, grant_ttl_seconds) VALUES (?, ?, ?, ?, ?, ?, ?)')
      .run(requestId, input.approver, input.decision, input.reason ?? null, now, grant ? JSON.stringify(scopeOf(grant)) : null, grant?.ttl_seconds ?? null).changes === 1;
    if (!inserted) throw new Error('a vote appeared inside its own transaction');
    const approvals = countApprovals();
    const narrowedNow = grant !== undefined && ceiling !== undefined && !sameGrant(grant, ceiling);
    audit.append(
      {
        event: 'vote.cast',
        actor: input.approver,
        requestId,
        data: { decision: input.decision, reason: input.reason, tier: request.required_tier, ...(grant && !sameGrant(grant, requested) ? { grant: grantJson(grant) } : {}) },
      },
      now,
    );
    if (narrowedNow) {
      audit.append(
        {
          event: 'grant.narrowed',
          actor: input.approver,
          requestId,
          data: { from: grantJson(ceiling!), to: grantJson(grant!), dropped: differenceJson(grantDifference(ceiling!, grant!)), ...(input.narrowing ? { narrowing: input.narrowing } : {}) },
        },
        now,
      );
    }

    const narrowed = grant !== undefined && !sameGrant(grant, requested);
    if (input.decision === 'approve' && approvals < needed) {
      return { outcome: 'vote_recorded', request, approvals, needed, grant: grant!, narrowed };
    }
    const to = input.decision === 'approve' ? 'approved' : 'denied';
    const approvers =
      to === 'approved'
        ? (db.prepare(`SELECT approver FROM votes WHERE request_id = ? AND decision = 'approve' ORDER BY at, approver`).pluck().all(requestId) as string[]).join(', ')
        : input.approver;
    if (grant && !repo.setGrant(requestId, JSON.stringify(scopeOf(grant)), grant.ttl_seconds)) throw new Error('pending request changed inside its own transaction');
    const decision: DecisionRecord = {
      decidedBy: approvers,
      reason: input.reason,
      actor: input.approver,
      data: {
        approvers,
        reason: input.reason,
        tier: request.required_tier,
        ...(grant ? { granted: grantJson(grant), narrowed } : {}),
        ...(grant && narrowed ? { dropped: differenceJson(grantDifference(requested, grant)) } : {}),
      },
    };
    const changed = to === 'approved' ? approve(deps, requestId, now, { ...decision, claimExpiresAt: now + config.claimWindowSeconds * 1000 }) : deny(deps, requestId, now, decision);
    if (!changed) throw new Error('pending request changed inside its own transaction');
    const decided = repo.getRequest(requestId)!;
    return to === 'approved' ? { outcome: 'approved', request: decided, grant: grant!, narrowed } : { outcome: 'denied', request: decided };
  }).immediate();
}
