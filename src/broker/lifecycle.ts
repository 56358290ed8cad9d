import type { BrokerDeps } from './deps.ts';
import { endCredential, failAbandoned } from './credential-end.ts';
import { STALE_MINT_MS } from './credential-issue.ts';
import type { CredentialRow } from './rows.ts';
import { expireIssued, expireUnclaimed, failUnissued, timeOut } from './request-machine.ts';
import { policyPrefix, releaseVaultPolicy, retireGrantPolicy } from './grant-policies.ts';
import { LEGACY_POLICY_PREFIX } from './vault-grant.ts';
import { nodeAlive } from './node.ts';
import { prunePasskeyState } from './passkeys.ts';
import type { Transaction } from '../storage/storage.ts';

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
 * retried. Issues interrupted by a broker process that died (its node lease
 * lapsed, or older than {@link STALE_MINT_MS}) are settled, as startup
 * reconciliation settles them, and their policies deleted in the same pass.
 */
export async function sweep(deps: BrokerDeps): Promise<SweepSummary> {
  const { storage, clock, log } = deps;
  const summary = emptySummary();
  const now = clock.now();

  // Only provably dead mints: safe while other processes mint.
  summary.interruptedMints = await settleInterruptedIssues(deps, now);

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
  // Expired WebAuthn challenges and timed-out console sessions (passkeys.ts): nothing can use them any more.
  await prunePasskeyState(deps, now);
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

const INTERRUPTED = 'interrupted: the broker process issuing it stopped; request again';

/**
 * Whether an issue begun at `at` by node `node_id` is provably dead at
 * `now`, so that settling it cannot cut a live issue short (see
 * {@link settleInterruptedIssues}):
 * - it began more than {@link STALE_MINT_MS} ago (no live mint runs that
 *   long), or
 * - it records a node other than this one whose lease (`node:<id>`) has
 *   expired or is gone (node.ts): that broker process is dead.
 * An issue of this very node is alive while this code runs; one without a
 * node (written by an older version, or by a process holding no lease)
 * waits for the bound. `alive` caches lease reads within one pass.
 */
async function issueIsDead(deps: BrokerDeps, tx: Transaction, issue: { at: number; node_id: string | null | undefined }, now: number, alive: Map<string, boolean>): Promise<boolean> {
  if (issue.at < now - STALE_MINT_MS) return true;
  const node = issue.node_id;
  if (!node || node === deps.nodeId) return false;
  let known = alive.get(node);
  if (known === undefined) {
    known = await nodeAlive(tx, node, now);
    alive.set(node, known);
  }
  return !known;
}

/**
 * Settles issues that were interrupted (their broker process died) and
 * that no live process can still be running. Several brokers may share the
 * database: an issue another live node has under way is left alone.
 *
 * - A `minting` row that is provably dead ({@link issueIsDead}: its node's
 *   lease lapsed, or older than {@link STALE_MINT_MS}) means a broker died
 *   between writing the policy and recording the token. Its accessor is
 *   unknown, so the token cannot be revoked by name. The row is abandoned
 *   and its policy retired at once (no new credential is bound to it); the
 *   sweep's abandoned-row pass deletes the policy as soon as no live
 *   credential holds it — at once if none does — which leaves any such
 *   token with nothing but Vault's `default` policy until its TTL ends it.
 *   A tier-1 request's agent never got its answer: the request is failed
 *   and its Idempotency-Key freed. An approved tier-2/3 request stays
 *   approved so the agent can claim again.
 * - A tier-1 request committed as approved whose issue never began (or
 *   whose failed mint was never recorded as a failure), provably dead by
 *   the same rule (the request records the node that created it): failed
 *   the same way.
 *
 * Startup reconciliation and every sweep run the same rule. Every change is
 * conditional, in one transaction, so several processes doing this at once
 * settle each row once, with one audit entry. Returns how many were settled.
 */
export async function settleInterruptedIssues(deps: BrokerDeps, now: number, failure: string = INTERRUPTED): Promise<number> {
  const { storage, audit } = deps;
  let settled = 0;
  await storage.transaction(async (tx) => {
    const alive = new Map<string, boolean>();
    for (const c of await tx.credentials.inState('minting', 10_000)) {
      if (!(await issueIsDead(deps, tx, { at: c.reserved_at, node_id: c.node_id }, now, alive))) continue;
      if (!(await tx.credentials.move(c.id, 'minting', 'abandoned', now, 'broker stopped during issue'))) continue;
      if (c.vault_policy) await retireGrantPolicy(tx, c.vault_policy, now);
      const req = await tx.requests.get(c.request_id);
      if (req?.status === 'approved' && req.decided_by === 'policy') await failUnissued(deps, tx, c.request_id, now, failure, null);
      await audit.append(tx, { event: 'credential.interrupted', actor: 'broker', requestId: c.request_id, data: { credential_id: c.id, policy: c.vault_policy, reserved_at: c.reserved_at, node_id: c.node_id } }, now);
      settled++;
    }
  });
  await storage.transaction(async (tx) => {
    const alive = new Map<string, boolean>();
    // Those under way are a handful: the rows of issues being signed or recorded right now, and the dead ones.
    for (const r of await tx.requests.tier1ApprovedWithoutCredential(now + 1)) {
      if (!(await issueIsDead(deps, tx, { at: r.created_at, node_id: r.node_id }, now, alive))) continue;
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
 * succeeds if Vault is down at start). Other brokers may be serving on the
 * same database and Vault: nothing here assumes this is the only one.
 *
 * - Interrupted issues that are provably dead are settled by
 *   {@link settleInterruptedIssues} (the sweep's rule: a mint of a node
 *   whose lease lapsed, or older than STALE_MINT_MS); another live node's
 *   issue under way is left alone. A broker restarting after a crash finds
 *   its previous self's mints once that node's lease lapses (JIT_NODE_LEASE;
 *   the next sweep settles them).
 * - Ephemeral policies of this installation in Vault that no credential
 *   row of the shared database owns are deleted: those under its own
 *   prefix (`jit-<installation id>-`), and those of the old shared
 *   `jit-req_` prefix that a row of this database names. Any other policy,
 *   such as another installation's sharing the Vault, is left alone. The
 *   list is read from Vault before the rows are read; every broker commits
 *   a credential row before it writes the row's policy to Vault, so a policy
 *   in the list that another node is minting with already has its row. Each
 *   stray is released in a transaction first (no row holds it, and a shared
 *   grant policy is retired so no new row picks it up), so a policy a
 *   credential took meanwhile is never deleted under it.
 * - Live credentials whose token Vault no longer knows are ended.
 */
export async function reconcile(deps: BrokerDeps): Promise<ReconcileSummary> {
  const { storage, audit, clock, vault } = deps;
  const now = clock.now();
  const interruptedMints = await settleInterruptedIssues(deps, now);

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
  let markReconciled!: () => void;
  const reconciled = new Promise<void>((r) => (markReconciled = r));
  let done = false;

  const tick = async () => {
    try {
      if (!done) {
        const s = await reconcile(deps);
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
