import type { BrokerDeps } from './deps.ts';
import { endCredential, failAbandoned } from './credential-end.ts';
import { STALE_MINT_MS } from './credential-issue.ts';
import type { CredentialRow } from './rows.ts';
import { expireIssued, expireUnclaimed, failUnissued, timeOut } from './request-machine.ts';
import { policyPrefix, releaseVaultPolicy, retireGrantPolicy } from './grant-policies.ts';
import { LEGACY_POLICY_PREFIX } from './vault-grant.ts';

export interface SweepSummary {
  /** Interrupted issues settled: `minting` rows abandoned and tier-1 requests failed (see {@link settleInterruptedIssues}). */
  interruptedMints: number;
  timedOut: number;
  claimExpired: number;
  credentialsExpired: number;
  credentialsEnded: number;
  policiesCleaned: number;
  vaultErrors: number;
}

const emptySummary = (): SweepSummary => ({ interruptedMints: 0, timedOut: 0, claimExpired: 0, credentialsExpired: 0, credentialsEnded: 0, policiesCleaned: 0, vaultErrors: 0 });

/**
 * One pass of the timers, driven entirely by what the database says, so a
 * restart resumes them: pending requests past their approval deadline time
 * out, approved ones past the claim window expire, live credentials past
 * their expiry are revoked, and any Vault clean-up that failed earlier is
 * retried. Issues interrupted more than {@link STALE_MINT_MS} ago (a broker
 * process died mid-issue while others keep running) are settled as startup
 * reconciliation settles them, and their policies deleted in the same pass.
 */
export async function sweep(deps: BrokerDeps): Promise<SweepSummary> {
  const { storage, clock, log } = deps;
  const summary = emptySummary();
  const now = clock.now();

  // No live mint is older than STALE_MINT_MS, so this is safe while other processes mint.
  summary.interruptedMints = await settleInterruptedIssues(deps, now - STALE_MINT_MS, now, STALE_INTERRUPTED);

  await storage.transaction(async (tx) => {
    for (const r of await tx.requests.pendingPastDeadline(now, 500)) {
      if (await timeOut(deps, tx, r.id, now, { approval_expires_at: r.approval_expires_at })) summary.timedOut++;
    }
    for (const r of await tx.requests.approvedPastClaimWindow(now, 500)) {
      if (await expireUnclaimed(deps, tx, r, now)) summary.claimExpired++;
    }
    for (const c of await tx.credentials.livePastExpiry(now, 500)) {
      if (await expireIssued(deps, tx, c, now, 'expired')) summary.credentialsExpired++;
    }
  });

  for (const c of await storage.credentials.inState('ending', 500)) {
    try {
      await endCredential(deps, c);
      summary.credentialsEnded++;
    } catch (err) {
      summary.vaultErrors++;
      log.warn({ err, request_id: c.request_id }, 'could not end credential in Vault yet; will retry');
    }
  }
  for (const c of await storage.credentials.inState('abandoned', 500)) {
    if (await deleteAbandonedPolicy(deps, c)) summary.policiesCleaned++;
    else summary.vaultErrors++;
  }
  return summary;
}

/**
 * Finishes a failed mint: deletes its policy unless other credentials still
 * hold it (then the last of them deletes it), and marks the row failed.
 */
async function deleteAbandonedPolicy(deps: BrokerDeps, c: CredentialRow): Promise<boolean> {
  const policy = c.vault_policy;
  const deleteNow = policy !== null && (await deps.storage.transaction((tx) => releaseVaultPolicy(tx, policy, c.id, deps.clock.now())));
  try {
    // Known only when Vault minted the token after the row was abandoned and revoking it failed then (credential-issue.ts).
    if (c.accessor) await deps.vault.revokeAccessor(c.accessor);
    if (deleteNow) await deps.vault.deletePolicy(policy);
  } catch (err) {
    deps.log.warn({ err, request_id: c.request_id }, 'could not delete abandoned policy yet; will retry');
    return false;
  }
  await failAbandoned(deps, c, deleteNow);
  return true;
}

const INTERRUPTED = 'interrupted by a broker restart; request again';
const STALE_INTERRUPTED = 'interrupted: the broker process issuing it stopped; request again';

/**
 * Settles issues that were interrupted (their process died) and that no
 * live process can still be running:
 *
 * - A `minting` row reserved before `before` means a broker died
 *   between writing the policy and recording the token. Its accessor is
 *   unknown, so the token cannot be revoked by name. The row is abandoned
 *   and its policy retired at once (no new credential is bound to it); the
 *   sweep's abandoned-row pass deletes the policy as soon as no live
 *   credential holds it — at once if none does — which leaves any such
 *   token with nothing but Vault's `default` policy until its TTL ends it.
 *   A tier-1 request's agent never got its answer: the request is failed
 *   and its Idempotency-Key freed. An approved tier-2/3 request stays
 *   approved so the agent can claim again.
 * - A tier-1 request committed as approved before `before` whose
 *   issue never began (or whose failed mint was never recorded as a
 *   failure): failed the same way.
 *
 * Startup reconciliation passes the process's start (everything an earlier
 * process left); the sweep passes `now - STALE_MINT_MS`. Every change is conditional, in an
 * IMMEDIATE transaction, so several processes doing this at once settle
 * each row once, with one audit entry. Returns how many were settled.
 */
export async function settleInterruptedIssues(deps: BrokerDeps, before: number, now: number, failure: string): Promise<number> {
  const { storage, audit } = deps;
  let settled = 0;
  await storage.transaction(async (tx) => {
    for (const c of await tx.credentials.mintingReservedBefore(before, 10_000)) {
      if (!(await tx.credentials.move(c.id, 'minting', 'abandoned', now, 'broker stopped during issue'))) continue;
      if (c.vault_policy) await retireGrantPolicy(tx, c.vault_policy, now);
      const req = await tx.requests.get(c.request_id);
      if (req?.status === 'approved' && req.decided_by === 'policy') await failUnissued(deps, tx, c.request_id, now, failure, null);
      await audit.append(tx, { event: 'credential.interrupted', actor: 'broker', requestId: c.request_id, data: { credential_id: c.id, policy: c.vault_policy, reserved_at: c.reserved_at } }, now);
      settled++;
    }
  });
  await storage.transaction(async (tx) => {
    for (const r of await tx.requests.tier1ApprovedWithoutCredential(before)) {
      if (await failUnissued(deps, tx, r.id, now, failure, { event: 'request.interrupted', data: {} })) settled++;
    }
  });
  return settled;
}

export interface ReconcileSummary extends SweepSummary {
  strayPolicies: number;
  vanishedTokens: number;
}

/**
 * Startup reconciliation, run before the broker serves (and retried until it
 * succeeds if Vault is down at start).
 *
 * - Issues begun before `startedBefore` (this process's start; called
 *   without it, up to now) are settled by {@link settleInterruptedIssues}:
 *   `minting` rows abandoned, their policies deleted, tier-1 requests
 *   failed.
 * - Ephemeral policies of this installation in Vault that no credential
 *   row owns are deleted: those under its own prefix
 *   (`jit-<installation id>-`), and those of the old shared `jit-req_`
 *   prefix that a row of this database names. Any other policy, such as
 *   another installation's sharing the Vault, is left alone. The list is
 *   read from Vault before the rows are read, and each stray is released in
 *   a transaction first, so a policy a credential picked up meanwhile is
 *   never deleted under it.
 * - Live credentials whose token Vault no longer knows are ended.
 */
export async function reconcile(deps: BrokerDeps, startedBefore: number = deps.clock.now() + 1): Promise<ReconcileSummary> {
  const { storage, audit, clock, vault } = deps;
  const now = clock.now();
  // Only what was under way before this process started: an issue this
  // process begins from now on is left alone.
  const interruptedMints = await settleInterruptedIssues(deps, startedBefore, now, INTERRUPTED);

  let vanishedTokens = 0;
  for (const c of await storage.credentials.liveWithAccessor()) {
    if ((await vault.lookupAccessor(c.accessor!)) !== null) continue;
    await storage.transaction(async (tx) => {
      if (await expireIssued(deps, tx, c, now, 'vanished')) vanishedTokens++;
    });
  }

  const summary = await sweep(deps);

  const inVault = await vault.listPolicies();
  const owned = await storage.credentials.ownedPolicyNames();
  const prefix = await policyPrefix(storage);
  let strayPolicies = 0;
  for (const name of inVault) {
    if (owned.has(name)) continue;
    const ours = name.startsWith(prefix) || (name.startsWith(LEGACY_POLICY_PREFIX) && (await storage.credentials.namesLegacyVaultPolicy(name)));
    if (!ours) continue;
    if (!(await storage.transaction((tx) => releaseVaultPolicy(tx, name, null, clock.now())))) continue;
    await vault.deletePolicy(name);
    await storage.transaction((tx) => audit.append(tx, { event: 'vault.stray_policy_deleted', actor: 'broker', data: { policy: name } }, clock.now()));
    strayPolicies++;
  }
  return { ...summary, interruptedMints: interruptedMints + summary.interruptedMints, strayPolicies, vanishedTokens };
}

/**
 * How often the service sweeps by default. Bounds how long a revocation
 * recorded by another process (`jit requests revoke` without a Vault client,
 * see revoke.ts) waits for its token to be revoked in Vault.
 */
export const SWEEP_INTERVAL_MS = 5_000;

/** Runs reconciliation until it succeeds, then `sweep` every `intervalMs`. */
export function startLifecycle(deps: BrokerDeps, intervalMs = SWEEP_INTERVAL_MS, onChange: () => void = () => {}): { stop(): Promise<void>; reconciled: Promise<void> } {
  let stopped = false;
  let running: Promise<unknown> = Promise.resolve();
  let timer: NodeJS.Timeout | undefined;
  const startedAt = deps.clock.now();
  let markReconciled!: () => void;
  const reconciled = new Promise<void>((r) => (markReconciled = r));
  let done = false;

  const tick = async () => {
    try {
      if (!done) {
        const s = await reconcile(deps, startedAt);
        done = true;
        markReconciled();
        deps.log.info({ reconcile: s }, 'startup reconciliation done');
      } else {
        const s = await sweep(deps);
        if (Object.values(s).some((n) => n > 0)) {
          deps.log.info({ sweep: s }, 'lifecycle sweep');
          onChange();
        }
      }
    } catch (err) {
      deps.log.warn({ err }, done ? 'lifecycle sweep failed; will retry' : 'startup reconciliation failed (Vault unreachable?); will retry');
    }
  };
  const loop = () => {
    if (stopped) return;
    running = tick().finally(() => {
      if (!stopped) timer = setTimeout(loop, intervalMs);
    });
  };
  loop();
  return {
    reconciled,
    async stop() {
      stopped = true;
      if (timer) clearTimeout(timer);
      await running;
    },
  };
}
