import { createHash } from 'node:crypto';
import { StorageUniqueError } from '../storage/errors.ts';
import type { Transaction } from '../storage/storage.ts';
import { canonicalJson } from '../lib/canonical-json.ts';
import type { Agent } from './agents.ts';
import type { BrokerDeps } from './deps.ts';
import { BrokerError } from './errors.ts';
import { issueCredential, reserveVaultCredential, type VaultReservation } from './credential-issue.ts';
import { evaluateGate, evaluateVault, sessionAllowed } from './policy/index.ts';
import type { Decision, Tier } from './policy/types.ts';
import type { RequestRow } from './rows.ts';
import type { CredentialRequestBody, IssuedResponse, PendingResponse, RequestView } from '../wire/schemas.ts';
import { create, failUnissued } from './request-machine.ts';
import { issuedBody, requestView } from './view.ts';

export type RequestOutcome =
  | { status: 201; body: IssuedResponse }
  | { status: 202; body: PendingResponse }
  | { status: 200; body: RequestView; replayed: true };

/**
 * `POST /jit/request`: checks policy, then either issues at once (tier 1),
 * or records a pending request for approval (tier 2/3). The policy decision,
 * the request row and its audit entries are written in one transaction.
 */
export async function requestCredential(
  deps: BrokerDeps,
  agent: Agent,
  body: CredentialRequestBody,
  idempotencyKey?: string,
): Promise<RequestOutcome> {
  let outcome: RequestOutcome;
  try {
    outcome = await handleRequest(deps, agent, body, idempotencyKey);
  } catch (err) {
    deps.metrics.requestOutcome(body.resource, body.tier, err instanceof BrokerError ? err.code.toLowerCase() : 'error');
    throw err;
  }
  const tier = outcome.body.required_tier;
  deps.metrics.requestOutcome(body.resource, tier, outcome.status === 201 ? 'issued' : outcome.status === 202 ? 'pending' : 'replayed');
  return outcome;
}

async function handleRequest(deps: BrokerDeps, agent: Agent, body: CredentialRequestBody, idempotencyKey: string | undefined): Promise<RequestOutcome> {
  const { storage, clock, ids, config, policies } = deps;
  // Only an idempotent request needs its body fingerprint.
  const bodyHash = idempotencyKey === undefined ? null : createHash('sha256').update(canonicalJson(body)).digest('hex');

  if (idempotencyKey !== undefined) {
    const replay = await replayIdempotent(deps, agent, idempotencyKey, bodyHash!);
    if (replay) return replay;
  }

  const policy = policies.current();
  const agentPolicy = policy.agents.get(agent.name);
  const sessionKey = body.session_key ?? agent.sessionKey ?? agentPolicy?.defaultSession ?? null;
  if (body.session_key !== undefined && !(agentPolicy && sessionAllowed(agentPolicy, body.session_key))) {
    await refuse(deps, agent, 'SESSION_NOT_ALLOWED', { session_key: body.session_key, resource: body.resource, tier: body.tier });
    throw new BrokerError('SESSION_NOT_ALLOWED', `session_key "${body.session_key}" does not match the sessions policy allows agent "${agent.name}"`);
  }

  const decision: Decision =
    body.resource === 'vault'
      ? evaluateVault(policy, agent.name, body.vault_paths, body.ttl)
      : evaluateGate(policy, agent.name, body.repo, body.refs, body.ttl);

  const now = clock.now();
  if (!decision.ok) {
    await refuse(deps, agent, decision.code, { pair: decision.pair, resource: body.resource, tier: body.tier });
    throw new BrokerError(decision.code, decision.message, { fields: { pair: decision.pair } });
  }

  const effectiveTier = Math.max(body.tier, decision.requiredTier) as Tier;
  const scope = body.resource === 'vault' ? { vault_paths: body.vault_paths } : { repo: body.repo, refs: body.refs };
  const row: RequestRow = {
    id: ids.next('req'),
    agent_id: agent.id,
    agent_name: agent.name,
    resource: body.resource,
    tier: body.tier,
    required_tier: effectiveTier,
    status: effectiveTier === 1 ? 'approved' : 'pending',
    reason: body.reason,
    scope: JSON.stringify(scope),
    ttl_seconds: decision.ttlSeconds,
    session_key: sessionKey,
    rules: JSON.stringify(decision.rules),
    idempotency_key: idempotencyKey ?? null,
    body_hash: bodyHash,
    created_at: now,
    updated_at: now,
    approval_expires_at: effectiveTier === 1 ? null : now + config.approvalTimeoutSeconds * 1000,
    claim_expires_at: null,
    decided_by: effectiveTier === 1 ? 'policy' : null,
    decided_at: effectiveTier === 1 ? now : null,
    decision_reason: effectiveTier === 1 ? `tier 1 by rule ${decision.rules.join(', ')}` : null,
    failure: null,
    // A tier-1 request not yet issued is settled as interrupted only once this node is provably dead (lifecycle.ts).
    node_id: deps.nodeId ?? null,
  };

  // One transaction: the rate limits, the request, its audit entries and,
  // for a tier-1 Vault request, the credential row that reserves its
  // policy. IMMEDIATE, so the limit check and the insert are atomic even
  // against another process writing the same database.
  let reservation: VaultReservation | undefined;
  try {
    await storage.transaction(async (tx) => {
      // Two independent reads, asked together (on PostgreSQL one round trip while the write lock is held); a removed agent's 401 first.
      const checks = await Promise.allSettled([assertNotRemoved(tx, agent), checkRateLimits(deps, tx, agent, now, effectiveTier > 1)]);
      for (const c of checks) if (c.status === 'rejected') throw c.reason;
      await tx.rateLimits.record(agent.id, now);
      await create(deps, tx, row, { actor: `agent:${agent.name}`, scope, rules: decision.rules });
      if (row.status === 'approved' && row.resource === 'vault') reservation = await reserveVaultCredential(deps, tx, row, { createdInThisTransaction: true });
    });
  } catch (err) {
    // Two requests racing with one idempotency key: the loser replays the winner.
    if (idempotencyKey !== undefined && err instanceof StorageUniqueError) {
      const replay = await replayIdempotent(deps, agent, idempotencyKey, bodyHash!);
      if (replay) return replay;
    }
    throw err;
  }

  if (row.status === 'pending') {
    return { status: 202, body: pendingBody(row) };
  }

  const minted = await issueCredential(deps, row, reservation);
  if (!minted.ok) {
    await storage.transaction((tx) => failUnissued(deps, tx, row.id, clock.now(), minted.error.message, { event: 'request.failed', data: { code: minted.error.code } }));
    throw minted.error;
  }
  return { status: 201, body: issuedBody(row, minted.credential) };
}

function pendingBody(row: RequestRow): PendingResponse {
  return {
    id: row.id,
    status: 'pending',
    tier: row.tier,
    required_tier: row.required_tier,
    approval_expires_at: new Date(row.approval_expires_at!).toISOString(),
  };
}

/**
 * The same key from the same agent returns the first answer and creates
 * nothing. A credential secret is never stored, so a replay of an issued
 * request returns its current state (status 200) without the secret; the
 * agent revokes it and asks again if it lost the first answer.
 */
async function replayIdempotent(deps: BrokerDeps, agent: Agent, key: string, bodyHash: string): Promise<RequestOutcome | undefined> {
  const existing = await deps.storage.idempotency.find(agent.id, key);
  if (!existing) return undefined;
  if (existing.body_hash !== bodyHash) {
    throw new BrokerError('IDEMPOTENCY_KEY_REUSED', `Idempotency-Key "${key}" was already used for a different request (${existing.id})`);
  }
  if (existing.status === 'pending') return { status: 202, body: pendingBody(existing) };
  return { status: 200, body: await requestView(deps, existing), replayed: true };
}

/** The per-agent rate limit's sliding window (`JIT_RATE_PER_MINUTE`). */
export const RATE_WINDOW_MS = 60_000;

/**
 * A policy refusal (403) counts toward the agent's per-minute limit, so an
 * agent cannot probe the policy faster than it may ask: once at the limit it
 * gets 429 (thrown here) instead, and nothing is written. Under the limit the
 * refusal is recorded for the limit and audited, coalesced: the first per
 * (code, what was refused) in a window in full, repeats counted
 * (`AuditLog.appendCoalesced`). One transaction, so the limit holds across
 * processes.
 */
async function refuse(deps: BrokerDeps, agent: Agent, code: string, data: Record<string, unknown>): Promise<void> {
  const now = deps.clock.now();
  await deps.storage.transaction(async (tx) => {
    await assertNotRemoved(tx, agent);
    await checkRateLimits(deps, tx, agent, now, false);
    await tx.rateLimits.record(agent.id, now);
    const what = canonicalJson({ code, pair: data['pair'] ?? null, session_key: data['session_key'] ?? null });
    await deps.audit.appendCoalesced(`${agent.id}\n${what}`, { event: 'request.rejected', actor: `agent:${agent.name}`, data: { agent: agent.name, code, ...data } }, now, tx);
  });
}

/**
 * Inside the transaction that writes for `agent`: it may have been removed
 * since it authenticated. `jit agent remove` ends the agent's requests in
 * one transaction, so nothing may follow it (no request, no refusal, no
 * audit entry): the agent gets 401, as its next call would.
 */
async function assertNotRemoved(tx: Transaction, agent: Agent): Promise<void> {
  if ((await tx.agents.byName(agent.name))?.id !== agent.id) throw new BrokerError('UNAUTHORIZED', `agent "${agent.name}" has been removed`);
}

/** Per-agent limits; runs inside the transaction that inserts the request (or records a refusal). */
async function checkRateLimits(deps: BrokerDeps, tx: Transaction, agent: Agent, now: number, willBePending: boolean): Promise<void> {
  const { config } = deps;
  const limitedSince = await tx.rateLimits.nthNewestSince(agent.id, now - RATE_WINDOW_MS, config.ratePerMinute);
  if (limitedSince !== undefined) {
    const retryAfter = Math.max(1, Math.ceil((limitedSince + RATE_WINDOW_MS - now) / 1000));
    throw new BrokerError('RATE_LIMITED', `agent "${agent.name}" made ${config.ratePerMinute} requests in the last minute, refused ones included (limit ${config.ratePerMinute})`, {
      retryAfterSeconds: retryAfter,
    });
  }
  if (willBePending && (await tx.requests.pendingCount(agent.id)) >= config.maxPending) {
    throw new BrokerError('TOO_MANY_PENDING', `agent "${agent.name}" already has ${config.maxPending} requests awaiting approval`, {
      retryAfterSeconds: 30,
    });
  }
}
