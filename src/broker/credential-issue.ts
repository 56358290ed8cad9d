import { randomBytes } from 'node:crypto';
import { StorageUniqueError } from '../storage/errors.ts';
import type { Transaction } from '../storage/storage.ts';
import { endCredential, failAbandoned } from './credential-end.ts';
import type { BrokerDeps } from './deps.ts';
import { BrokerError } from './errors.ts';
import { GATE_ISSUER, signGateJwt } from './gate-jwt.ts';
import { grantToMint } from './narrowing.ts';
import type { GateScope, RequestRow, VaultScope } from './rows.ts';
import { markIssued } from './request-machine.ts';
import { acquireGrantPolicy, markGrantPolicyWritten, policyPrefix, releaseVaultPolicy, retireGrantPolicy } from './grant-policies.ts';
import { credentialPolicyName, renderGrant } from './vault-grant.ts';
import { VAULT_RETRY_AFTER_SECONDS, vaultUnavailable } from './vault-errors.ts';

/**
 * Issuing a credential: the one path from an `approved` request to a Vault
 * token or a gate push credential ({@link issueCredential}). Ending one is
 * credential-end.ts; the crash-safety order is in docs/reliability.md.
 */

/**
 * How long a mint can possibly run, with a wide margin: a `minting` row
 * reserved longer ago than this belongs to a process that died mid-issue
 * (SIGKILL, OOM) and the sweep abandons it (lifecycle.ts), while the other
 * processes keep serving.
 *
 * The real bound: a mint makes at most two Vault calls (write the policy,
 * create the token; then the commit), each through `withToken` in
 * src/vault/node-vault-client.ts, whose every HTTP request has a 5 s
 * deadline (`timeoutMs`, default 5 000; the timer starts before a pooled
 * socket is free, so queueing counts too). One `withToken` call is at worst
 * 6 requests: getting the broker's own token (AppRole renew-self, then login:
 * 2), the call (1), after a 403 the dead-token check and re-login (lookup-self,
 * login: 2) and the one retry (1) — 30 s. Two calls: 60 s; the commit that
 * follows may wait out SQLite's busy_timeout (5 s): 65 s. Two minutes is
 * nearly twice that, for event-loop stalls (a synchronous SQLite wait holds
 * every timer of the process) and small wall-clock steps between processes.
 * If `timeoutMs` is ever made configurable, this must grow with it.
 *
 * Should a mint still outlive it, nothing leaks: the row is no longer
 * `minting`, so {@link issueCredential} cannot make it live and
 * revokes the token Vault created (see `settleLateMint`).
 */
export const STALE_MINT_MS = 120_000;

export interface VaultTokenCredential {
  type: 'vault_token';
  token: string;
  accessor: string;
  policies: string[];
  expires_at: string;
}

export interface GatePushCredential {
  type: 'gate_push';
  credential: string;
  jti: string;
  repo: string;
  refs: string[];
  expires_at: string;
}

export type IssuedCredential = VaultTokenCredential | GatePushCredential;
export type IssueOutcome<C extends IssuedCredential = IssuedCredential> = { ok: true; credential: C } | { ok: false; error: BrokerError };

/** What {@link reserveVaultCredential} wrote: the `minting` row and the policy it holds. */
export interface VaultReservation {
  credentialId: string;
  policyName: string;
  policyText: string;
  /** The policy is already in Vault (written for another credential with the same grant less than a minute ago): only the token is needed. */
  policyWritten: boolean;
  /** The token's TTL (and explicit max TTL). */
  ttlSeconds: number;
  /** performance.now() at the reservation: issuance latency is measured from here. */
  startedAt: number;
}

/**
 * Step 1 of issuing a Vault credential, in the caller's transaction `tx`. Checks
 * that the request is still approved, takes the shared policy of its grant
 * and inserts the `minting` credential row naming it (the row is the
 * policy's reference). A unique index on live rows per request makes a
 * racing second mint fail right here.
 *
 * @throws BrokerError CONFLICT when the request is not approved; the
 *   StorageUniqueError when it already has a credential.
 */
export async function reserveVaultCredential(
  deps: Pick<BrokerDeps, 'storage' | 'ids' | 'clock' | 'config' | 'nodeId'>,
  tx: Transaction,
  request: RequestRow,
  opts: { createdInThisTransaction?: boolean } = {},
): Promise<VaultReservation> {
  const { ids, clock } = deps;
  const now = clock.now();
  // A row this transaction has just inserted is what it inserted (the transaction holds the write lock): no need to read it back.
  const current = opts.createdInThisTransaction ? request : await tx.requests.get(request.id);
  if (current?.status !== 'approved') throw new BrokerError('CONFLICT', `request ${request.id} is ${current?.status ?? 'gone'}, not approved`);
  // What is minted: the granted scope and TTL (the one place to read them); less than asked when an approver narrowed it.
  const granted = grantToMint(current);
  const scope: VaultScope = { vault_paths: granted.resource === 'vault' ? granted.vault_paths : [] };
  const ttlSeconds = granted.ttl_seconds;
  const grant = renderGrant(scope);
  const credentialId = ids.next('cred');
  // By default every credential gets a policy of its own, so deleting it
  // always disarms a token whose mint was interrupted (SPEC §10). Sharing
  // one policy per identical grant saves a Vault call per issue, but such a
  // token keeps the grant while another credential holds the policy.
  const policy = deps.config.shareGrantPolicies
    ? await acquireGrantPolicy(deps.storage, tx, grant.hash, now)
    : { name: credentialPolicyName(await policyPrefix(deps.storage, tx), credentialId), written: false };
  await tx.credentials.insert({
    id: credentialId,
    request_id: request.id,
    type: 'vault_token',
    state: 'minting',
    vault_policy: policy.name,
    accessor: null,
    jti: null,
    issued_at: null,
    expires_at: now + ttlSeconds * 1000,
    reserved_at: now,
    // While this node's lease holds, no other broker takes the row for an interrupted mint (lifecycle.ts).
    node_id: deps.nodeId ?? null,
  });
  return { credentialId, policyName: policy.name, policyText: grant.text, policyWritten: policy.written, ttlSeconds, startedAt: performance.now() };
}

/**
 * Issues the credential of an `approved` request, whatever its resource, at
 * most once. The one issuing path: tier-1 requests (request-credential.ts)
 * and claims (claim.ts) both come here.
 *
 * A Vault token, in three steps:
 *
 * 1. One transaction inserts a `minting` credential row holding the
 *    grant's ephemeral policy ({@link reserveVaultCredential}). A caller
 *    that already committed it in its own transaction (a tier-1 request,
 *    with the request row) passes it as `reservation`; otherwise it is
 *    committed here, before Vault is called.
 * 2. Vault: write that policy unless it is already there (a repeated grant
 *    costs one call), then create an orphan, non-renewable token bound to
 *    it whose explicit max TTL is the grant.
 * 3. One transaction marks the row live and the request issued.
 *
 * If Vault fails in step 2 the row is abandoned and the policy retired (and
 * deleted unless other live credentials hold it; the reaper finishes the
 * deletion if Vault is still down), so nothing half-issued outlives the
 * call. A crash between 1 and 3 leaves a `minting` row (naming this
 * node, `deps.nodeId`) that is cleaned up the same way, by any broker's
 * reconciliation or sweep once it is provably dead: its node's lease lapsed,
 * or it is older than {@link STALE_MINT_MS} (lifecycle.ts). A mint that
 * finishes after that cannot make the row live; its token is revoked.
 *
 * A gate push credential: the JWT is signed first (no I/O), then one
 * transaction inserts the live credential row and marks the request issued.
 *
 * Refusals (the request is no longer approved, or already has a
 * credential) and Vault failures come back as `{ ok: false }`.
 */
export async function issueCredential(deps: BrokerDeps, request: RequestRow, reservation?: VaultReservation): Promise<IssueOutcome> {
  if (request.resource === 'gate') {
    if (reservation) throw new Error(`issueCredential: request ${request.id} is a gate request; there is no Vault reservation to complete`);
    const started = performance.now();
    const outcome = await issueGateCredential(deps, request);
    deps.metrics.issuance('gate', (performance.now() - started) / 1000, outcome.ok ? 'issued' : 'failed');
    return outcome;
  }
  let reserved = reservation;
  if (!reserved) {
    try {
      reserved = await deps.storage.transaction((tx) => reserveVaultCredential(deps, tx, request));
    } catch (err) {
      const refused = issueRefused(err, request.id);
      if (refused) return { ok: false, error: refused };
      throw err;
    }
  }
  const outcome = await completeMint(deps, request, reserved);
  deps.metrics.issuance('vault', (performance.now() - reserved.startedAt) / 1000, outcome.ok ? 'issued' : 'failed');
  return outcome;
}

/** The BrokerError for an issue refused because of the request's state (or a credential it already has), or undefined for anything else. */
function issueRefused(err: unknown, requestId: string): BrokerError | undefined {
  if (err instanceof BrokerError) return err;
  if (err instanceof StorageUniqueError) {
    return new BrokerError('CONFLICT', `the credential of request ${requestId} has already been issued`);
  }
  return undefined;
}

/**
 * The gate side of {@link issueCredential}: the JWT is signed first (no
 * I/O), then one transaction inserts the live credential row (the unique
 * index refuses a second) and marks the request issued. Only the jti is
 * stored; the JWT itself is returned once.
 */
async function issueGateCredential(deps: BrokerDeps, request: RequestRow): Promise<IssueOutcome<GatePushCredential>> {
  const { storage, clock, ids } = deps;
  // The granted refs and TTL: less than asked when an approver narrowed the request.
  const granted = grantToMint(request);
  const scope: GateScope = granted.resource === 'gate' ? { repo: granted.repo, refs: granted.refs } : { repo: '', refs: [] };
  const now = clock.now();
  const iat = Math.floor(now / 1000);
  const exp = iat + granted.ttl_seconds;
  const jti = `gate_${randomBytes(16).toString('hex')}`;
  // One key for the JWT and the audit entry's kid (the key ring may move on meanwhile): `jit keys revoke` finds the credential by this kid.
  const signer = deps.keys.current();
  const kid = signer.kid;
  const jwt = signGateJwt({ current: () => signer }, { iss: GATE_ISSUER, sub: request.agent_name, repo: scope.repo, refs: scope.refs, iat, exp, jti, request_id: request.id });
  const credentialId = ids.next('cred');
  try {
    await storage.transaction(async (tx) => {
      const current = await tx.requests.get(request.id);
      if (current?.status !== 'approved') throw new BrokerError('CONFLICT', `request ${request.id} is ${current?.status ?? 'gone'}, not approved`);
      await tx.credentials.insert({ id: credentialId, request_id: request.id, type: 'gate_push', state: 'live', vault_policy: null, accessor: null, jti, issued_at: now, expires_at: exp * 1000 });
      if (!(await markIssued(deps, tx, request.id, now, { credential_id: credentialId, jti, kid, repo: scope.repo, refs: scope.refs, expires_at: exp * 1000 }))) {
        throw new BrokerError('CONFLICT', `request ${request.id} changed while being issued`);
      }
    });
  } catch (err) {
    const refused = issueRefused(err, request.id);
    if (refused) return { ok: false, error: refused };
    throw err;
  }
  return { ok: true, credential: { type: 'gate_push', credential: jwt, jti, repo: scope.repo, refs: scope.refs, expires_at: new Date(exp * 1000).toISOString() } };
}

async function completeMint(deps: BrokerDeps, request: RequestRow, reservation: VaultReservation): Promise<IssueOutcome<VaultTokenCredential>> {
  const { storage, audit, vault, clock, log } = deps;
  const { credentialId, policyName } = reservation;
  // The policy write and the token create go out together: Vault resolves a
  // token's policies on every use, so a token created a moment before its
  // policy exists has no access until then (never more than its grant), and
  // the agent only gets it once both calls succeeded. One Vault round trip
  // of latency instead of two.
  const [written, minted] = await Promise.allSettled([
    reservation.policyWritten ? Promise.resolve() : vault.writePolicy(policyName, reservation.policyText),
    vault.createOrphanToken({
      policies: [policyName],
      ttlSeconds: reservation.ttlSeconds,
      displayName: `jit-${request.agent_name}`,
      meta: { jit_request_id: request.id, jit_agent: request.agent_name },
      ...(reservation.policyWritten ? {} : { policiesBeingWritten: [policyName] }),
    }),
  ]);
  if (written.status === 'rejected' || minted.status === 'rejected') {
    const err: unknown = written.status === 'rejected' ? written.reason : (minted as PromiseRejectedResult).reason;
    log.warn({ err, request_id: request.id }, 'vault refused or failed during issue; rolling back');
    await abandonMint(deps, credentialId, policyName, request.id);
    if (minted.status === 'fulfilled') await revokeOrRecord(deps, credentialId, minted.value.accessor, request.id);
    return { ok: false, error: vaultUnavailable(err, 'issue the credential') };
  }
  const created = minted.value;

  const now = clock.now();
  const expiresAt = now + created.leaseDurationSeconds * 1000;
  const committed = await storage.transaction(async (tx): Promise<boolean | 'abandoned'> => {
    // Recorded here rather than on its own: one commit per issue, not two.
    if (!reservation.policyWritten) await markGrantPolicyWritten(tx, policyName, now);
    if (!(await tx.credentials.markLive(credentialId, created.accessor, now, expiresAt))) {
      // Only the sweep (or a restarting process's reconciliation) moves a
      // `minting` row elsewhere: it took this mint, older than
      // STALE_MINT_MS, for an interrupted one and abandoned it. The row
      // stays dead; the token Vault just created is recorded on it and
      // revoked below.
      await tx.credentials.recordLateAccessor(credentialId, created.accessor);
      await audit.append(tx, { event: 'credential.minted_after_abandon', actor: 'broker', requestId: request.id, data: { credential_id: credentialId, accessor: created.accessor, policy: policyName } }, now);
      return 'abandoned';
    }
    if (!(await markIssued(deps, tx, request.id, now, { credential_id: credentialId, accessor: created.accessor, policy: policyName, expires_at: expiresAt, ttl_seconds: created.leaseDurationSeconds }))) {
      await tx.credentials.move(credentialId, 'live', 'ending', now, 'request changed during issue');
      return false;
    }
    return true;
  });

  if (committed === 'abandoned') {
    await settleLateMint(deps, { id: credentialId, accessor: created.accessor, vault_policy: policyName, request_id: request.id });
    return {
      ok: false,
      error: new BrokerError('VAULT_UNAVAILABLE', `issuing the credential of request ${request.id} took too long and was abandoned; nothing was issued (the token was revoked). Retry later.`, {
        retryAfterSeconds: VAULT_RETRY_AFTER_SECONDS,
      }),
    };
  }
  if (!committed) {
    // Revoked (or otherwise ended) while Vault was minting: the token must not live.
    await endCredential(deps, { id: credentialId, accessor: created.accessor, vault_policy: policyName, request_id: request.id });
    return { ok: false, error: new BrokerError('CONFLICT', `request ${request.id} changed while its credential was being issued; the credential was revoked`) };
  }

  return {
    ok: true,
    credential: {
      type: 'vault_token',
      token: created.token,
      accessor: created.accessor,
      policies: created.policies,
      expires_at: new Date(expiresAt).toISOString(),
    },
  };
}

/**
 * The token of a mint that finished after the sweep abandoned its row (see
 * {@link STALE_MINT_MS}): revoke it and delete the policy unless other
 * credentials still hold it (the sweep may have deleted it already, or the
 * mint's own late policy write may have put it back). If Vault fails, the
 * row (whose accessor is now recorded) is put back to `abandoned`, so the
 * sweep's abandoned-row clean-up revokes the token and deletes the policy
 * when Vault is back.
 */
async function settleLateMint(deps: BrokerDeps, cred: { id: string; accessor: string; vault_policy: string; request_id: string }): Promise<void> {
  try {
    await endCredential(deps, cred);
  } catch (err) {
    deps.log.warn({ err, request_id: cred.request_id, accessor: cred.accessor }, 'could not revoke a token minted after its row was abandoned; the sweep will retry');
    await deps.storage.credentials.move(cred.id, 'failed', 'abandoned', deps.clock.now(), 'token minted after abandon');
  }
}

/**
 * A token Vault created for a mint whose policy write failed (the row is
 * already abandoned): revoked now, or, if Vault fails that too, its
 * accessor is kept on the row and the row put back to `abandoned`, so the
 * sweep's clean-up of abandoned rows revokes it.
 */
async function revokeOrRecord(deps: BrokerDeps, credentialId: string, accessor: string, requestId: string): Promise<void> {
  try {
    await deps.vault.revokeAccessor(accessor);
  } catch (err) {
    deps.log.warn({ err, request_id: requestId, accessor }, 'could not revoke the token of a failed issue yet; the sweep will retry');
    await deps.storage.transaction(async (tx) => {
      await tx.credentials.recordLateAccessor(credentialId, accessor);
      await tx.credentials.move(credentialId, 'failed', 'abandoned', deps.clock.now(), 'token of a failed issue not yet revoked');
    });
  }
}

/**
 * Settles a failed mint: the row becomes `abandoned` and its policy is
 * retired (a token bound to it may exist that the broker never learnt of),
 * then deleted unless other live credentials still hold it, in which case
 * the last of them deletes it. Leaves the row `abandoned` for the reaper if
 * Vault is down.
 */
async function abandonMint(deps: BrokerDeps, credentialId: string, policyName: string, requestId: string): Promise<void> {
  const { storage, vault, clock, log } = deps;
  const deleteNow = await storage.transaction(async (tx) => {
    const now = clock.now();
    await tx.credentials.move(credentialId, 'minting', 'abandoned', now, 'vault failure during issue');
    await retireGrantPolicy(tx, policyName, now);
    return releaseVaultPolicy(tx, policyName, credentialId, now);
  });
  if (deleteNow) {
    try {
      await vault.deletePolicy(policyName);
    } catch (err) {
      log.warn({ err, request_id: requestId, policy: policyName }, 'could not delete ephemeral policy yet; the reaper will retry');
      return;
    }
  }
  await failAbandoned(deps, { id: credentialId, request_id: requestId, vault_policy: policyName }, deleteNow);
}
