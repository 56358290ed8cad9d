import type { Transaction } from '../storage/storage.ts';
import { sameVoter, voterOf, type Voter } from './approvers.ts';
import type { StorageDeps } from './deps.ts';
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
import type { RequestRow, RequestStatus } from './rows.ts';
import { approve, deny, isPastApprovalDeadline, timeOut, type DecisionRecord } from './request-machine.ts';

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
   * grant (audited as `approval.refused`); or (FORBIDDEN, either decision)
   * the Telegram user is no approver any more (`vote.refused`).
   */
  | {
      outcome: 'refused';
      request: RequestRow;
      code: ErrorCode;
      message: string;
      /** Set when the approval needs a passkey step-up (JIT_PASSKEY_TIER): where to approve it instead (the console's page of the request). */
      consoleUrl?: string;
    };

export interface DecisionInput {
  /**
   * Who decides: `local-cli`, `telegram:<user id>`, `approver:<id>`, …. The
   * vote is keyed by the person ({@link voterOf}): a Telegram user id
   * registered to an approver votes as `approver:<id>`, and one person has
   * one vote per request whichever channel (tier 3 counts distinct people).
   */
  approver: string;
  decision: 'approve' | 'deny';
  reason?: string | undefined;
  /** Approve only: grant less than the grant on offer (see narrowing.ts). */
  narrowing?: Narrowing | undefined;
  /**
   * INTERNAL: set only by decideInConsole (passkeys.ts), in the transaction
   * where it verified and used up a step-up assertion bound to exactly this
   * approval. Without it, an approval that needs a step-up is refused.
   */
  stepUp?: true | undefined;
}

/**
 * Whether approving this request needs a passkey step-up in the console: its
 * required tier is at least JIT_PASSKEY_TIER (never when that is unset).
 */
export function approvalNeedsStepUp(config: Pick<StorageDeps['config'], 'passkeyTier'>, row: { required_tier: number }): boolean {
  return config.passkeyTier !== undefined && row.required_tier >= config.passkeyTier;
}

/** How many distinct approvers' approvals a request needs: JIT_TIER3_QUORUM for tier 3, one below. */
export function approvalsNeeded(config: Pick<StorageDeps['config'], 'tier3Quorum'>, row: { required_tier: number }): number {
  return row.required_tier === 3 ? config.tier3Quorum : 1;
}

/** Where a request is decided in the console (the refusal of a Telegram tap or `jit approve` that needs a step-up points there). */
export function consoleRequestUrl(publicUrl: string, requestId: string): string {
  return `${publicUrl.replace(/\/+$/, '')}/console/requests/${encodeURIComponent(requestId)}`;
}

/**
 * What decideRequest needs. With `policies`, every approval's grant is
 * re-evaluated against the policy in force (the service and `jit approve`
 * always pass it); narrowing requires it.
 */
export type DecideDeps = StorageDeps & { policies?: Pick<PolicyStore, 'current'> | undefined };

/**
 * Applies one approver's decision to a pending request, exactly once. The
 * whole thing is one storage transaction with a conditional update, so any
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
export async function decideRequest(deps: DecideDeps, requestId: string, input: DecisionInput): Promise<DecideOutcome> {
  checkInput(deps, input);
  return deps.storage.transaction((tx) => decideIn(tx, deps, requestId, input));
}

function checkInput(deps: DecideDeps, input: DecisionInput): void {
  if (input.decision === 'deny' && !isEmptyNarrowing(input.narrowing)) throw new BrokerError('BAD_REQUEST', 'narrowing applies to approvals only');
  if (!isEmptyNarrowing(input.narrowing) && !deps.policies) throw new Error('decideRequest: narrowing needs the policy store (deps.policies)');
}

/** {@link decideRequest} inside the caller's transaction (the Telegram panel's "Approve as shown" checks its panel in the same one). */
export async function decideIn(tx: Transaction, deps: DecideDeps, requestId: string, input: DecisionInput): Promise<DecideOutcome> {
  checkInput(deps, input);
  const { audit, clock, config } = deps;
  const now = clock.now();
  const request = await tx.requests.get(requestId);
  if (!request) throw new BrokerError('NOT_FOUND', `request ${requestId} not found`);
  if (request.status !== 'pending') {
    await audit.append(tx, { event: 'vote.ignored', actor: input.approver, requestId, data: { decision: input.decision, status: request.status } }, now);
    return { outcome: 'already_decided', request, status: request.status, decidedBy: request.decided_by };
  }
  if (isPastApprovalDeadline(request, now)) {
    // The deadline passed before the sweep noticed: time it out now rather than approve late.
    await timeOut(deps, tx, requestId, now, { late_vote_by: input.approver });
    const timedOut = (await tx.requests.get(requestId))!;
    return { outcome: 'already_decided', request: timedOut, status: 'timed_out', decidedBy: 'timeout' };
  }

  const needed = approvalsNeeded(config, request);
  const voter = await voterOf(tx, input.approver);
  // The actor of every entry below is the person; `via` names the channel's identity when it differs.
  const actor = voter.key;
  const via = voter.key !== input.approver ? { via: input.approver } : {};
  if (!mayDecideInTelegram(deps, input.approver, voter)) {
    // The Telegram approver check let this user in, then their approver was removed before this transaction.
    const message = 'you are not an approver for this broker (any more)';
    await audit.append(tx, { event: 'vote.refused', actor, requestId, data: { decision: input.decision, reason: message, via: 'telegram' } }, now);
    return { outcome: 'refused', request, code: 'FORBIDDEN', message };
  }
  if (await alreadyVoted(tx, requestId, voter)) {
    await audit.append(tx, { event: 'vote.duplicate', actor, requestId, data: { decision: input.decision, ...via } }, now);
    return { outcome: 'already_voted', request, approvals: await tx.votes.countApprovals(requestId), needed };
  }
  if (input.decision === 'approve' && input.stepUp !== true && approvalNeedsStepUp(config, request)) {
    // Not counted: a Telegram tap or `jit approve` proves no passkey (JIT_PASSKEY_TIER). Deny needs none.
    const consoleUrl = consoleRequestUrl(config.publicUrl, requestId);
    const message = `approving a tier-${request.required_tier} request needs a passkey step-up (JIT_PASSKEY_TIER=${config.passkeyTier}): approve it in the console, ${consoleUrl}`;
    await audit.append(tx, { event: 'approval.refused', actor, requestId, data: { code: 'FORBIDDEN', message, step_up_required: true, ...via } }, now);
    return { outcome: 'refused', request, code: 'FORBIDDEN', message, consoleUrl };
  }

  let grant: Grant | undefined;
  let ceiling: Grant | undefined;
  const requested = requestedGrant(request);
  if (input.decision === 'approve') {
    const earlier = await tx.votes.approvals(requestId);
    ceiling = ceilingOf(requested, earlier);
    const refuse = async (code: ErrorCode, message: string): Promise<DecideOutcome> => {
      await audit.append(tx, { event: 'approval.refused', actor, requestId, data: { code, message, ...(input.narrowing ? { narrowing: input.narrowing } : {}) } }, now);
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

  const inserted = await tx.votes.insert({
    request_id: requestId,
    approver: actor,
    decision: input.decision,
    reason: input.reason ?? null,
    at: now,
    grant_scope: grant ? JSON.stringify(scopeOf(grant)) : null,
    grant_ttl_seconds: grant?.ttl_seconds ?? null,
  });
  if (!inserted) throw new Error('a vote appeared inside its own transaction');
  const approvals = await tx.votes.countApprovals(requestId);
  const narrowedNow = grant !== undefined && ceiling !== undefined && !sameGrant(grant, ceiling);
  await audit.append(
    tx,
    {
      event: 'vote.cast',
      actor,
      requestId,
      data: { decision: input.decision, reason: input.reason, tier: request.required_tier, ...via, ...(grant && !sameGrant(grant, requested) ? { grant: grantJson(grant) } : {}) },
    },
    now,
  );
  if (narrowedNow) {
    await audit.append(
      tx,
      {
        event: 'grant.narrowed',
        actor,
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
      ? (await tx.votes.approvals(requestId)).map((v) => v.approver).join(', ')
      : actor;
  if (grant && !(await tx.requests.setGrant(requestId, JSON.stringify(scopeOf(grant)), grant.ttl_seconds))) throw new Error('pending request changed inside its own transaction');
  const decision: DecisionRecord = {
    decidedBy: approvers,
    reason: input.reason,
    actor,
    data: {
      approvers,
      reason: input.reason,
      tier: request.required_tier,
      ...(grant ? { granted: grantJson(grant), narrowed } : {}),
      ...(grant && narrowed ? { dropped: differenceJson(grantDifference(requested, grant)) } : {}),
    },
  };
  const changed =
    to === 'approved' ? await approve(deps, tx, requestId, now, { ...decision, claimExpiresAt: now + config.claimWindowSeconds * 1000 }) : await deny(deps, tx, requestId, now, decision);
  if (!changed) throw new Error('pending request changed inside its own transaction');
  const decided = (await tx.requests.get(requestId))!;
  return to === 'approved' ? { outcome: 'approved', request: decided, grant: grant!, narrowed } : { outcome: 'denied', request: decided };
}

/** Whether the person behind `voter` already voted on the request, under this key or their other one (approvers.ts). */
async function alreadyVoted(tx: Transaction, requestId: string, voter: Voter): Promise<boolean> {
  if (await tx.votes.has(requestId, voter.key)) return true;
  if (voter.telegramId === null) return false;
  for (const vote of await tx.votes.of(requestId)) if (await sameVoter(tx, vote.approver, voter)) return true;
  return false;
}

/**
 * The Telegram approver check again, inside the deciding transaction: a
 * `telegram:<id>` identity that is no registered approver's must be in
 * TELEGRAM_APPROVERS (where a bot is configured), so a removal committed
 * between the check on the tap and this transaction still takes effect.
 */
function mayDecideInTelegram(deps: DecideDeps, identity: string, voter: Voter): boolean {
  const telegram = deps.config.telegram;
  if (!telegram || voter.key !== identity || !identity.startsWith('telegram:')) return true;
  return telegram.approvers.includes(identity.slice('telegram:'.length));
}
