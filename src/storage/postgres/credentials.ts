import type { CredentialRow, RequestRow } from '../rows.ts';
import type { CredentialsRepository, GrantPoliciesRepository } from '../storage.ts';
import { all, changedOne, count, one, sql, type Exec } from './exec.ts';

/** The columns a credential row is read with (not `seq`, which only orders them). */
const ROW = 'id, request_id, type, state, vault_policy, accessor, jti, issued_at, expires_at, ended_at, end_reason, reserved_at, node_id';
const ROW_C = ROW.split(', ').map((c) => `c.${c}`).join(', ');

const S = {
  insert: sql('credentials_insert', `INSERT INTO credentials (id, request_id, type, state, vault_policy, accessor, jti, issued_at, expires_at, reserved_at, node_id)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`),
  forRequest: sql('credentials_for_request', `SELECT ${ROW} FROM credentials WHERE request_id = $1 ORDER BY state IN ('abandoned', 'failed'), seq DESC LIMIT 1`),
  live: sql('credentials_live', `UPDATE credentials SET state = 'live', accessor = $2, issued_at = $3, expires_at = $4 WHERE id = $1 AND state = 'minting'`),
  move: sql('credentials_move', `UPDATE credentials SET state = $3,
    ended_at = CASE WHEN $3 IN ('ended', 'failed') THEN $4 ELSE ended_at END,
    end_reason = COALESCE(end_reason, $5)
    WHERE id = $1 AND state = $2`),
  liveExpired: sql('credentials_live_expired', `SELECT ${ROW} FROM credentials WHERE state = 'live' AND expires_at <= $1 ORDER BY expires_at LIMIT $2`),
  unsettled: sql('credentials_unsettled', `SELECT ${ROW} FROM credentials WHERE state IN ('minting', 'ending', 'abandoned') AND state = $1 LIMIT $2`),
  liveWithAccessor: sql('credentials_live_with_accessor', `SELECT ${ROW} FROM credentials WHERE state = 'live' AND accessor IS NOT NULL`),
  lateAccessor: sql('credentials_late_accessor', `UPDATE credentials SET accessor = $2 WHERE id = $1 AND state IN ('abandoned', 'failed') AND accessor IS NULL`),
  knownPolicies: sql('credentials_known_policies', `SELECT vault_policy FROM credentials WHERE vault_policy IS NOT NULL AND state IN ('minting', 'live', 'ending', 'abandoned')`),
  policyHolders: sql('credentials_policy_holders', `SELECT COUNT(*) AS n FROM credentials WHERE vault_policy = $1 AND state IN ('minting', 'live', 'ending') AND id <> $2`),
  // The term repeats the partial index's WHERE, so the index serves it.
  namesLegacyPolicy: sql('credentials_legacy_policy', `SELECT 1 FROM credentials WHERE vault_policy = $1 AND left(vault_policy, 8) = 'jit-req_' LIMIT 1`),
  active: sql('credentials_active', `SELECT COUNT(*) AS n FROM credentials WHERE request_id = $1 AND state NOT IN ('abandoned', 'failed')`),
  // Each side as one JSON object, so the two tables' columns of one name stay apart (bigints come back as JSON numbers).
  inUse: sql('credentials_in_use', `SELECT to_jsonb(c) - 'seq' AS credential, to_jsonb(r) AS request FROM credentials c JOIN requests r ON r.id = c.request_id
    WHERE c.state IN ('live', 'ending') AND ($1::text IS NULL OR r.agent_name = $1) ORDER BY c.expires_at, c.id`),
  // The kid is in the credential's issue entry (broker/gate-credential.ts): the credential itself is never stored.
  liveGateSignedBy: sql('credentials_live_gate_signed_by', `SELECT ${ROW_C} FROM credentials c JOIN audit_log a ON a.request_id = c.request_id AND a.event = 'credential.issued'
    WHERE c.state = 'live' AND c.type = 'gate_push' AND a.data::jsonb ->> 'credential_id' = c.id AND a.data::jsonb ->> 'kid' = $1 ORDER BY c.expires_at, c.id`),
  grantGet: sql('grant_get', 'SELECT generation, written, updated_at FROM grant_policies WHERE grant_hash = $1'),
  // No write when the grant is known (grantGet first); a grant created meanwhile by another broker is read back.
  grantCreate: sql('grant_create', `WITH created AS (
      INSERT INTO grant_policies (grant_hash, generation, written, updated_at) VALUES ($1, 1, 0, $2) ON CONFLICT (grant_hash) DO NOTHING
      RETURNING generation, written, updated_at)
    SELECT * FROM created UNION ALL SELECT generation, written, updated_at FROM grant_policies WHERE grant_hash = $1 AND NOT EXISTS (SELECT 1 FROM created)`),
  grantWritten: sql('grant_written', 'UPDATE grant_policies SET written = 1, updated_at = $3 WHERE grant_hash = $1 AND generation = $2'),
  grantRetire: sql('grant_retire', 'UPDATE grant_policies SET generation = generation + 1, written = 0, updated_at = $3 WHERE grant_hash = $1 AND generation = $2'),
};

export function pgCredentials(x: Exec): CredentialsRepository {
  return {
    async insert(row) {
      const reservedAt = row.reserved_at ?? row.issued_at;
      // A row with neither (a `minting` one) would be taken by the sweep for an interrupted mint.
      if (reservedAt === null || reservedAt === undefined) throw new Error(`credential ${row.id}: reserved_at is required`);
      // Its one failure (a uniqueness rule: the request already has a credential) fails the whole transaction
      // (Exec.later); it cannot happen to a request this transaction inserted.
      const fallible = !x.tx?.insertedRequests?.has(row.request_id);
      await x.later(S.insert, [row.id, row.request_id, row.type, row.state, row.vault_policy, row.accessor, row.jti, row.issued_at, row.expires_at, reservedAt, row.node_id ?? null], fallible);
    },
    forRequest: (requestId) => one<CredentialRow>(x.read(S.forRequest, [requestId])),
    markLive: (id, accessor, issuedAt, expiresAt) => changedOne(x.write(S.live, [id, accessor, issuedAt, expiresAt])),
    move: (id, from, to, now, reason) => changedOne(x.write(S.move, [id, from, to, now, reason ?? null])),
    livePastExpiry: (now, limit) => all<CredentialRow>(x.read(S.liveExpired, [now, limit])),
    inState: (state, limit) => all<CredentialRow>(x.read(S.unsettled, [state, limit])),
    liveWithAccessor: () => all<CredentialRow>(x.read(S.liveWithAccessor)),
    recordLateAccessor: (id, accessor) => changedOne(x.write(S.lateAccessor, [id, accessor])),
    namesLegacyVaultPolicy: async (name) => (await x.read(S.namesLegacyPolicy, [name])).rows.length > 0,
    ownedPolicyNames: async () => new Set((await all<{ vault_policy: string }>(x.read(S.knownPolicies))).map((r) => r.vault_policy)),
    policyHolders: (name, exceptId) => count(x.read(S.policyHolders, [name, exceptId ?? ''])),
    activeCount: (requestId) => count(x.read(S.active, [requestId])),
    async inUse(filter = {}) {
      const rows = await all<{ credential: CredentialRow; request: RequestRow }>(x.read(S.inUse, [filter.agentName ?? null]));
      return rows.map((row) => ({ credential: row.credential, request: row.request }));
    },
    liveGateSignedBy: (kid) => all<CredentialRow>(x.read(S.liveGateSignedBy, [kid])),
  };
}

export function pgGrantPolicies(x: Exec): GrantPoliciesRepository {
  type Row = { generation: number; written: number; updated_at: number };
  return {
    async acquire(hash, now) {
      const row = (await one<Row>(x.read(S.grantGet, [hash]))) ?? ((await one<Row>(x.write(S.grantCreate, [hash, now]))) as Row);
      return { generation: row.generation, written: row.written === 1, updated_at: row.updated_at };
    },
    async markWritten(hash, generation, now) {
      await x.write(S.grantWritten, [hash, generation, now]);
    },
    async retire(hash, generation, now) {
      await x.write(S.grantRetire, [hash, generation, now]);
    },
  };
}
