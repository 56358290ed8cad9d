import type {
  AgentRow,
  ApproverListRow,
  ApproverRow,
  ChallengePurpose,
  ChallengeRow,
  ConsoleSessionRow,
  EnrolmentRow,
  PasskeyRow,
  AuditEvent,
  AuditHeadRow,
  AuditRow,
  ClaimParams,
  CredentialRow,
  CredentialState,
  GrantPolicyRow,
  LeaseRow,
  NarrowingDraftRow,
  NewCredentialRow,
  NewOutboxRow,
  NewRequestRow,
  NewVoteRow,
  OutboxAddress,
  OutboxRow,
  OutboxState,
  RequestRow,
  RequestStatus,
  ServiceSettingsRow,
  SigningKeyRingRow,
  SigningKeyRow,
  StatusMoveFields,
  TelegramMessageRow,
  VoteDecisionRow,
  VoteRow,
} from './rows.ts';
import type { Logger } from '../lib/logger.ts';

/*
 * The storage interface: every statement the broker, Telegram, webhooks,
 * metrics and the CLI run against the database, behind repositories whose
 * methods all return promises, so that a network database can implement
 * them. SQLite (src/storage/sqlite/) is the first engine.
 *
 * Rules every engine keeps (test/storage/conformance.ts checks them):
 * - A method that changes a row conditionally (a status move, a lease, a
 *   claim) answers whether it did: of two callers racing for the same move,
 *   exactly one gets `true`.
 * - Uniqueness is the database's: a second request with the same
 *   Idempotency-Key for one agent, a second credential row that is neither
 *   abandoned nor failed for one request, a second agent of one name are
 *   refused with {@link StorageUniqueError} (src/storage/errors.ts); a second
 *   vote of one approver, a second outbox event of one type for a request
 *   are ignored (`false`).
 * - A write that cannot get the database within its wait (another process
 *   holds the write lock) throws {@link StorageBusyError}.
 * - Lists come in the order their doc states, never more than `limit` rows.
 */

/** A filter of {@link RequestsRepository.list}. */
export interface RequestListFilter {
  status?: RequestStatus;
  agentId?: string;
  agentName?: string;
  search?: string;
  before?: { createdAt: number; id: string };
  limit?: number;
}

/** Requests: rows, the conditional status move, and the lifecycle queries over their deadlines. */
export interface RequestsRepository {
  /** Throws StorageUniqueError when the agent already has a request with this Idempotency-Key. */
  insert(row: NewRequestRow): Promise<void>;
  get(id: string): Promise<RequestRow | undefined>;
  /**
   * THE status write: moves request `id` from `from` to `to` (setting
   * `updated_at = now` and the given fields), only if it is still in `from`.
   * False if it was not. Nothing else writes a request's status.
   */
  move(id: string, from: RequestStatus, to: RequestStatus, now: number, fields?: StatusMoveFields): Promise<boolean>;
  /** Records what is granted on a still-pending request; false if it was no longer pending. */
  setGrant(id: string, scopeJson: string, ttlSeconds: number): Promise<boolean>;
  /** Pending requests whose approval deadline is at or before `now`, soonest deadline first. */
  pendingPastDeadline(now: number, limit: number): Promise<RequestRow[]>;
  /** Approved requests whose claim window closed at or before `now`, soonest first. */
  approvedPastClaimWindow(now: number, limit: number): Promise<RequestRow[]>;
  /** Tier-1 requests approved by policy before `before` without a credential row in minting, live or ending. */
  tier1ApprovedWithoutCredential(before: number): Promise<RequestRow[]>;
  /** How many of the agent's requests are pending. */
  pendingCount(agentId: string): Promise<number>;
  /**
   * Newest first (created_at, then id, descending); `limit` defaults to 100.
   * `search`: only requests whose id, agent name, session key or reason
   * contains it (case-insensitive for ASCII letters; a full scan of the
   * other filters' rows). `before`: only requests older than that one in
   * this order (the next page).
   */
  list(filter: RequestListFilter): Promise<RequestRow[]>;
  /** Issued, approved and pending requests, oldest first; of one agent name or of all. */
  open(filter?: { agentName?: string }): Promise<RequestRow[]>;
}

/** The Idempotency-Key of a request (the unique index on agent and key). */
export interface IdempotencyRepository {
  find(agentId: string, key: string): Promise<RequestRow | undefined>;
  /** Frees the request's key (and body hash), so the agent's retry with the same key is a new request. */
  release(requestId: string): Promise<void>;
}

/** The per-agent rate limit's records: requests created and policy refusals. */
export interface RateLimitsRepository {
  /**
   * Time of the agent's `n`-th newest recorded event (by the order they were
   * recorded) when that is after `since`, else undefined: "has the agent
   * made `n` in the window?". Two index lookups, however many events.
   */
  nthNewestSince(agentId: string, since: number, n: number): Promise<number | undefined>;
  /** Records one event at `at` that counts toward the agent's limit: a request it made, or a policy refusal. */
  record(agentId: string, at: number): Promise<void>;
  /** Drops up to `limit` events at or before `expired`; answers how many it dropped (fewer than `limit`: none is left). */
  prune(expired: number, limit: number): Promise<number>;
}

export interface CredentialsRepository {
  /**
   * Inserts a credential row; `reserved_at` defaults to `issued_at` and one
   * of them is required. Throws StorageUniqueError when the request already
   * has a row that is neither abandoned nor failed.
   */
  insert(row: NewCredentialRow): Promise<void>;
  /** The request's credential: the newest that is neither abandoned nor failed, else the newest. */
  forRequest(requestId: string): Promise<CredentialRow | undefined>;
  /** `minting` → `live` with its accessor and times; false if it was no longer minting. */
  markLive(id: string, accessor: string | null, issuedAt: number, expiresAt: number): Promise<boolean>;
  /** Conditional state move; `ended_at = now` when moving to ended or failed; `end_reason` kept if already set. */
  move(id: string, from: CredentialState, to: CredentialState, now: number, reason?: string): Promise<boolean>;
  /** Live credentials whose expiry is at or before `now`, soonest first. */
  livePastExpiry(now: number, limit: number): Promise<CredentialRow[]>;
  /** Rows in a state still to settle. */
  inState(state: 'minting' | 'ending' | 'abandoned', limit: number): Promise<CredentialRow[]>;
  /** Live credentials with a known accessor (startup reconciliation asks Vault about each). */
  liveWithAccessor(): Promise<CredentialRow[]>;
  /** Records the accessor of a token minted for an abandoned/failed row that names none; false otherwise. */
  recordLateAccessor(id: string, accessor: string): Promise<boolean>;
  /** Whether a row in any state names this Vault policy of the old shared `jit-req_` prefix (false for other names). */
  namesLegacyVaultPolicy(name: string): Promise<boolean>;
  /** Vault policies named by rows in minting, live, ending or abandoned. */
  ownedPolicyNames(): Promise<Set<string>>;
  /** Rows other than `exceptId` in minting, live or ending that name the Vault policy `name`. */
  policyHolders(name: string, exceptId: string | null): Promise<number>;
  /** How many of the request's rows are neither abandoned nor failed (0 or 1). */
  activeCount(requestId: string): Promise<number>;
  /** Live and ending credentials with their requests, soonest expiry first (then id); of one agent name or of all. */
  inUse(filter?: { agentName?: string }): Promise<{ credential: CredentialRow; request: RequestRow }[]>;
  /** Live gate credentials whose issue audit entry names key `kid`, soonest expiry first (then id). */
  liveGateSignedBy(kid: string): Promise<CredentialRow[]>;
}

/** Shared Vault grant policies (JIT_SHARE_GRANT_POLICIES): generations and when each was written. */
export interface GrantPoliciesRepository {
  /** The grant's row, created at generation 1, unwritten, when there is none (a known grant writes nothing). */
  acquire(hash: string, now: number): Promise<GrantPolicyRow>;
  /** Marks `generation` written at `now`; no-op if it was retired meanwhile. */
  markWritten(hash: string, generation: number, now: number): Promise<void>;
  /** Bumps the generation if it is still `generation` (unwritten); no-op otherwise. */
  retire(hash: string, generation: number, now: number): Promise<void>;
}

export interface VotesRepository {
  /** False (nothing written) when this approver already voted on the request. */
  insert(vote: NewVoteRow): Promise<boolean>;
  has(requestId: string, approver: string): Promise<boolean>;
  /** Approve votes on the request, leaving out those of approvers removed since (src/storage/vote-rules.ts). */
  countApprovals(requestId: string): Promise<number>;
  /** Every vote on the request, by time then approver. */
  of(requestId: string): Promise<VoteRow[]>;
  /** The approve votes on the request, by time then approver; not those of approvers removed since. */
  approvals(requestId: string): Promise<VoteRow[]>;
  /** The `seq` of the newest vote (0 when none): votes are numbered as cast. */
  newestSeq(): Promise<number>;
  /** Votes after `seq`, each with its request's figures, in order, at most `limit`. */
  decisionsAfter(seq: number, limit: number): Promise<VoteDecisionRow[]>;
}

export interface AgentsRepository {
  /** Throws StorageUniqueError when the name (or token id) is taken. */
  insert(row: AgentRow): Promise<void>;
  byName(name: string): Promise<AgentRow | undefined>;
  byTokenId(tokenId: string): Promise<AgentRow | undefined>;
  /** By name. */
  list(): Promise<AgentRow[]>;
  delete(id: string): Promise<boolean>;
}

/**
 * Approvers (people who may decide: SPEC §12) and their one-time enrolment
 * links. Only approvers not removed count: `byName`, `byTelegramId`,
 * `list` and the enrolment methods ignore removed ones.
 */
export interface ApproversRepository {
  /** Throws StorageUniqueError when an approver not removed has the name or the Telegram id (or the id is taken). */
  insert(row: ApproverRow): Promise<void>;
  /** By id, removed or not (votes and audit entries name `approver:<id>`). */
  get(id: string): Promise<ApproverRow | undefined>;
  byName(name: string): Promise<ApproverRow | undefined>;
  byTelegramId(telegramId: string): Promise<ApproverRow | undefined>;
  /** Approvers not removed, by name, with their passkey and session counts. */
  list(): Promise<ApproverListRow[]>;
  /**
   * Marks the approver removed and, in the same atomic step, deletes their
   * console sessions, passkeys and enrolment links. False (nothing changed)
   * when there is no such approver or they were already removed.
   */
  remove(id: string, now: number): Promise<boolean>;
  /** Stores an enrolment link (its token's hash). */
  addEnrolment(row: EnrolmentRow): Promise<void>;
  /** The link if it is unused, not expired at `now`, and its approver not removed; it stays usable. */
  enrolment(tokenHash: string, now: number): Promise<EnrolmentRow | undefined>;
  /**
   * Uses the link up (conditional: unused, not expired at `now`, approver
   * not removed) and answers its approver's id; undefined when it could
   * not. Of two callers racing with one link, exactly one gets the id.
   */
  consumeEnrolment(tokenHash: string, now: number): Promise<string | undefined>;
  /** Deletes links that expired at or before `now` or were used; how many. */
  pruneEnrolments(now: number): Promise<number>;
}

/** Approvers' WebAuthn credentials. */
export interface PasskeysRepository {
  /** Throws StorageUniqueError when the credential id is registered already. */
  insert(row: PasskeyRow): Promise<void>;
  /** The passkey, if its approver is not removed. */
  get(id: string): Promise<PasskeyRow | undefined>;
  /** The approver's passkeys, oldest first. */
  of(approverId: string): Promise<PasskeyRow[]>;
  /** Records a use: the sign count moves from `from` to `to` if it is still `from`; false otherwise (a replayed or cloned authenticator racing). */
  use(id: string, from: number, to: number, now: number): Promise<boolean>;
}

/**
 * WebAuthn challenges (the challenge's hash only). A challenge is used at
 * most once, before it expires, whoever races for it (brokers sharing the
 * database, a prune).
 */
export interface ChallengesRepository {
  /** Throws StorageUniqueError when the hash is stored already. */
  insert(row: ChallengeRow): Promise<void>;
  /**
   * Uses the challenge up (one conditional statement deleting it: of
   * `purpose`, expiring after `now`) and answers its row; undefined when it
   * could not. Of two callers racing with one challenge exactly one gets
   * the row.
   */
  consume(challengeHash: string, purpose: ChallengePurpose, now: number): Promise<ChallengeRow | undefined>;
  /** Deletes challenges that expired at or before `now` (used ones are gone already); how many. */
  prune(now: number): Promise<number>;
}

/** Console sessions (the session id's hash; timeouts are the caller's, from the two times). */
export interface ConsoleSessionsRepository {
  insert(row: ConsoleSessionRow): Promise<void>;
  /** The session, if its approver is not removed. */
  get(idHash: string): Promise<ConsoleSessionRow | undefined>;
  /** Sets `last_seen_at`; false when the session is gone. */
  touch(idHash: string, now: number): Promise<boolean>;
  /** Ends one session; false when it was gone. */
  delete(idHash: string): Promise<boolean>;
  /** Deletes sessions last seen at or before `idleBefore` or created at or before `createdBefore`; how many. */
  prune(idleBefore: number, createdBefore: number): Promise<number>;
}

/**
 * The append-only audit log and its signed heads. The hash chain itself
 * (broker/audit.ts) is computed by the caller: storage keeps the rows.
 */
export interface AuditRepository {
  /** The newest entry's seq and hash (a lookup by key, whatever the log's length). */
  last(): Promise<{ seq: number; hash: string } | undefined>;
  /** Appends a row; its `seq` must be the next one. */
  insert(row: AuditRow): Promise<void>;
  hashAt(seq: number): Promise<string | undefined>;
  /** Entries after `afterSeq`, in order, at most `limit`. */
  page(afterSeq: number, limit: number): Promise<AuditRow[]>;
  /**
   * The request's entries after `afterSeq`, in order, at most `limit` (an
   * index on request id and seq: the decision stream's backlog and resume).
   * The decision stream also relies on the log's order being its commit
   * order: an entry becomes visible only after every entry of a lower seq
   * (read the last, insert it + 1, serializable), so a reader that saw seq
   * N never later finds a new entry below N.
   */
  ofRequest(requestId: string, afterSeq: number, limit: number): Promise<AuditRow[]>;
  /** Actor and time of the request's newest entry of `event`. */
  latest(requestId: string, event: AuditEvent): Promise<{ actor: string; at: number } | undefined>;
  lastHead(): Promise<AuditHeadRow | undefined>;
  insertHead(head: AuditHeadRow): Promise<void>;
  /** Every signed head, oldest first. */
  heads(): Promise<AuditHeadRow[]>;
}

/** The webhook outbox. Every move out of `delivering` is conditional on the lease owner. */
export interface OutboxRepository {
  /** False when the request already has an event of this type. */
  insert(row: NewOutboxRow): Promise<boolean>;
  /**
   * Leases up to `limit` due rows (pending and due by `dueBy`, or
   * delivering with an expired lease, those first) to `owner`, counting
   * the attempt on each; the oldest due win. `room(url)` caps the rows
   * taken per target URL ('' for rows without one). Two claims, even in
   * two processes, never lease the same row. Rows with target 'unresolved'
   * are never leased.
   */
  claim(p: ClaimParams & { limit: number; room?: (url: string) => number }): Promise<OutboxRow[]>;
  /** Rows with target 'unresolved', oldest first. */
  unresolved(limit: number): Promise<OutboxRow[]>;
  /** Addresses a pending unresolved row; false if it was addressed, dropped or is not pending. */
  address(id: string, address: OutboxAddress, now: number): Promise<boolean>;
  /** Deletes a pending unresolved row; false if there was none. */
  dropUnresolved(id: string): Promise<boolean>;
  markDelivered(id: string, owner: string, now: number, status: number): Promise<boolean>;
  markRetry(id: string, owner: string, now: number, p: { status: number | null; error: string; nextAttemptAt: number }): Promise<boolean>;
  markDead(id: string, owner: string, now: number, p: { status: number | null; error: string }): Promise<boolean>;
  /** Gives a leased row back, due now. */
  release(id: string, owner: string, now: number): Promise<boolean>;
  /** Dead → pending, attempts reset, due now. */
  requeue(id: string, now: number): Promise<boolean>;
  get(id: string): Promise<OutboxRow | undefined>;
  /** Newest first (created_at, then id, descending); `limit` defaults to 50. */
  list(filter?: { state?: OutboxState; limit?: number }): Promise<OutboxRow[]>;
  /** The request's events, oldest first. */
  forRequest(requestId: string): Promise<OutboxRow[]>;
  /** Rows pending or delivering. */
  pendingCount(): Promise<number>;
  deadCount(): Promise<number>;
  countByState(): Promise<Record<OutboxState, number>>;
}

/** The Telegram adapter's own tables: posted messages, narrowing panels, approver names. */
export interface TelegramRepository {
  /** Pending tier-2/3 requests not past their deadline with no message and no live claim (older than `staleBefore`), oldest first. */
  unposted(now: number, staleBefore: number, limit: number): Promise<RequestRow[]>;
  /** Claims the right to post with `token`; false when a claim newer than `staleBefore` exists or a message was posted. */
  claim(requestId: string, chatId: string, token: string, now: number, staleBefore: number): Promise<boolean>;
  /** Records the posted message; false if the claim `token` was lost meanwhile. */
  posted(requestId: string, token: string, messageId: number, status: RequestStatus, hash: string, settled: boolean, now: number): Promise<boolean>;
  /** Drops an unposted claim held with `token`. */
  release(requestId: string, token: string): Promise<void>;
  /** Records a message posted but never recorded; false if one is recorded (or the claim is for another chat). */
  adopt(requestId: string, chatId: string, messageId: number, now: number): Promise<boolean>;
  /** Posted messages not settled, oldest post first. */
  unsettled(limit: number): Promise<TelegramMessageRow[]>;
  /** Records what a message shows if its hash is still `previous`; otherwise forgets the hash (re-render) and answers false. */
  rendered(requestId: string, previous: string | null, status: RequestStatus, hash: string, settled: boolean, now: number): Promise<boolean>;
  get(requestId: string): Promise<TelegramMessageRow | undefined>;
  /** Opens a panel with id `id` unless the request has one; returns the request's open panel. */
  openDraft(row: { id: string; request_id: string; narrowing: string; by: string; now: number }): Promise<NarrowingDraftRow>;
  draft(id: string): Promise<NarrowingDraftRow | undefined>;
  draftFor(requestId: string): Promise<NarrowingDraftRow | undefined>;
  /** Stores a new choice if the panel is still at `version`; false otherwise. */
  updateDraft(id: string, version: number, narrowing: string, by: string, now: number): Promise<boolean>;
  closeDraft(id: string): Promise<void>;
  /** Drops the panels of requests no longer pending (writes nothing when no panel is open); how many. */
  pruneDrafts(): Promise<number>;
  rememberName(identity: string, name: string, now: number): Promise<void>;
  /** Display names by voter identity: Telegram users seen (`telegram:<id>`) and every approver, removed or not (`approver:<id>`). */
  names(): Promise<Map<string, string>>;
}

/**
 * Named, expiring leases shared by every process on the database: a
 * broker's node lease (`node:<id>`), the Telegram leader (`telegram:leader`).
 * Times are the callers' clocks (ms); brokers sharing a database keep their
 * clocks in step (NTP).
 */
export interface LeasesRepository {
  /**
   * Takes lease `name` for `holder` until `expiresAt`, or renews it: only
   * when nobody holds it, `holder` already does, or it expired at or before
   * `now`. One conditional statement: of callers racing for a free or
   * expired lease exactly one gets `true`. `acquired_at` is `now` when the
   * holder changes, kept when it renews.
   */
  acquire(name: string, holder: string, now: number, expiresAt: number): Promise<boolean>;
  /** Drops the lease if `holder` holds it; false otherwise. */
  release(name: string, holder: string): Promise<boolean>;
  /** The lease row, expired or not. */
  get(name: string): Promise<LeaseRow | undefined>;
}

/** Installation-wide values. */
export interface SettingsRepository {
  /** Made with the database; names this installation's Vault policies. */
  installationId(): Promise<string>;
  /** Records the service's settings (one row; the last service to start wins). */
  recordService(row: ServiceSettingsRow): Promise<void>;
  readService(): Promise<ServiceSettingsRow | undefined>;
}

/**
 * The signing key ring, where the engine keeps it (PostgreSQL: shared by
 * every broker on the database; SQLite keeps keys in a file next to the
 * database instead, so its `signingKeys` is undefined). Not part of
 * transactions: the ring is written with its own compare-and-set.
 */
export interface SigningKeysRepository {
  /** The ring's version, 0 before the first write (one read of one row: what each broker polls). */
  version(): Promise<number>;
  /** The whole ring as of one version (one snapshot). */
  read(): Promise<SigningKeyRingRow>;
  /**
   * Replaces the whole ring if its version is still `expected` (0: nothing
   * written yet), atomically. Answers the new version, or undefined (nothing
   * written) when another writer moved it first: the caller re-reads and
   * applies its change again.
   */
  replace(expected: number, ring: { kek_check: string; keys: SigningKeyRow[] }, now: number): Promise<number | undefined>;
}

export interface Repositories {
  readonly requests: RequestsRepository;
  readonly idempotency: IdempotencyRepository;
  readonly rateLimits: RateLimitsRepository;
  readonly credentials: CredentialsRepository;
  readonly grantPolicies: GrantPoliciesRepository;
  readonly votes: VotesRepository;
  readonly agents: AgentsRepository;
  readonly approvers: ApproversRepository;
  readonly passkeys: PasskeysRepository;
  readonly consoleSessions: ConsoleSessionsRepository;
  readonly challenges: ChallengesRepository;
  readonly audit: AuditRepository;
  readonly outbox: OutboxRepository;
  readonly telegram: TelegramRepository;
  readonly settings: SettingsRepository;
  readonly leases: LeasesRepository;
}

/**
 * The repositories bound to one open transaction, plus hooks for memory
 * that must follow its outcome (the audit log's coalescing windows).
 * Using it after its transaction ended throws.
 */
export interface Transaction extends Repositories {
  /** Runs `fn` (synchronously) once the transaction committed. */
  afterCommit(fn: () => void): void;
  /** Runs `fn` (synchronously) once the transaction rolled back. */
  afterRollback(fn: () => void): void;
}

/**
 * One database. The repositories on it run each call on its own (one
 * statement, or one engine-side atomic step); `transaction` runs several
 * as one.
 *
 * TRANSACTIONS
 * - `transaction(fn)` takes the database's write lock first (SQLite: BEGIN
 *   IMMEDIATE), passes `fn` the repositories bound to the transaction,
 *   commits when `fn`'s promise resolves and rolls back when it rejects
 *   (the error is rethrown). Commit hooks run after COMMIT, rollback hooks
 *   after ROLLBACK. Both engines commit several transactions together
 *   (GROUP COMMIT: SQLite those of one turn of the event loop, PostgreSQL
 *   those queued for the lock behind one; src/storage/<engine>/storage.ts):
 *   a transaction's commit hooks run once that COMMIT is done, possibly
 *   after later transactions of its group ran; its rollback hooks run at
 *   once when it fails, and after the COMMIT if that fails. A hook that throws
 *   is reported, never rethrown: a committed transaction always resolves
 *   (its caller must not retry work that is done), and a rolled-back one
 *   rejects with the callback's own error.
 * - ISOLATION. The broker relies on transactions being serializable: each
 *   runs as if alone, from its first read to its commit. The audit log's
 *   next seq (read the last, insert it + 1), the rate-limit check (count,
 *   then record) and every read-then-move depend on it. SQLite gives it
 *   with a write lock held for the whole transaction (BEGIN IMMEDIATE; one
 *   transaction at a time per process); another engine must give the same
 *   (PostgreSQL: SERIALIZABLE, retrying a serialization failure, or an
 *   equivalent lock), never READ COMMITTED alone. A call outside any
 *   transaction never sees a transaction's uncommitted writes; whether it
 *   waits for the transaction (SQLite) or reads around it is the engine's.
 * - The write lock is held for the whole callback. A callback awaits ONLY
 *   calls on its `tx`: never the network (Vault, Telegram, HTTP), never a
 *   timer. Do the remote work before or after, in its own step (see
 *   broker/credential-issue.ts: reserve, call Vault, commit).
 * - A write's failure inside a transaction (a uniqueness rule) fails the
 *   transaction: it rejects with that error and nothing it wrote commits.
 *   The failing call itself may report it (SQLite), or, where the engine
 *   sends writes ahead without waiting (PostgreSQL's request, credential
 *   and audit inserts), the transaction's next call or its commit. So a
 *   callback never catches a write's error to go on (PostgreSQL could not
 *   continue the aborted transaction anyway), and does nothing outside the
 *   database on the strength of a write before the transaction commits.
 * - Not reentrant. Inside a callback use `tx`, never `storage` (its calls
 *   wait for the open transaction, i.e. for themselves, and fail with
 *   StorageBusyError after the lock wait). A function that must compose
 *   into a caller's transaction takes the `tx` as a parameter (`decideIn(tx,
 *   …)`), with a wrapper that opens one (`decideRequest(…)`).
 */
export interface Storage extends Repositories {
  /** 'sqlite' or 'postgres'. */
  readonly engine: string;
  /** The shared signing key ring (PostgreSQL); undefined where keys live in a file (SQLite). */
  readonly signingKeys: SigningKeysRepository | undefined;
  transaction<T>(fn: (tx: Transaction) => Promise<T>): Promise<T>;
  /** Resolves when the database answers a trivial query (/healthz). */
  ping(): Promise<void>;
  /**
   * Starts the engine's background upkeep, for the one long-running
   * process that maintains the database (the service's primary; not its
   * HTTP workers, not the CLI), and logs what the operator should fix
   * (SQLite: the WAL checkpointer; database files other local users can
   * read). Stop it before close().
   */
  maintain(log: Logger): StorageMaintenance;
  close(): Promise<void>;
}

/** A storage engine's running background upkeep (Storage.maintain). */
export interface StorageMaintenance {
  /** Idempotent. */
  stop(): Promise<void>;
}
