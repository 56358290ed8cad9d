import type { CredentialRow, RequestRow } from '../rows.ts';
import type { CredentialsRepository, GrantPoliciesRepository } from '../storage.ts';
import type { Db } from './open.ts';
import type { Sync } from './sync.ts';

export function sqliteCredentials(db: Db): Sync<CredentialsRepository> {
  const s = {
    insert: db.prepare(`INSERT INTO credentials (id, request_id, type, state, vault_policy, accessor, jti, issued_at, expires_at, reserved_at, node_id)
      VALUES (@id, @request_id, @type, @state, @vault_policy, @accessor, @jti, @issued_at, @expires_at, @reserved_at, @node_id)`),
    forRequest: db.prepare(`SELECT * FROM credentials WHERE request_id = ? ORDER BY state IN ('abandoned', 'failed'), rowid DESC LIMIT 1`),
    live: db.prepare(`UPDATE credentials SET state = 'live', accessor = @accessor, issued_at = @issued_at, expires_at = @expires_at
      WHERE id = @id AND state = 'minting'`),
    move: db.prepare(`UPDATE credentials SET state = @to,
      ended_at = CASE WHEN @to IN ('ended', 'failed') THEN @now ELSE ended_at END,
      end_reason = COALESCE(end_reason, @reason)
      WHERE id = @id AND state = @from`),
    liveExpired: db.prepare(`SELECT * FROM credentials WHERE state = 'live' AND expires_at <= ? ORDER BY expires_at LIMIT ?`),
    // Both through the partial index credentials_unsettled (state): SQLite uses a partial index only when
    // the query repeats its WHERE term verbatim (`state = ?`, even `state = 'minting'`, alone scans the table).
    unsettled: db.prepare(`SELECT * FROM credentials WHERE state IN ('minting', 'ending', 'abandoned') AND state = ? LIMIT ?`),
    // The minting rows are the mints under way, a handful: reserved_at is checked on them, no index of its own.
    liveWithAccessor: db.prepare(`SELECT * FROM credentials WHERE state = 'live' AND accessor IS NOT NULL`),
    lateAccessor: db.prepare(`UPDATE credentials SET accessor = ? WHERE id = ? AND state IN ('abandoned', 'failed') AND accessor IS NULL`),
    knownPolicies: db.prepare(`SELECT vault_policy FROM credentials WHERE vault_policy IS NOT NULL AND state IN ('minting', 'live', 'ending', 'abandoned')`).pluck(),
    policyHolders: db.prepare(`SELECT COUNT(*) FROM credentials WHERE vault_policy = ? AND state IN ('minting', 'live', 'ending') AND id != ?`).pluck(),
    // The term repeats the partial index's WHERE verbatim, so the index serves it.
    namesLegacyPolicy: db.prepare(`SELECT 1 FROM credentials WHERE vault_policy = ? AND substr(vault_policy, 1, 8) = 'jit-req_' LIMIT 1`),
    active: db.prepare(`SELECT COUNT(*) FROM credentials WHERE request_id = ? AND state NOT IN ('abandoned', 'failed')`).pluck(),
    // Expanded: each row is { credentials: CredentialRow, requests: RequestRow } (the columns namespaced by table).
    inUse: db
      .prepare(`SELECT c.*, r.* FROM credentials c JOIN requests r ON r.id = c.request_id
      WHERE c.state IN ('live', 'ending') AND (@agent_name IS NULL OR r.agent_name = @agent_name) ORDER BY c.expires_at, c.id`)
      .expand(true),
    // The kid is in the credential's issue entry (broker/gate-credential.ts): the credential itself is never stored.
    liveGateSignedBy: db.prepare(`SELECT c.* FROM credentials c JOIN audit_log a ON a.request_id = c.request_id AND a.event = 'credential.issued'
      WHERE c.state = 'live' AND c.type = 'gate_push' AND json_extract(a.data, '$.credential_id') = c.id AND json_extract(a.data, '$.kid') = ? ORDER BY c.expires_at, c.id`),
  };
  return {
    insert(row) {
      const reservedAt = row.reserved_at ?? row.issued_at;
      // A row with neither (a `minting` one) would be taken by the sweep for an interrupted mint.
      if (reservedAt === null || reservedAt === undefined) throw new Error(`credential ${row.id}: reserved_at is required`);
      s.insert.run({ ...row, reserved_at: reservedAt, node_id: row.node_id ?? null });
    },
    forRequest: (requestId) => s.forRequest.get(requestId) as CredentialRow | undefined,
    markLive: (id, accessor, issuedAt, expiresAt) => s.live.run({ id, accessor, issued_at: issuedAt, expires_at: expiresAt }).changes === 1,
    move: (id, from, to, now, reason) => s.move.run({ id, from, to, now, reason: reason ?? null }).changes === 1,
    livePastExpiry: (now, limit) => s.liveExpired.all(now, limit) as CredentialRow[],
    inState: (state, limit) => s.unsettled.all(state, limit) as CredentialRow[],
    liveWithAccessor: () => s.liveWithAccessor.all() as CredentialRow[],
    recordLateAccessor: (id, accessor) => s.lateAccessor.run(accessor, id).changes === 1,
    namesLegacyVaultPolicy: (name) => s.namesLegacyPolicy.get(name) !== undefined,
    ownedPolicyNames: () => new Set(s.knownPolicies.all() as string[]),
    policyHolders: (name, exceptId) => s.policyHolders.get(name, exceptId ?? '') as number,
    activeCount: (requestId) => s.active.get(requestId) as number,
    inUse(filter = {}) {
      const rows = s.inUse.all({ agent_name: filter.agentName ?? null }) as { credentials: CredentialRow; requests: RequestRow }[];
      return rows.map((row) => ({ credential: row.credentials, request: row.requests }));
    },
    liveGateSignedBy: (kid) => s.liveGateSignedBy.all(kid) as CredentialRow[],
  };
}

export function sqliteGrantPolicies(db: Db): Sync<GrantPoliciesRepository> {
  type Row = { generation: number; written: number; updated_at: number };
  // No write at all when the grant is known: a repeated grant dirties no page here.
  const create = db.prepare(`INSERT INTO grant_policies (grant_hash, generation, written, updated_at) VALUES (?, 1, 0, ?) ON CONFLICT (grant_hash) DO NOTHING
      RETURNING generation, written, updated_at`);
  const get = db.prepare(`SELECT generation, written, updated_at FROM grant_policies WHERE grant_hash = ?`);
  const written = db.prepare(`UPDATE grant_policies SET written = 1, updated_at = ? WHERE grant_hash = ? AND generation = ?`);
  const retire = db.prepare(`UPDATE grant_policies SET generation = generation + 1, written = 0, updated_at = ? WHERE grant_hash = ? AND generation = ?`);
  return {
    acquire(hash, now) {
      const row = ((get.get(hash) as Row | undefined) ?? (create.get(hash, now) as Row | undefined) ?? get.get(hash)) as Row;
      return { generation: row.generation, written: row.written === 1, updated_at: row.updated_at };
    },
    markWritten(hash, generation, now) {
      written.run(now, hash, generation);
    },
    retire(hash, generation, now) {
      retire.run(now, hash, generation);
    },
  };
}
