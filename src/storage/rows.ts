/**
 * The rows the storage interface reads and writes, engine-neutral: what
 * every engine returns, whatever its own column types. Timestamps are epoch
 * milliseconds; JSON columns are strings (the broker parses them).
 */

export type RequestStatus = 'pending' | 'approved' | 'issued' | 'denied' | 'timed_out' | 'expired' | 'revoked' | 'failed';
export type CredentialState = 'minting' | 'live' | 'ending' | 'ended' | 'abandoned' | 'failed';
/** Same as the policy's `Tier` (broker/policy/types.ts); storage imports nothing of the broker. */
export type RequestTier = 1 | 2 | 3;

export interface RequestRow {
  id: string;
  agent_id: string;
  agent_name: string;
  resource: 'vault' | 'gate';
  tier: RequestTier;
  required_tier: RequestTier;
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
  /** What an approver granted (JSON like `scope`), set at approval; absent/NULL = granted as asked. See broker/narrowing.ts. */
  granted_scope?: string | null;
  granted_ttl_seconds?: number | null;
  /** The node (serving broker process) that created it; absent/NULL on older rows and rows the CLI wrote. See broker/node.ts. */
  node_id?: string | null;
}

/** What a new request row carries (the grant columns are set later, at approval). */
export type NewRequestRow = Omit<RequestRow, 'granted_scope' | 'granted_ttl_seconds'>;

/** Columns a status move may set with it; an absent field keeps the column's value. */
export interface StatusMoveFields {
  decidedBy?: string;
  decidedAt?: number;
  decisionReason?: string;
  failure?: string;
  claimExpiresAt?: number;
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
  /** The node (broker process) that reserved it; null on older rows and rows of processes without a node. */
  node_id: string | null;
}

export type NewCredentialRow = Pick<CredentialRow, 'id' | 'request_id' | 'type' | 'state' | 'vault_policy' | 'accessor' | 'jti' | 'issued_at' | 'expires_at'> &
  Partial<Pick<CredentialRow, 'reserved_at' | 'node_id'>>;

/** A named lease (storage LeasesRepository): who holds it, until when (ms). */
export interface LeaseRow {
  name: string;
  holder: string;
  expires_at: number;
  /** When the current holder took it (kept while it renews). */
  acquired_at: number;
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

export type NewVoteRow = VoteRow & { request_id: string };

/** A vote joined with its request, for the decision-time metrics (`seq` orders votes as cast). */
export interface VoteDecisionRow {
  seq: number;
  decision: 'approve' | 'deny';
  at: number;
  resource: 'vault' | 'gate';
  tier: RequestTier;
  created_at: number;
  decided_at: number | null;
  status: RequestStatus;
}

export interface AgentRow {
  id: string;
  name: string;
  token_id: string;
  token_hash: string;
  session_key: string | null;
  created_at: number;
}

/**
 * An approver: a person who may decide (SPEC §12). Removal keeps the row
 * (`removed_at` set) so votes and audit entries made as `approver:<id>`
 * still name someone; the name and Telegram id are unique among approvers
 * not removed, so either can be registered again.
 */
export interface ApproverRow {
  id: string;
  name: string;
  /** The numeric Telegram user id, as text; null when none was registered. */
  telegram_id: string | null;
  created_at: number;
  removed_at: number | null;
}

/** An approver not removed, with what `jit approver list` shows of them. */
export interface ApproverListRow extends ApproverRow {
  passkeys: number;
  sessions: number;
}

/** A one-time enrolment link: only the token's hash is stored. */
export interface EnrolmentRow {
  token_hash: string;
  approver_id: string;
  created_at: number;
  expires_at: number;
  used_at: number | null;
}

/** A WebAuthn credential (passkey) of an approver. */
export interface PasskeyRow {
  /** The credential id, base64url. */
  id: string;
  approver_id: string;
  /** The COSE public key, base64url. */
  public_key: string;
  sign_count: number;
  /** JSON array of the authenticator's transports (e.g. ["internal","hybrid"]). */
  transports: string;
  created_at: number;
  last_used_at: number | null;
}

/** A console session: only the session id's hash is stored. */
export interface ConsoleSessionRow {
  id_hash: string;
  approver_id: string;
  created_at: number;
  last_seen_at: number;
}

/** What a WebAuthn challenge was made for. */
export type ChallengePurpose = 'enrol' | 'sign-in' | 'step-up';

/**
 * A WebAuthn challenge the broker handed out: only its hash is stored. A
 * step-up challenge names its approver and the hash of the action it is
 * bound to (broker/passkeys.ts); an enrolment challenge names its approver.
 */
export interface ChallengeRow {
  challenge_hash: string;
  purpose: ChallengePurpose;
  approver_id: string | null;
  action_hash: string | null;
  created_at: number;
  expires_at: number;
}

/**
 * Every audit event name the broker writes. The names are part of the
 * audit log's hash chain and of the documented log (docs/), so they never
 * change; a new kind of entry adds a name here, and the typecheck catches a
 * misspelt one anywhere an entry is written.
 */
export const AUDIT_EVENTS = [
  'agent.added',
  'agent.removed',
  'approval.refused',
  'approver.added',
  'approver.removed',
  'audit.suppressed',
  'auth.failed',
  'callback.refused',
  'command.refused',
  'console.sign_in_refused',
  'console.signed_in',
  'console.signed_out',
  'credential.abandoned',
  'credential.expired',
  'credential.interrupted',
  'credential.issued',
  'credential.minted_after_abandon',
  'credential.vanished',
  'grant.narrowed',
  'key.revoked',
  'key.rotated',
  'passkey.refused',
  'passkey.registered',
  'request.approved',
  'request.created',
  'request.denied',
  'request.expired',
  'request.failed',
  'request.interrupted',
  'request.rejected',
  'request.revoked',
  'request.timed_out',
  'stepup.refused',
  'vault.stray_policy_deleted',
  'vote.cast',
  'vote.duplicate',
  'vote.ignored',
  'vote.refused',
  'webhook.dead',
  'webhook.delivered',
  'webhook.requeued',
  'webhook.retry',
] as const;

export type AuditEvent = (typeof AUDIT_EVENTS)[number];

export interface AuditRow {
  seq: number;
  at: number;
  /** An {@link AuditEvent} when written; a string as read back (the log keeps whatever it was given). */
  event: string;
  actor: string;
  request_id: string | null;
  /** Canonical JSON. */
  data: string;
  prev_hash: string;
  hash: string;
}

/** A signed audit chain head as stored (broker/audit.ts signs and verifies). */
export interface AuditHeadRow {
  seq: number;
  hash: string;
  at: number;
  kid: string;
  signature: string;
}

/** The state of a shared grant policy (JIT_SHARE_GRANT_POLICIES). */
export interface GrantPolicyRow {
  generation: number;
  /** The current generation was written to Vault, at `updated_at`. */
  written: boolean;
  updated_at: number;
}

export type OutboxState = 'pending' | 'delivering' | 'delivered' | 'dead';
export type OutboxTargetKind = 'openclaw' | 'standard';
/** 'unresolved': written without the policy (invalid files); the service's dispatcher addresses it from its own. */
export type OutboxRowTarget = OutboxTargetKind | 'unresolved';
export type OutboxEventType = 'jit.request.approved' | 'jit.request.denied' | 'jit.request.timed_out' | 'jit.request.revoked' | 'jit.request.expired';

export interface OutboxRow {
  id: string;
  request_id: string;
  type: OutboxEventType;
  target: OutboxRowTarget;
  url: string | null;
  url_source: 'config' | 'policy';
  session_key: string | null;
  /** 'facts' (EventFacts JSON, rendered at delivery) or 'rendered' (rows of earlier versions: the exact bytes to send). */
  body_format: 'facts' | 'rendered';
  body: string;
  state: OutboxState;
  attempts: number;
  next_attempt_at: number;
  lease_owner: string | null;
  lease_expires_at: number | null;
  last_status: number | null;
  last_error: string | null;
  created_at: number;
  updated_at: number;
  delivered_at: number | null;
}

export type NewOutboxRow = Pick<
  OutboxRow,
  'id' | 'request_id' | 'type' | 'target' | 'url' | 'url_source' | 'session_key' | 'body_format' | 'body' | 'state' | 'next_attempt_at' | 'last_error' | 'created_at'
>;

/** What a claim may take: rows due by `dueBy` or whose lease ran out by `now`, leased to `owner` until `leaseUntil`. */
export interface ClaimParams {
  now: number;
  dueBy: number;
  owner: string;
  leaseUntil: number;
}

/** How an unresolved outbox row is addressed (webhooks/outbox.ts decides; storage writes it). */
export interface OutboxAddress {
  target: OutboxTargetKind;
  url: string | null;
  url_source: 'config' | 'policy';
  body: string;
  state: 'pending' | 'dead';
  last_error: string | null;
}

export interface TelegramMessageRow {
  request_id: string;
  chat_id: string;
  message_id: number | null;
  claim_token: string | null;
  claimed_at: number | null;
  rendered_status: RequestStatus | null;
  rendered_hash: string | null;
  settled: 0 | 1;
  posted_at: number | null;
  edited_at: number | null;
}

/** An open narrowing panel as stored (migration 0006); `narrowing` is JSON. */
export interface NarrowingDraftRow {
  id: string;
  request_id: string;
  narrowing: string;
  version: number;
  opened_by: string;
  updated_by: string;
}

/** The service's recorded settings (config/service-settings.ts parses `settings`). */
export interface ServiceSettingsRow {
  settings: string;
  recorded_at: number;
  pid: number;
}

/**
 * One signing key of the ring kept in the database (PostgreSQL migration
 * 0003; src/keys/key-ring-db.ts), and the ring as of one version: the keys'
 * own stored types (src/keys/key-ring-store.ts), so the two cannot drift.
 * `sealed_seed`: the private key seed sealed under the key-encryption key
 * (src/keys/key-seal.ts), present only on the current generated key; never
 * the seed in the clear.
 */
export type { StoredKey as SigningKeyRow, StoredKeyRing as SigningKeyRingRow } from '../keys/key-ring-store.ts';
