import type { AuditEntry, AuditLog } from './audit.ts';
import type { DecisionSink } from './events.ts';
import type { StatusMoveFields } from '../storage/rows.ts';
import type { Transaction } from '../storage/storage.ts';
import type { CredentialRow, RequestRow, RequestStatus } from './rows.ts';

/**
 * The request state machine: the only code that changes a request's status,
 * and the one that inserts a request ({@link create}: `pending`, or `approved`
 * by a tier-1 rule). Each named move is the conditional update, its
 * audit entry and its decision event (where one is sent), written in the
 * caller's transaction; it never opens one and never calls the network.
 * A move returns whether it happened: false when the request was no longer
 * in the move's `from` status (a racing caller won).
 */

/** What a move writes with, besides the caller's transaction: the audit chain and the decision events. */
export interface MachineTx {
  audit: AuditLog;
  events: DecisionSink;
}

/**
 * Whether a pending request's approval deadline has passed at `now`: it may
 * no longer be approved, and times out (the sweep, or the next vote, moves it).
 */
export function isPastApprovalDeadline(request: { approval_expires_at: number | null }, now: number): boolean {
  return request.approval_expires_at !== null && request.approval_expires_at <= now;
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

type Extra = StatusMoveFields;

function step(tx: Transaction, move: MoveName, id: string, from: RequestStatus, now: number, extra?: Extra): Promise<boolean> {
  const to = MOVES[move].to;
  assertMove(move, from, to);
  return tx.requests.move(id, from, to, now, extra);
}

async function record(m: MachineTx, tx: Transaction, id: string, type: 'approved' | 'denied' | 'timed_out' | 'revoked' | 'expired', now: number): Promise<void> {
  await m.events.record(tx, (await tx.requests.get(id))!, type, now);
}

/**
 * A move that tells the agent: the status change, its audit entry and its
 * decision event (named after the new status). False, with nothing
 * written, when the request was no longer in `from`.
 */
async function decisiveMove(
  m: MachineTx,
  tx: Transaction,
  move: 'approve' | 'deny' | 'timeOut' | 'expireUnclaimed' | 'revoke',
  id: string,
  from: RequestStatus,
  now: number,
  extra: Extra,
  entry: Omit<AuditEntry, 'requestId'>,
): Promise<boolean> {
  if (!(await step(tx, move, id, from, now, extra))) return false;
  await m.audit.append(tx, { ...entry, requestId: id }, now);
  await record(m, tx, id, MOVES[move].to, now);
  return true;
}

/**
 * Inserts a new request, `pending` or (tier 1, approved by policy) `approved`,
 * with its `request.created` entry and, for tier 1, `request.approved` by
 * `policy` (no decision event: nobody waits on it). `created.scope` and
 * `created.rules` are the parsed forms of `row.scope` and `row.rules`, as the
 * audit entry records them.
 */
export async function create(m: MachineTx, tx: Transaction, row: RequestRow, created: { actor: string; scope: unknown; rules: string[] }): Promise<void> {
  const tierOne = row.required_tier === 1;
  if (row.status !== (tierOne ? 'approved' : 'pending')) throw new Error(`request state machine: a tier-${row.required_tier} request cannot be created ${row.status}`);
  const now = row.created_at;
  await tx.requests.insert(row);
  const data = { agent: row.agent_name, resource: row.resource, tier: row.tier, required_tier: row.required_tier, scope: created.scope, ttl_seconds: row.ttl_seconds, rules: created.rules, session_key: row.session_key };
  await m.audit.append(tx, { event: 'request.created', actor: created.actor, requestId: row.id, data }, now);
  if (tierOne) await m.audit.append(tx, { event: 'request.approved', actor: 'policy', requestId: row.id, data: { tier: 1, rules: created.rules } }, now);
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

async function decide(m: MachineTx, tx: Transaction, move: 'approve' | 'deny', id: string, now: number, d: DecisionRecord, claimExpiresAt?: number): Promise<boolean> {
  const extra: Extra = {
    decidedBy: d.decidedBy,
    decidedAt: now,
    ...(d.reason ? { decisionReason: d.reason } : {}),
    ...(claimExpiresAt !== undefined ? { claimExpiresAt } : {}),
  };
  return decisiveMove(m, tx, move, id, 'pending', now, extra, { event: `request.${MOVES[move].to}`, actor: d.actor, data: d.data });
}

/** pending → approved, with the claim window's end: `request.approved`, decision event `approved`. */
export async function approve(m: MachineTx, tx: Transaction, id: string, now: number, d: DecisionRecord & { claimExpiresAt: number }): Promise<boolean> {
  return decide(m, tx, 'approve', id, now, d, d.claimExpiresAt);
}

/** pending → denied: `request.denied`, decision event `denied`. */
export async function deny(m: MachineTx, tx: Transaction, id: string, now: number, d: DecisionRecord): Promise<boolean> {
  return decide(m, tx, 'deny', id, now, d);
}

/**
 * pending → timed_out (no decision before the approval deadline), by the
 * sweep or by a vote that came too late: `request.timed_out` with what
 * noticed it (`{ approval_expires_at }` from the sweep, `{ late_vote_by }`
 * from a late vote), decision event `timed_out`.
 */
export async function timeOut(m: MachineTx, tx: Transaction, id: string, now: number, noticed: { approval_expires_at: number | null } | { late_vote_by: string }): Promise<boolean> {
  const extra = { decidedBy: 'timeout', decidedAt: now, decisionReason: 'no decision before the approval deadline' };
  return decisiveMove(m, tx, 'timeOut', id, 'pending', now, extra, { event: 'request.timed_out', actor: 'broker', data: noticed });
}

/** approved → expired (not claimed within the claim window): `request.expired`, decision event `expired`. */
export async function expireUnclaimed(m: MachineTx, tx: Transaction, request: { id: string; claim_expires_at: number | null }, now: number): Promise<boolean> {
  return decisiveMove(m, tx, 'expireUnclaimed', request.id, 'approved', now, { failure: 'not claimed within the claim window' }, {
    event: 'request.expired',
    actor: 'broker',
    data: { claim_expires_at: request.claim_expires_at, unclaimed: true },
  });
}

/** approved → issued, with the `credential.issued` entry describing the credential (no decision event). */
export async function markIssued(m: MachineTx, tx: Transaction, id: string, now: number, credential: Record<string, unknown>): Promise<boolean> {
  if (!(await step(tx, 'markIssued', id, 'approved', now))) return false;
  await m.audit.append(tx, { event: 'credential.issued', actor: 'broker', requestId: id, data: credential }, now);
  return true;
}

/**
 * approved → failed, for a request whose credential was never issued; its
 * Idempotency-Key is freed in the same step. The audit entry
 * says why: `request.failed` (the issue failed), `request.interrupted` (it
 * never began), or none when the caller records the interrupted credential
 * instead. No decision event.
 */
export async function failUnissued(
  m: MachineTx,
  tx: Transaction,
  id: string,
  now: number,
  failure: string,
  entry: { event: 'request.failed' | 'request.interrupted'; data: Record<string, unknown> } | null,
): Promise<boolean> {
  if (!(await step(tx, 'failUnissued', id, 'approved', now, { failure }))) return false;
  // Nothing was issued: the agent's retry with the same key gets a fresh attempt rather than this failure.
  await tx.idempotency.release(id);
  if (entry) await m.audit.append(tx, { event: entry.event, actor: 'broker', requestId: id, data: entry.data }, now);
  return true;
}

/** pending, approved or issued → revoked: `request.revoked` with the caller's data, decision event `revoked`. */
export async function revoke(
  m: MachineTx,
  tx: Transaction,
  id: string,
  from: 'pending' | 'approved' | 'issued',
  now: number,
  entry: { actor: string; reason: string | undefined; data: Record<string, unknown> },
): Promise<boolean> {
  return decisiveMove(m, tx, 'revoke', id, from, now, { decisionReason: entry.reason }, { event: 'request.revoked', actor: entry.actor, data: entry.data });
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
export async function expireIssued(m: MachineTx, tx: Transaction, credential: Pick<CredentialRow, 'id' | 'request_id' | 'accessor'>, now: number, cause: 'expired' | 'vanished'): Promise<boolean> {
  if (!(await tx.credentials.move(credential.id, 'live', 'ending', now, cause === 'expired' ? 'expired' : 'token no longer in Vault'))) return false;
  const ended = await step(tx, 'expireIssued', credential.request_id, 'issued', now);
  await m.audit.append(tx, { event: `credential.${cause}`, actor: 'broker', requestId: credential.request_id, data: { credential_id: credential.id, accessor: credential.accessor } }, now);
  if (ended) await record(m, tx, credential.request_id, 'expired', now);
  return true;
}
