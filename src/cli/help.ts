import { AGENT_HELP } from '../agent/help.ts';

/**
 * `jit COMMAND --help` for every command: what it does, its options, exit
 * codes and environment. docs/cli.md is the long form of the same.
 */

const OPERATOR_ENV = `Environment
  The service's own variables: JIT_DB (default ./data/jit.db) or
  JIT_DATABASE_URL (PostgreSQL), JIT_POLICIES (default ./policies), and the
  rest of the configuration (see docs/cli.md).
  Run it on the broker host, as the broker's user, with the same environment.`;

const OPERATOR_EXIT = `Exit codes
  0 done; 1 failed (the reason on stderr); 2 wrong use or bad configuration.`;

export const COMMAND_HELP: Record<string, string> = {
  serve: `Usage: jit serve

Runs the broker (this is what "npm start" runs) until SIGINT or SIGTERM.
SIGHUP reloads the policy files (a bad file keeps the old policy and logs why).
Without VAULT_ADDR it runs in dev mode: an in-memory development Vault on
127.0.0.1:JIT_DEV_VAULT_PORT (8200), and agent "dev" is created on first start.

Environment
  All of the configuration: JIT_HOST, JIT_PORT, JIT_PUBLIC_URL, JIT_DB or
  JIT_DATABASE_URL (PostgreSQL, with JIT_KEY_ENCRYPTION_KEY or
  JIT_KEY_ENCRYPTION_KEY_FILE, and JIT_KEY_ENCRYPTION_KEY_PREVIOUS while
  replacing it), JIT_POLICIES, JIT_APPROVAL_TIMEOUT, JIT_CLAIM_WINDOW,
  JIT_TIER3_QUORUM, JIT_PASSKEY_TIER, JIT_CONSOLE_IDLE_TIMEOUT,
  JIT_CONSOLE_SESSION_MAX, JIT_RATE_PER_MINUTE, JIT_MAX_PENDING, JIT_MAX_STREAMS,
  JIT_NODE_LEASE, JIT_SHARE_GRANT_POLICIES, JIT_DEV_VAULT_PORT, VAULT_ADDR,
  VAULT_ROLE_ID + VAULT_SECRET_ID (VAULT_APPROLE_MOUNT) or VAULT_TOKEN,
  TELEGRAM_*, OPENCLAW_HOOKS_URL, OPENCLAW_HOOKS_TOKEN, JIT_SIGNING_KEY,
  LOG_LEVEL (see docs/cli.md).

Exit codes
  0 stopped by a signal; 1 could not start (e.g. invalid policy files);
  2 bad configuration (one line naming the variable), including a
  JIT_DATABASE_URL that cannot be opened.`,

  'dev-vault': `Usage: jit dev-vault [--port 8200] [--root-token root]

Runs the development Vault in the foreground: in memory, loopback only,
DEVELOPMENT ONLY (like "vault server -dev"). Stop it with Ctrl-C.

Options
  --port N           port on 127.0.0.1 (default 8200; 0 picks a free one)
  --root-token T     the root token (default "root")

Exit codes
  0 stopped; 1 could not listen (port in use); 2 wrong use.`,

  approver: `Usage: jit approver add NAME [--telegram-id ID]
       jit approver list
       jit approver remove NAME

Approvers are the people who may approve (SPEC section 12). One person has
one vote per request whichever channel they use: a Telegram user id
registered with an approver votes as that approver. TELEGRAM_APPROVERS
stays a separate, Telegram-only list.

  add      registers an approver and prints their enrolment link,
           JIT_PUBLIC_URL/console/enrol/TOKEN, as the last line of stdout:
           single use, valid 15 minutes, shown only this once (only its hash
           is stored). The link is where the approver registers a passkey in
           the operator console, which is not part of this version yet (a
           note on stderr says so). With --telegram-id the person may approve
           in Telegram at once, even if TELEGRAM_APPROVERS does not list them.
  list     lists approvers: name, Telegram id, passkeys, console sessions,
           created at (never a token)
  remove   removes an approver: in one transaction their console sessions
           end, their passkeys and enrolment links are deleted, and their
           Telegram id can no longer approve (unless TELEGRAM_APPROVERS lists
           it). Their past votes stay in the audit log.

Options
  --telegram-id ID   (add) the person's numeric Telegram user id (the bot's
                     /whoami shows it)

Names are 1-63 characters of a-z, 0-9, ".", "_" or "-". A name or Telegram id
already registered to another approver is refused (exit 1); so is removing a
name no approver has.

${OPERATOR_ENV}

${OPERATOR_EXIT}`,

  agent: `Usage: jit agent add NAME [--session KEY]
       jit agent list
       jit agent remove NAME

  add      registers an agent and prints its bearer token. The token is the
           last line of stdout and is shown only this once.
  list     lists agents: name, session key, created at (never tokens)
  remove   removes an agent; its token stops working at once, its live
           credentials are revoked and its pending and approved requests
           ended (each audited as local-cli, each with its webhook); prints
           what it ended

Options
  --session KEY   (add) the session key its decision webhooks go to when a
                  request names none (default: the policy's default_session)

${OPERATOR_ENV}

${OPERATOR_EXIT}`,

  requests: `Usage: jit requests [--status S] [--agent NAME] [--limit N] [--json]
       jit requests show ID [--json]
       jit requests revoke ID [--reason TEXT]
       jit requests revoke --all [--agent NAME] [--reason TEXT]

  (list)   requests, newest first: ID, STATUS, AGENT, TIER (asked->required),
           CREATED, TTL, REASON (shortened, inert) and SCOPE (what is granted;
           "(narrowed)" when an approver granted less than asked)
  show     the whole request as an approver sees it: agent, session, tiers,
           reason, every asked pair, the granted scope and TTL, votes,
           decision, credential (accessor or jti, expiry), webhook deliveries
  revoke   ends a live credential (Vault token revoked and its policy
           deleted, or gate credential revoked) or a pending or approved
           request, as approver "local-cli", audited, with its webhook.
           --all is the kill switch: every live credential and every pending
           and approved request (of one agent with --agent).
           Without VAULT_ADDR (dev mode) the running service revokes the
           token in its development Vault at its next sweep (about 5 s).

Options
  --status S      (list) only this status: pending, approved, issued, denied,
                  timed_out, expired, revoked, failed
  --agent NAME    (list, revoke --all) only this agent's requests
  --limit N       (list) at most N rows (default 50, 1-10000)
  --json          (list, show) JSON: one document per line for the list, one
                  document for show; never a secret
  --reason TEXT   (revoke) why (1-2000 characters); recorded and sent to the agent
  --all           (revoke) every open request instead of one ID

${OPERATOR_ENV}

Exit codes
  0 done (revoking an already revoked request is not an error); 1 not found,
  nothing to revoke, or Vault failed (the revocation is recorded and the
  service retries); 2 wrong use or bad configuration.`,

  credentials: `Usage: jit credentials [--agent NAME] [--json]

Lists the credentials that still work, soonest expiry first: request, agent,
type, state (live, or revoking while the service finishes the Vault side),
accessor or jti, expiry and granted scope. Never a secret: the broker keeps
none.

Options
  --agent NAME   only this agent's credentials
  --json         one JSON document per line

${OPERATOR_ENV}

${OPERATOR_EXIT}`,

  deny: `Usage: jit deny ID [--reason TEXT]

Denies a pending request as approver "local-cli" (for hosts without
Telegram). The agent gets a decision webhook.

Options
  --reason TEXT   why (1-2000 characters); recorded and sent to the agent

${OPERATOR_ENV}

Exit codes
  0 denied; 1 not pending any more (already decided, timed out) or not found;
  2 wrong use or bad configuration.`,

  audit: `Usage: jit audit verify
       jit audit export [--output FILE] [--since SEQ]

  verify   checks the audit log's hash chain, printing progress every
           100,000 entries on stderr. Exit 0 intact; 1 tampered, naming the
           first bad entry.
  export   writes the audit log as JSON Lines (one entry a line) to stdout or
           FILE (created mode 0600), with progress every 100,000 entries.

Options
  --output FILE, -o FILE   (export) write here instead of stdout
  --since SEQ              (export) only entries after sequence number SEQ

${OPERATOR_ENV}

${OPERATOR_EXIT}`,

  policy: `Usage: jit policy check [DIR]

Validates the policy files in DIR (default $JIT_POLICIES, else ./policies)
as the broker would load them. Prints a summary, or every problem with its
file, rule and field. Warnings do not fail the check.

Exit codes
  0 valid; 1 invalid (the problems on stderr); 2 wrong use.`,

  gate: `Usage: jit gate verify --credential C|- --repo R --ref REF

For a git pre-receive hook: may credential C push REF to repository R now?
Asks the broker (POST /gate/verify: signature, the stored grant, expiry,
revocation). When the broker cannot be asked it refuses (fails closed),
unless JIT_GATE_OFFLINE_WINDOW is set: then it verifies against a JWKS
cached from the broker at most that long ago and warns that revocation and
the stored grant could not be checked.

Options
  --credential C   the gate credential (a JWT) the agent presented; "-" reads
                   it from stdin (keeps it off the command line)
  --repo R         the repository being pushed to, e.g. homelab/app
  --ref REF        the ref being updated, e.g. refs/heads/agent/fix-12
                   (repo and ref: printable ASCII without spaces)

Environment
  JIT_URL                  the broker (default http://127.0.0.1:8787)
  JIT_GATE_OFFLINE_WINDOW  unset or 0: no offline verification (default);
                           a duration up to 1d (e.g. 15m): how old a cached
                           JWKS may be when the broker is unreachable
  JIT_JWKS_CACHE           the JWKS cache file, written only with an offline
                           window (default ~/.cache/jit-broker/jwks.json);
                           refused if others can write it

Exit codes
  0 valid (stdout: agent, request, expiry); 1 invalid or broker unreachable
  (the reason on stderr); 2 wrong use or a bad setting.`,

  webhooks: `Usage: jit webhooks list [--dead] [--limit N]
       jit webhooks retry ID
       jit webhooks retry --all-dead

The decision webhook outbox.

  list     events, newest first: id, state, type, request, target, attempts,
           last status, when, URL (credentials redacted), last error
  retry    re-queues a dead event (or, with --all-dead, every dead event):
           pending, attempts reset, due now; the running service sends it
           within a second or so. Fix the cause first (see LAST_ERROR).

Options
  --dead       (list) only dead events
  --limit N    (list) at most N rows (default 50, 1-10000)
  --all-dead   (retry) every dead event; progress on stderr for large batches

${OPERATOR_ENV}

Exit codes
  0 done; 1 an event was not found or could not be re-queued (the others
  were); 2 wrong use or bad configuration.`,

  keys: `Usage: jit keys list
       jit keys rotate
       jit keys revoke KID

The Ed25519 signing keys (gate credentials, decision webhook signatures).

  list     key ids, status (current/previous/revoked), source, age, and when a
           previous key leaves the JWKS. Never prints a private key.
  rotate   makes a new current key; the old one stays in the JWKS for 7 days.
           A running service uses the new key within about a second. Refused
           when the key comes from JIT_SIGNING_KEY (change that and restart).
  revoke   for a compromised key: removes KID from the JWKS at once (a running
           service within about a second), so gate credentials and webhooks
           it signed stop verifying. Revoking the current key first makes a
           new key current (refused when it comes from JIT_SIGNING_KEY: set a
           new one, restart, then revoke). The key stays listed as revoked and
           is never used or published again.

${OPERATOR_ENV}
  The key file is signing-keys.json next to JIT_DB. With JIT_DATABASE_URL the
  keys are in the database, sealed: rotate and revoke need
  JIT_KEY_ENCRYPTION_KEY (or JIT_KEY_ENCRYPTION_KEY_FILE), and every broker
  follows within about a second.

${OPERATOR_EXIT}`,

  db: `Usage: jit db copy --to postgres://USER@HOST:PORT/DB   (password in PGPASSWORD)

Moves an install from SQLite to PostgreSQL: copies the SQLite database at
JIT_DB into an EMPTY PostgreSQL database, then verifies it there.

  1. Stop every broker on JIT_DB (refused while the one that last started
     on it is still running; refused too if the source changes during the
     copy, which is read in one consistent snapshot).
  2. The target is created by the PostgreSQL engine's own migrations; any
     row in any table (other than what the migrations make) refuses it.
  3. Every table is copied in dependency order, in batches, in ONE target
     transaction (nothing is left behind by a failure); sequences are set
     past the copied values; the installation id is kept, so the Vault
     policies the install made stay its own.
  4. Verified on the target: row counts per table, and the audit chain
     (as "jit audit verify", signed heads checked with the key ring).
One line per table, then the verification. The URL is never shown with its
user, password or query. Signing keys are not copied yet (a note says where
the key ring is; see docs/operations.md, "Moving to PostgreSQL").

Environment
  JIT_DB names the source; JIT_DATABASE_URL must be unset (with it set, this
  environment's broker reads PostgreSQL, not JIT_DB). JIT_KEY_ENCRYPTION_KEY
  (or JIT_KEY_ENCRYPTION_KEY_FILE) is required: the key file beside JIT_DB is
  sealed into the target's key ring under it. JIT_SIGNING_KEY, if the service
  uses it, for checking signed audit heads.

Exit codes
  0 copied and verified; 1 refused (target not empty, a broker running, the
  source changed, an unknown table) or not verified; 2 wrong use, source
  missing, or target unreachable (one line).`,
  // The agent side's (status, claim, revoke, mcp): shared with the agent package's jit-agent.
  ...AGENT_HELP,
};
