import type { Db } from '../db/open.ts';
import type { Tier } from './policy/types.ts';
import { grantPolicyName, installationPolicyPrefix, parseGrantPolicyName } from './vault-grant.ts';

export type RequestStatus = 'pending' | 'approved' | 'issued' | 'denied' | 'timed_out' | 'expired' | 'revoked' | 'failed';
export type CredentialState = 'minting' | 'live' | 'ending' | 'ended' | 'abandoned' | 'failed';

export interface VaultScope {
  vault_paths: { path: string; capabilities: string[] }[];
}
export interface GateScope {
  repo: string;
  refs: string[];
}

export interface RequestRow {
  id: string;
  agent_id: string;
  agent_name: string;
  resource: 'vault' | 'gate';
  tier: Tier;
  required_tier: Tier;
  status: RequestStatus;
  reason: string;
  scope: string;
  ttl_seconds: number;
  session_key: string | null;
  rules: string;
  idempotency_key: string | null;
  body_hash: string | null;
  created_at: number;
  updated_at: number;
  approval_expires_at: number | null;
  claim_expires_at: number | null;
  decided_by: string | null;
  decided_at: number | null;
  decision_reason: string | null;
  failure: string | null;
  /** What an approver granted (JSON like `scope`), set at approval; absent/NULL = granted as asked. See narrowing.ts. */
  granted_scope?: string | null;
  granted_ttl_seconds?: number | null;
}

export interface CredentialRow {
  id: string;
  request_id: string;
  type: 'vault_token' | 'gate_push';
  state: CredentialState;
  vault_policy: string | null;
  accessor: string | null;
  jti: string | null;
  issued_at: number | null;
  expires_at: number;
  ended_at: number | null;
  end_reason: string | null;
  /** When the row was inserted (ms); 0 for rows from before migration 0008. */
  reserved_at: number;
}

export interface VoteRow {
  approver: string;
  decision: 'approve' | 'deny';
  reason: string | null;
  at: number;
  /** What an approve vote approved (JSON like `scope`); NULL on deny votes and votes from before narrowing. */
  grant_scope: string | null;
  grant_ttl_seconds: number | null;
}

/** A shared grant policy is written to Vault again when its last write is older than this. */
export const GRANT_POLICY_REFRESH_MS = 60_000;

/**
 * SQL for requests and credentials. Every state change is a conditional
 * update (`WHERE status = ?`) and reports whether it happened, so racing
 * callers cannot both win.
 */
export function createRepository(db: Db) {
  const s = {
    insertRequest: db.prepare(`INSERT INTO requests (id, agent_id, agent_name, resource, tier, required_tier, status, reason, scope,
      ttl_seconds, session_key, rules, idempotency_key, body_hash, created_at, updated_at, approval_expires_at, claim_expires_at,
      decided_by, decided_at, decision_reason, failure)
      VALUES (@id, @agent_id, @agent_name, @resource, @tier, @required_tier, @status, @reason, @scope, @ttl_seconds, @session_key,
      @rules, @idempotency_key, @body_hash, @created_at, @updated_at, @approval_expires_at, @claim_expires_at, @decided_by,
      @decided_at, @decision_reason, @failure)`),
    getRequest: db.prepare('SELECT * FROM requests WHERE id = ?'),
    setGrant: db.prepare(`UPDATE requests SET granted_scope = ?, granted_ttl_seconds = ? WHERE id = ? AND status = 'pending'`),
    tier1Orphans: db.prepare(`SELECT * FROM requests r WHERE r.status = 'approved' AND r.decided_by = 'policy' AND r.created_at < ?
      AND NOT EXISTS (SELECT 1 FROM credentials c WHERE c.request_id = r.id AND c.state IN ('minting', 'live', 'ending'))`),
    releaseKey: db.prepare('UPDATE requests SET idempotency_key = NULL, body_hash = NULL WHERE id = ?'),
    byIdempotency: db.prepare('SELECT * FROM requests WHERE agent_id = ? AND idempotency_key = ?'),
    transition: db.prepare(`UPDATE requests SET status = @to, updated_at = @now,
      decided_by = COALESCE(@decided_by, decided_by), decided_at = COALESCE(@decided_at, decided_at),
      decision_reason = COALESCE(@decision_reason, decision_reason), failure = COALESCE(@failure, failure),
      claim_expires_at = COALESCE(@claim_expires_at, claim_expires_at)
      WHERE id = @id AND status = @from`),
    insertCredential: db.prepare(`INSERT INTO credentials (id, request_id, type, state, vault_policy, accessor, jti, issued_at, expires_at, reserved_at)
      VALUES (@id, @request_id, @type, @state, @vault_policy, @accessor, @jti, @issued_at, @expires_at, @reserved_at)`),
    getCredential: db.prepare(`SELECT * FROM credentials WHERE request_id = ? ORDER BY state IN ('abandoned', 'failed'), rowid DESC LIMIT 1`),
    credentialLive: db.prepare(`UPDATE credentials SET state = 'live', accessor = @accessor, issued_at = @issued_at, expires_at = @expires_at
      WHERE id = @id AND state = 'minting'`),
    credentialState: db.prepare(`UPDATE credentials SET state = @to,
      ended_at = CASE WHEN @to IN ('ended', 'failed') THEN @now ELSE ended_at END,
      end_reason = COALESCE(end_reason, @reason)
      WHERE id = @id AND state = @from`),
    pendingExpired: db.prepare(`SELECT * FROM requests WHERE status = 'pending' AND approval_expires_at <= ? ORDER BY approval_expires_at LIMIT ?`),
    approvedExpired: db.prepare(`SELECT * FROM requests WHERE status = 'approved' AND claim_expires_at <= ? ORDER BY claim_expires_at LIMIT ?`),
    liveExpired: db.prepare(`SELECT * FROM credentials WHERE state = 'live' AND expires_at <= ? ORDER BY expires_at LIMIT ?`),
    // Both through the partial index credentials_unsettled (state): SQLite uses a partial index only when
    // the query repeats its WHERE term verbatim (`state = ?`, even `state = 'minting'`, alone scans the table).
    unsettled: db.prepare(`SELECT * FROM credentials WHERE state IN ('minting', 'ending', 'abandoned') AND state = ? LIMIT ?`),
    // The minting rows are the mints under way, a handful: reserved_at is checked on them, no index of its own.
    mintingReservedBefore: db.prepare(`SELECT * FROM credentials WHERE state IN ('minting', 'ending', 'abandoned') AND state = 'minting' AND reserved_at < ? LIMIT ?`),
    lateAccessor: db.prepare(`UPDATE credentials SET accessor = ? WHERE id = ? AND state IN ('abandoned', 'failed') AND accessor IS NULL`),
    knownPolicies: db.prepare(`SELECT vault_policy FROM credentials WHERE vault_policy IS NOT NULL AND state IN ('minting', 'live', 'ending', 'abandoned')`),
    countPending: db.prepare(`SELECT COUNT(*) FROM requests WHERE agent_id = ? AND status = 'pending'`),
    // Walks at most `n` index entries however busy the agent is.
    // Requests created and policy refusals both count toward the per-agent rate limit.
    nthNewest: db.prepare(`SELECT at FROM (
        SELECT created_at AS at FROM requests WHERE agent_id = @agent AND created_at > @since
        UNION ALL SELECT at FROM agent_refusals WHERE agent_id = @agent AND at > @since)
      ORDER BY at DESC LIMIT 1 OFFSET @offset`),
    refusalInsert: db.prepare(`INSERT INTO agent_refusals (agent_id, at) VALUES (?, ?)`),
    refusalPrune: db.prepare(`DELETE FROM agent_refusals WHERE at <= ?`),
    // No write at all when the grant is known: a repeated grant dirties no page here.
    newGrant: db.prepare(`INSERT INTO grant_policies (grant_hash, generation, written, updated_at) VALUES (?, 1, 0, ?) ON CONFLICT (grant_hash) DO NOTHING
      RETURNING generation, written, updated_at`),
    getGrant: db.prepare(`SELECT generation, written, updated_at FROM grant_policies WHERE grant_hash = ?`),
    grantWritten: db.prepare(`UPDATE grant_policies SET written = 1, updated_at = ? WHERE grant_hash = ? AND generation = ?`),
    retireGrant: db.prepare(`UPDATE grant_policies SET generation = generation + 1, written = 0, updated_at = ? WHERE grant_hash = ? AND generation = ?`),
    openRequests: db.prepare(`SELECT * FROM requests WHERE status IN ('issued', 'approved', 'pending')
      AND (@agent_name IS NULL OR agent_name = @agent_name) ORDER BY created_at`),
    votesOf: db.prepare(`SELECT approver, decision, reason, at, grant_scope, grant_ttl_seconds FROM votes WHERE request_id = ? ORDER BY at, approver`),
    // Expanded: each row is { credentials: CredentialRow, requests: RequestRow } (the columns namespaced by table).
    credentialsInUse: db
      .prepare(`SELECT c.*, r.* FROM credentials c JOIN requests r ON r.id = c.request_id
      WHERE c.state IN ('live', 'ending') AND (@agent_name IS NULL OR r.agent_name = @agent_name) ORDER BY c.expires_at, c.id`)
      .expand(true),
    // The kid is in the credential's issue entry (gate-credential.ts): the credential itself is never stored.
    liveGateCredentialsSignedBy: db.prepare(`SELECT c.* FROM credentials c JOIN audit_log a ON a.request_id = c.request_id AND a.event = 'credential.issued'
      WHERE c.state = 'live' AND c.type = 'gate_push' AND json_extract(a.data, '$.credential_id') = c.id AND json_extract(a.data, '$.kid') = ? ORDER BY c.expires_at, c.id`),
    policyHolders: db.prepare(`SELECT COUNT(*) FROM credentials WHERE vault_policy = ? AND state IN ('minting', 'live', 'ending') AND id != ?`),
    // The term repeats the partial index's WHERE verbatim, so the index serves it.
    namesLegacyPolicy: db.prepare(`SELECT 1 FROM credentials WHERE vault_policy = ? AND substr(vault_policy, 1, 8) = 'jit-req_' LIMIT 1`),
  };
  const installationId = db.prepare(`SELECT value FROM settings WHERE key = 'installation_id'`).pluck().get() as string | undefined;
  if (installationId === undefined) throw new Error('the database has no installation id (migration 0011 not applied)');
  const policyPrefix = installationPolicyPrefix(installationId);

  function retireGrant(name: string, now: number): void {
    const g = parseGrantPolicyName(name);
    if (g) s.retireGrant.run(now, g.hash, g.generation);
  }

  return {
    /** `jit-<installation id>-`: the prefix of every ephemeral Vault policy this installation writes (vault-grant.ts). */
    policyPrefix,
    insertRequest(row: RequestRow): void {
      s.insertRequest.run(row);
    },
    getRequest(id: string): RequestRow | undefined {
      return s.getRequest.get(id) as RequestRow | undefined;
    },
    /** Records what is granted on a still-pending request (decideRequest, in the approving transaction); false if it was no longer pending. */
    setGrant(id: string, scopeJson: string, ttlSeconds: number): boolean {
      return s.setGrant.run(scopeJson, ttlSeconds, id).changes === 1;
    },
    /** Tier-1 requests approved by policy before `before` whose issue never started. */
    tier1ApprovedWithoutCredential(before: number): RequestRow[] {
      return s.tier1Orphans.all(before) as RequestRow[];
    },
    // The request status writes: `failUnissued` and `transition` are the only
    // statements that change a request's status, and request-machine.ts is
    // their only caller (it checks each change against its table).
    /**
     * Fails an approved request whose credential was never issued, and frees
     * its Idempotency-Key: nothing was issued, so the agent's retry with the
     * same key gets a fresh attempt rather than this failure. False if the
     * request was no longer approved. Call it inside a transaction.
     */
    failUnissued(id: string, now: number, failure: string): boolean {
      if (!this.transition(id, 'approved', 'failed', now, { failure })) return false;
      s.releaseKey.run(id);
      return true;
    },
    /** Moves a request from one status to another; false if it was no longer in `from`. Only request-machine.ts calls it. */
    transition(
      id: string,
      from: RequestStatus,
      to: RequestStatus,
      now: number,
      extra: { decidedBy?: string; decidedAt?: number; decisionReason?: string; failure?: string; claimExpiresAt?: number } = {},
    ): boolean {
      return (
        s.transition.run({
          id,
          from,
          to,
          now,
          decided_by: extra.decidedBy ?? null,
          decided_at: extra.decidedAt ?? null,
          decision_reason: extra.decisionReason ?? null,
          failure: extra.failure ?? null,
          claim_expires_at: extra.claimExpiresAt ?? null,
        }).changes === 1
      );
    },
    findByIdempotencyKey(agentId: string, key: string): RequestRow | undefined {
      return s.byIdempotency.get(agentId, key) as RequestRow | undefined;
    },
    /**
     * Inserts a credential row. `reserved_at` (the time of the transaction
     * that inserts it) defaults to `issued_at` for a row issued at once; a
     * row without either (a `minting` one) is refused, since the sweep
     * would take it for an interrupted mint.
     */
    insertCredential(
      row: Pick<CredentialRow, 'id' | 'request_id' | 'type' | 'state' | 'vault_policy' | 'accessor' | 'jti' | 'issued_at' | 'expires_at'> & Partial<Pick<CredentialRow, 'reserved_at'>>,
    ): void {
      const reservedAt = row.reserved_at ?? row.issued_at;
      if (reservedAt === null || reservedAt === undefined) throw new Error(`credential ${row.id}: reserved_at is required`);
      s.insertCredential.run({ ...row, reserved_at: reservedAt });
    },
    getCredential(requestId: string): CredentialRow | undefined {
      return s.getCredential.get(requestId) as CredentialRow | undefined;
    },
    markCredentialLive(id: string, accessor: string | null, issuedAt: number, expiresAt: number): boolean {
      return s.credentialLive.run({ id, accessor, issued_at: issuedAt, expires_at: expiresAt }).changes === 1;
    },
    moveCredential(id: string, from: CredentialState, to: CredentialState, now: number, reason?: string): boolean {
      return s.credentialState.run({ id, from, to, now, reason: reason ?? null }).changes === 1;
    },
    pendingPastDeadline(now: number, limit = 100): RequestRow[] {
      return s.pendingExpired.all(now, limit) as RequestRow[];
    },
    approvedPastClaimWindow(now: number, limit = 100): RequestRow[] {
      return s.approvedExpired.all(now, limit) as RequestRow[];
    },
    liveCredentialsPastExpiry(now: number, limit = 100): CredentialRow[] {
      return s.liveExpired.all(now, limit) as CredentialRow[];
    },
    credentialsInState(state: 'minting' | 'ending' | 'abandoned', limit = 100): CredentialRow[] {
      return s.unsettled.all(state, limit) as CredentialRow[];
    },
    /** `minting` rows reserved before `before` (ms): with `now - STALE_MINT_MS`, mints no live process can still be running. */
    mintingReservedBefore(before: number, limit = 100): CredentialRow[] {
      return s.mintingReservedBefore.all(before, limit) as CredentialRow[];
    },
    /**
     * Records the accessor of a token Vault minted for a row that had
     * already been abandoned (the mint outlived STALE_MINT_MS), so the
     * broker knows it until it is revoked. False if the row is not
     * abandoned/failed or already names an accessor.
     */
    recordLateAccessor(id: string, accessor: string): boolean {
      return s.lateAccessor.run(accessor, id).changes === 1;
    },
    /**
     * Whether any credential row, in any state, names the Vault policy
     * `name` of the old shared `jit-req_` prefix: then this installation
     * wrote it (how reconciliation tells its own such policies from
     * another's). False for every other name.
     */
    namesLegacyVaultPolicy(name: string): boolean {
      return s.namesLegacyPolicy.get(name) !== undefined;
    },
    /** Names of ephemeral Vault policies the broker still owns. */
    ownedPolicyNames(): Set<string> {
      return new Set(s.knownPolicies.pluck().all() as string[]);
    },
    pendingCount(agentId: string): number {
      return s.countPending.pluck().get(agentId) as number;
    },
    /**
     * Time of the agent's `n`-th newest request or policy refusal after
     * `since`, or undefined when it has fewer: the per-minute rate limit is
     * reached exactly when this exists, and lifts once it leaves the window.
     * Reads at most about 2`n` index entries: neither requests nor refusals
     * are recorded once the agent is at its limit.
     */
    nthNewestSince(agentId: string, since: number, n: number): number | undefined {
      return s.nthNewest.pluck().get({ agent: agentId, since, offset: n - 1 }) as number | undefined;
    },
    /** Records a policy refusal for the rate limit (the audit upkeep timer prunes old ones: {@link pruneRefusals}). */
    recordRefusal(agentId: string, at: number): void {
      s.refusalInsert.run(agentId, at);
    },
    /** Drops every refusal record at or before `expired` (agents that went quiet or were removed). */
    pruneRefusals(expired: number): void {
      s.refusalPrune.run(expired);
    },
    /**
     * Takes the shared Vault policy of a grant for a new credential: its
     * current name, and whether it must be written to Vault first — when
     * this generation was never written, or was last written more than
     * {@link GRANT_POLICY_REFRESH_MS} ago (so a Vault that lost it, say a
     * restarted development Vault, gets it back within that time). Call it
     * in the transaction that inserts the credential row naming the policy
     * (the row is the reference), so that no retirement can slip in between.
     */
    acquireGrantPolicy(hash: string, now: number): { name: string; generation: number; written: boolean } {
      type Grant = { generation: number; written: number; updated_at: number };
      const row = ((s.getGrant.get(hash) as Grant | undefined) ?? (s.newGrant.get(hash, now) as Grant | undefined) ?? s.getGrant.get(hash)) as Grant;
      return { name: grantPolicyName(policyPrefix, hash, row.generation), generation: row.generation, written: row.written === 1 && now - row.updated_at < GRANT_POLICY_REFRESH_MS };
    },
    /** Records that a grant policy was just written to Vault (no-op if its generation was retired meanwhile). */
    markGrantPolicyWritten(name: string, now: number): void {
      const g = parseGrantPolicyName(name);
      if (g) s.grantWritten.run(now, g.hash, g.generation);
    },
    /**
     * Retires a shared grant policy if it is still the current generation,
     * so the next credential with that grant gets a fresh policy. Used when
     * a token bound to it may exist that the broker does not know (a mint
     * that failed half-way or was interrupted). No-op for other names.
     */
    retireGrantPolicy(name: string, now: number): void {
      retireGrant(name, now);
    },
    /**
     * Releases `exceptCredentialId`'s reference to the Vault policy `name`
     * (a credential ending or abandoned, or none for a stray policy) and
     * tells whether the policy may now be deleted from Vault: true when no
     * other credential holds it. A shared policy is retired in the same
     * step, so it is never handed to a new credential again. Call it inside
     * a transaction.
     */
    releaseVaultPolicy(name: string, exceptCredentialId: string | null, now: number): boolean {
      if ((s.policyHolders.pluck().get(name, exceptCredentialId ?? '') as number) > 0) return false;
      retireGrant(name, now);
      return true;
    },
    listRequests(filter: { status?: RequestStatus; agentId?: string; agentName?: string; limit?: number }): RequestRow[] {
      const where: string[] = [];
      const args: unknown[] = [];
      if (filter.status) (where.push('status = ?'), args.push(filter.status));
      if (filter.agentId) (where.push('agent_id = ?'), args.push(filter.agentId));
      if (filter.agentName) (where.push('agent_name = ?'), args.push(filter.agentName));
      const sql = `SELECT * FROM requests ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY created_at DESC LIMIT ?`;
      return db.prepare(sql).all(...args, filter.limit ?? 100) as RequestRow[];
    },
    /**
     * Every request that holds or may still become a credential (issued,
     * approved, pending), oldest first, of one agent (by name, which also
     * covers an earlier agent of that name) or of all: what the
     * kill switch ends. Through the index on (status, created_at).
     */
    openRequests(filter: { agentName?: string } = {}): RequestRow[] {
      return s.openRequests.all({ agent_name: filter.agentName ?? null }) as RequestRow[];
    },
    /** The votes cast on a request, in order. */
    votesOf(requestId: string): VoteRow[] {
      return s.votesOf.all(requestId) as VoteRow[];
    },
    /**
     * Credentials that still work or are being revoked (live, ending), each
     * with its request, soonest expiry first; of one agent (by name) or of all.
     */
    credentialsInUse(filter: { agentName?: string } = {}): { credential: CredentialRow; request: RequestRow }[] {
      const rows = s.credentialsInUse.all({ agent_name: filter.agentName ?? null }) as { credentials: CredentialRow; requests: RequestRow }[];
      return rows.map((row) => ({ credential: row.credentials, request: row.requests }));
    },
    /** Live gate credentials signed with key `kid` (as their issue audit entry records), soonest expiry first: what revoking that key ends. */
    liveGateCredentialsSignedBy(kid: string): CredentialRow[] {
      return s.liveGateCredentialsSignedBy.all(kid) as CredentialRow[];
    },
  };
}

export type Repository = ReturnType<typeof createRepository>;
