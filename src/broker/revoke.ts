import { StorageBusyError, StorageUnavailableError } from '../storage/errors.ts';
import type { Transaction } from '../storage/storage.ts';
import type { BrokerDeps, StorageDeps } from './deps.ts';
import { BrokerError } from './errors.ts';
import { endCredential } from './credential-end.ts';
import type { CredentialRow, RequestRow, RequestStatus } from './rows.ts';
import { vaultUnavailable } from './vault-errors.ts';
import type { RequestView } from '../wire/schemas.ts';
import { revoke } from './request-machine.ts';
import { requestView } from './view.ts';

/** One request's revocation as committed: what it was, and the credential whose clean-up is still to do. */
export interface RevocationRecord {
  requestId: string;
  agent: string;
  was: RequestStatus;
  /**
   * Set when the request was issued: its credential, now `ending` (a Vault
   * token still to revoke in Vault). Also set, with `was: 'revoked'`, when
   * the request was already revoked but its credential is still `ending`.
   */
  credential?: CredentialRow;
}

type Recorded = RevocationRecord | { already: true } | { refused: RequestStatus | 'raced' | 'gone' };

/**
 * The database half of ending a request, inside the caller's transaction:
 * the status change (conditional), its `request.revoked` audit entry and
 * its `revoked` decision event (the webhook outbox) together. An issued
 * request's live credential becomes `ending`: from this commit on a gate
 * credential is refused by /gate/verify, and a Vault token is revoked by
 * whoever calls endCredential (credential-end.ts) next (this process, or
 * the service's sweep, which ends every `ending` row).
 */
async function recordRevocation(deps: StorageDeps, tx: Transaction, id: string, actor: string, reason: string | undefined, now: number): Promise<Recorded> {
  const current = await tx.requests.get(id);
  if (!current) return { refused: 'gone' };
  if (current.status === 'issued') {
    const cred = await tx.credentials.forRequest(id);
    const data = { credential_id: cred?.id, accessor: cred?.accessor, jti: cred?.jti ?? undefined, reason };
    if (!(await revoke(deps, tx, id, 'issued', now, { actor, reason, data }))) return { refused: 'raced' };
    const ending = cred && cred.state === 'live' && (await tx.credentials.move(cred.id, 'live', 'ending', now, 'revoked'));
    return { requestId: id, agent: current.agent_name, was: 'issued', ...(ending ? { credential: { ...cred, state: 'ending' as const } } : {}) };
  }
  if (current.status === 'pending' || current.status === 'approved') {
    if (!(await revoke(deps, tx, id, current.status, now, { actor, reason, data: { was: current.status, reason } }))) return { refused: 'raced' };
    return { requestId: id, agent: current.agent_name, was: current.status };
  }
  if (current.status === 'revoked') {
    // An earlier revocation whose Vault clean-up failed: its credential is still `ending`, for the caller to try again.
    const cred = await tx.credentials.forRequest(id);
    if (cred?.state === 'ending') return { requestId: id, agent: current.agent_name, was: 'revoked', credential: cred };
    return { already: true };
  }
  return { refused: current.status };
}

/**
 * Commits the revocation of one request (see {@link recordRevocation}) in
 * its own transaction. Returns null when it was already revoked (not an
 * error) and nothing is left to end; an already revoked request whose
 * credential is still `ending` (an earlier Vault failure) comes back with
 * `was: 'revoked'` and that credential. Throws CONFLICT when its status has
 * nothing to revoke.
 */
export async function commitRevocation(deps: StorageDeps, id: string, actor: string, reason?: string): Promise<RevocationRecord | null> {
  const recorded = await deps.storage.transaction((tx) => recordRevocation(deps, tx, id, actor, reason, deps.clock.now()));
  if ('already' in recorded) return null;
  if ('refused' in recorded) {
    if (recorded.refused === 'gone') throw new BrokerError('NOT_FOUND', `request ${id} not found`);
    if (recorded.refused === 'raced') throw new BrokerError('CONFLICT', `request ${id} changed while being revoked; try again`);
    throw new BrokerError('CONFLICT', `request ${id} is ${recorded.refused}; there is nothing to revoke`);
  }
  return recorded;
}

/**
 * The kill switch: ends every open request (issued, approved or pending) of
 * one agent, or of all, in ONE transaction, each with its own audit entry
 * and decision event. {@link commitRevocationsIn} runs it inside a larger
 * transaction (agent removal, key revocation) to make the two one step. Pending requests are ended too: each is one
 * approval away from a credential. With `requestIds`, ends those requests
 * instead, in that order; one gone or with nothing to revoke (expired,
 * say) is skipped, as is one already revoked unless its credential is still
 * `ending`. The Vault side of each returned
 * credential is left to endCredential (credential-end.ts).
 */
export function commitRevocations(deps: StorageDeps, filter: RevocationFilter, actor: string, reason?: string): Promise<RevocationRecord[]> {
  return deps.storage.transaction((tx) => commitRevocationsIn(tx, deps, filter, actor, reason));
}

export type RevocationFilter = { agentName?: string } | { requestIds: string[] };

/** {@link commitRevocations} inside the caller's transaction. */
export async function commitRevocationsIn(tx: Transaction, deps: StorageDeps, filter: RevocationFilter, actor: string, reason?: string): Promise<RevocationRecord[]> {
  const now = deps.clock.now();
  const out: RevocationRecord[] = [];
  const ids = 'requestIds' in filter ? filter.requestIds : (await tx.requests.open(filter)).map((row) => row.id);
  for (const id of ids) {
    const r = await recordRevocation(deps, tx, id, actor, reason, now);
    if ('requestId' in r) out.push(r);
  }
  return out;
}

/**
 * Ends a request now. A live credential is revoked in Vault (token by
 * accessor, then its ephemeral policy); a pending or approved request is
 * cancelled so it can never be issued. The state change is committed
 * before Vault is called, so a claim racing with the revoke loses; if Vault
 * is down the credential stays `ending` and the reaper finishes the job.
 * Revoking an already revoked request is not an error.
 */
export async function revokeRequest(deps: BrokerDeps, row: RequestRow, actor: string, reason?: string): Promise<RequestView> {
  await commitRevocation(deps, row.id, actor, reason);
  try {
    await finishRevocation(deps, row.id);
    return requestView(deps, (await deps.storage.requests.get(row.id))!);
  } catch (err) {
    // Committed: a database busy or lost from here on must not reach the caller as the generic "nothing was
    // changed" 503 (its `revoked` event is in the outbox, the sweep ends an `ending` credential).
    if (err instanceof StorageBusyError || err instanceof StorageUnavailableError) {
      deps.log.warn({ err: { name: err.name, message: err.message }, request_id: row.id }, 'revocation recorded, but the database failed while finishing it; the sweep finishes it');
      throw new BrokerError('UNAVAILABLE', `request ${row.id} is revoked (recorded); the database was busy or lost while finishing it, which the broker's sweep does. Retry to see its state.`, { retryAfterSeconds: 1 });
    }
    throw err;
  }
}

/**
 * The Vault half of a committed revocation: ends the request's credential
 * if it is `ending` (also after an earlier revocation whose Vault clean-up
 * failed: it is tried again now). Throws VAULT_UNAVAILABLE when Vault could
 * not be reached; the revocation stays recorded and the sweep retries.
 */
async function finishRevocation(deps: BrokerDeps, requestId: string): Promise<void> {
  const cred = await deps.storage.credentials.forRequest(requestId);
  if (cred?.state !== 'ending') return;
  try {
    await endCredential(deps, cred);
  } catch (err) {
    deps.log.warn({ err, request_id: requestId }, 'revocation recorded but Vault cleanup failed; the reaper will retry');
    throw vaultUnavailable(err, 'revoke the token in Vault (the revocation is recorded and will be retried)');
  }
}

/**
 * What {@link revokeAllLive} did to one request it found open:
 * - `revoked`: ended (its credential revoked in Vault, or it was approved and is cancelled);
 * - `vault_pending`: recorded as revoked, but Vault could not be reached (the sweep retries);
 * - `raced`: its status changed between the listing and its own transaction (run it again);
 * - `skipped`: nothing left to revoke by then (it expired or went meanwhile).
 */
export interface RevokeAllOutcome {
  request: RequestRow;
  result: 'revoked' | 'vault_pending' | 'raced' | 'skipped';
}

/**
 * Revoke-all as approvers use it (Telegram's /revokeall): every issued
 * request's credential is revoked and every approved request not yet
 * claimed is cancelled (each is one claim away from a live credential),
 * one request at a time, each in its own transaction, then its Vault half.
 * Pending requests are left for the approvers to deny. With `agentName`,
 * only that agent's.
 *
 * Not the CLI's `jit requests revoke --all`: that kill switch also ends
 * pending requests and commits every revocation in ONE transaction
 * ({@link commitRevocations}, all or nothing), then reports each Vault
 * clean-up itself (the CLI may not reach the service's Vault).
 */
export async function revokeAllLive(deps: BrokerDeps, actor: string, reason: string, agentName?: string): Promise<RevokeAllOutcome[]> {
  const of = agentName === undefined ? {} : { agentName };
  const open = [...(await deps.storage.requests.list({ status: 'issued', limit: 100_000, ...of })), ...(await deps.storage.requests.list({ status: 'approved', limit: 100_000, ...of }))];
  const out: RevokeAllOutcome[] = [];
  for (const request of open) {
    const recorded = await deps.storage.transaction((tx) => recordRevocation(deps, tx, request.id, actor, reason, deps.clock.now()));
    if ('refused' in recorded) {
      out.push({ request, result: recorded.refused === 'raced' ? 'raced' : 'skipped' });
      continue;
    }
    out.push({ request, result: (await finishOrLeaveToSweep(deps, request.id)) === 'ended' ? 'revoked' : 'vault_pending' });
  }
  return out;
}

/** {@link finishRevocation}, but a Vault failure (the sweep retries the `ending` credential) is answered `vault_pending`, not thrown. */
async function finishOrLeaveToSweep(deps: BrokerDeps, requestId: string): Promise<'ended' | 'vault_pending'> {
  try {
    await finishRevocation(deps, requestId);
    return 'ended';
  } catch (err) {
    if (!(err instanceof BrokerError && err.code === 'VAULT_UNAVAILABLE')) throw err;
    return 'vault_pending';
  }
}

/**
 * Removes an agent and ends everything it held or may still get, in one
 * transaction: its token stops working, and every open request of that
 * agent name (issued, approved, pending; an earlier agent of the same name
 * included) is revoked with its audit entry and decision event. A request
 * the agent was making at that moment either committed before (and is
 * revoked here) or is refused because the agent is gone
 * (request-credential.ts checks in its own transaction). Returns null when
 * there is no such agent; the Vault side of the returned credentials is
 * left to endCredential (credential-end.ts), or to {@link finishRevocations}
 * in the service. `removedBy` is the actor of the `agent.removed` entry
 * (`operator` for the CLI; the console's `approver:<id>`).
 */
export function removeAgentRevoking(deps: StorageDeps, name: string, actor: string, removedBy = 'operator'): Promise<RevocationRecord[] | null> {
  return deps.storage.transaction(async (tx) => {
    if (!(await deps.agents.removeIn(tx, name, removedBy))) return null;
    return commitRevocationsIn(tx, deps, { agentName: name }, actor, `agent "${name}" was removed by the operator`);
  });
}

/** What {@link finishRevocations} did to one committed revocation's credential. */
export interface FinishedRevocation {
  record: RevocationRecord;
  /** `ended`: revoked (Vault token and policy, or gate credential); `vault_pending`: Vault failed, the sweep retries; `none`: there was no credential to end. */
  result: 'ended' | 'vault_pending' | 'none';
}

/**
 * The Vault half of committed revocations, in the service (which holds the
 * Vault client): each record's `ending` credential is ended now; a Vault
 * failure leaves it `ending` for the sweep and is reported, not thrown.
 */
export async function finishRevocations(deps: BrokerDeps, records: RevocationRecord[]): Promise<FinishedRevocation[]> {
  const out: FinishedRevocation[] = [];
  for (const record of records) {
    out.push({ record, result: record.credential ? await finishOrLeaveToSweep(deps, record.requestId) : 'none' });
  }
  return out;
}
