import type { AuditLog } from './audit.ts';
import type { DecisionSink } from './events.ts';
import type { CredentialRow, Repository, RequestStatus } from './repository.ts';

/**
 * The request state machine: the only code that changes a request's status
 * (a new request is inserted `pending`, or `approved` by a tier-1 rule, by
 * request-credential.ts). Each named move is the conditional update, its
 * audit entry and its decision event (where one is sent), written in the
 * caller's transaction; it never opens one and never calls the network.
 * A move returns whether it happened: false when the request was no longer
 * in the move's `from` status (a racing caller won).
 */

/** The repositories of the caller's transaction a move writes through. */
export interface MachineTx {
  repo: Repository;
  audit: AuditLog;
  events: DecisionSink;
}

/** Every allowed status change. The final statuses have none. */
export const TRANSITIONS: { readonly [F in RequestStatus]: readonly RequestStatus[] } = {
  pending: ['approved', 'denied', 'timed_out', 'revoked'],
  approved: ['issued', 'expired', 'failed', 'revoked'],
  issued: ['revoked', 'expired'],
  denied: [],
  timed_out: [],
  expired: [],
  revoked: [],
  failed: [],
};

/** The named moves and the status changes each makes (every one of them in {@link TRANSITIONS}). */
export const MOVES = {
  approve: { from: ['pending'], to: 'approved' },
  deny: { from: ['pending'], to: 'denied' },
  timeOut: { from: ['pending'], to: 'timed_out' },
  expireUnclaimed: { from: ['approved'], to: 'expired' },
  markIssued: { from: ['approved'], to: 'issued' },
  failUnissued: { from: ['approved'], to: 'failed' },
  revoke: { from: ['pending', 'approved', 'issued'], to: 'revoked' },
  expireIssued: { from: ['issued'], to: 'expired' },
} as const satisfies Record<string, { from: readonly RequestStatus[]; to: RequestStatus }>;

export type MoveName = keyof typeof MOVES;

/**
 * Checks a status change against the table. A change outside it is a bug in
 * the caller, never a race, so it throws rather than returning false.
 */
export function assertMove(move: MoveName, from: RequestStatus, to: RequestStatus): void {
  const named = MOVES[move] as { from: readonly RequestStatus[]; to: RequestStatus };
  if (!TRANSITIONS[from].includes(to) || !named.from.includes(from) || named.to !== to) {
    throw new Error(`request state machine: ${move} cannot move a request from ${from} to ${to}`);
  }
}

type Extra = Parameters<Repository['transition']>[4];

function step(tx: MachineTx, move: MoveName, id: string, from: RequestStatus, now: number, extra?: Extra): boolean {
  const to = MOVES[move].to;
  assertMove(move, from, to);
  return tx.repo.transition(id, from, to, now, extra);
}

function record(tx: MachineTx, id: string, type: 'approved' | 'denied' | 'timed_out' | 'revoked' | 'expired', now: number): void {
  tx.events.record(tx.repo.getRequest(id)!, type, now);
}

/** How an approver's decision is recorded on the request and in its audit entry (decide.ts builds both). */
export interface DecisionRecord {
  /** The approvers, as stored in `decided_by`. */
  decidedBy: string;
  /** Stored as `decision_reason` when non-empty. */
  reason?: string | undefined;
  /** The audit entry's actor (the approver whose vote decided) and data. */
  actor: string;
  data: Record<string, unknown>;
}

function decide(tx: MachineTx, move: 'approve' | 'deny', id: string, now: number, d: DecisionRecord, claimExpiresAt?: number): boolean {
  const extra: Extra = {
    decidedBy: d.decidedBy,
    decidedAt: now,
    ...(d.reason ? { decisionReason: d.reason } : {}),
    ...(claimExpiresAt !== undefined ? { claimExpiresAt } : {}),
  };
  if (!step(tx, move, id, 'pending', now, extra)) return false;
  const to = MOVES[move].to;
  tx.audit.append({ event: `request.${to}`, actor: d.actor, requestId: id, data: d.data }, now);
  record(tx, id, to, now);
  return true;
}

/** pending → approved, with the claim window's end: `request.approved`, decision event `approved`. */
export function approve(tx: MachineTx, id: string, now: number, d: DecisionRecord & { claimExpiresAt: number }): boolean {
  return decide(tx, 'approve', id, now, d, d.claimExpiresAt);
}

/** pending → denied: `request.denied`, decision event `denied`. */
export function deny(tx: MachineTx, id: string, now: number, d: DecisionRecord): boolean {
  return decide(tx, 'deny', id, now, d);
}

/**
 * pending → timed_out (no decision before the approval deadline), by the
 * sweep or by a vote that came too late: `request.timed_out` with what
 * noticed it (`{ approval_expires_at }` from the sweep, `{ late_vote_by }`
 * from a late vote), decision event `timed_out`.
 */
export function timeOut(tx: MachineTx, id: string, now: number, noticed: { approval_expires_at: number | null } | { late_vote_by: string }): boolean {
  if (!step(tx, 'timeOut', id, 'pending', now, { decidedBy: 'timeout', decidedAt: now, decisionReason: 'no decision before the approval deadline' })) return false;
  tx.audit.append({ event: 'request.timed_out', actor: 'broker', requestId: id, data: noticed }, now);
  record(tx, id, 'timed_out', now);
  return true;
}

/** approved → expired (not claimed within the claim window): `request.expired`, decision event `expired`. */
export function expireUnclaimed(tx: MachineTx, request: { id: string; claim_expires_at: number | null }, now: number): boolean {
  if (!step(tx, 'expireUnclaimed', request.id, 'approved', now, { failure: 'not claimed within the claim window' })) return false;
  tx.audit.append({ event: 'request.expired', actor: 'broker', requestId: request.id, data: { claim_expires_at: request.claim_expires_at, unclaimed: true } }, now);
  record(tx, request.id, 'expired', now);
  return true;
}

/** approved → issued, with the `credential.issued` entry describing the credential (no decision event). */
export function markIssued(tx: MachineTx, id: string, now: number, credential: Record<string, unknown>): boolean {
  if (!step(tx, 'markIssued', id, 'approved', now)) return false;
  tx.audit.append({ event: 'credential.issued', actor: 'broker', requestId: id, data: credential }, now);
  return true;
}

/**
 * approved → failed, for a request whose credential was never issued; its
 * Idempotency-Key is freed (repository `failUnissued`). The audit entry
 * says why: `request.failed` (the issue failed), `request.interrupted` (it
 * never began), or none when the caller records the interrupted credential
 * instead. No decision event.
 */
export function failUnissued(
  tx: MachineTx,
  id: string,
  now: number,
  failure: string,
  entry: { event: 'request.failed' | 'request.interrupted'; data: Record<string, unknown> } | null,
): boolean {
  assertMove('failUnissued', 'approved', MOVES.failUnissued.to);
  if (!tx.repo.failUnissued(id, now, failure)) return false;
  if (entry) tx.audit.append({ event: entry.event, actor: 'broker', requestId: id, data: entry.data }, now);
  return true;
}

/** pending, approved or issued → revoked: `request.revoked` with the caller's data, decision event `revoked`. */
export function revoke(
  tx: MachineTx,
  id: string,
  from: 'pending' | 'approved' | 'issued',
  now: number,
  entry: { actor: string; reason: string | undefined; data: Record<string, unknown> },
): boolean {
  if (!step(tx, 'revoke', id, from, now, { decisionReason: entry.reason })) return false;
  tx.audit.append({ event: 'request.revoked', actor: entry.actor, requestId: id, data: entry.data }, now);
  record(tx, id, 'revoked', now);
  return true;
}

/**
 * A live credential that stopped working on its own: past its expiry (the
 * sweep) or no longer known to Vault (reconciliation). The credential
 * becomes `ending` (its Vault clean-up still to do) and its request
 * issued → expired; the audit entry (`credential.expired` or
 * `credential.vanished`) is written whenever the credential moved, the
 * decision event `expired` when the request did. False when the credential
 * was no longer live.
 */
export function expireIssued(tx: MachineTx, credential: Pick<CredentialRow, 'id' | 'request_id' | 'accessor'>, now: number, cause: 'expired' | 'vanished'): boolean {
  if (!tx.repo.moveCredential(credential.id, 'live', 'ending', now, cause === 'expired' ? 'expired' : 'token no longer in Vault')) return false;
  const ended = step(tx, 'expireIssued', credential.request_id, 'issued', now);
  tx.audit.append({ event: `credential.${cause}`, actor: 'broker', requestId: credential.request_id, data: { credential_id: credential.id, accessor: credential.accessor } }, now);
  if (ended) record(tx, credential.request_id, 'expired', now);
  return true;
}
