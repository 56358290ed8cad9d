import { z } from 'zod';
import { parseDurationSeconds } from '../lib/duration.ts';
import { isPrintableAsciiWord } from '../lib/inert-text.ts';
import { FORBIDDEN_CAPABILITIES, GRANTABLE_CAPABILITIES } from './capabilities.ts';
import { ERROR_CODES, problemType, type ErrorCode } from './error-codes.ts';

const KNOWN_CAPABILITIES: readonly string[] = [...GRANTABLE_CAPABILITIES, ...FORBIDDEN_CAPABILITIES];

/**
 * The wire contract of the HTTP API: request bodies, responses and the
 * problem+json shape, in zod only (no Hono), shared by the routes
 * (src/http/routes/, which declare them with @hono/zod-openapi), the
 * generated GET /openapi.json, the broker's verbs (their return types) and
 * the agent-side client (src/client/).
 *
 * `.meta({description})` annotations only document the schemas in
 * GET /openapi.json; they do not change validation. `.meta({id})` makes a
 * schema a named component of the document (`#/components/schemas/<id>`).
 */

/** Seconds, or "90s" | "15m" | "1h" | "1d". */
export const Ttl = z
  .union([z.number(), z.string()])
  .transform((v, ctx) => {
    const s = parseDurationSeconds(v);
    if (s === undefined) {
      ctx.addIssue({ code: 'custom', message: 'ttl must be a positive whole number of seconds or a duration like "90s", "15m", "1h"' });
      return z.NEVER;
    }
    return s;
  })
  .meta({
    // Documented as written (seconds or "15m"), not as the parsed number.
    type: ['number', 'string'],
    description:
      'Credential lifetime: a positive whole number of seconds (900) or a duration ("90s", "15m", "1h", "1d"). Policy clamps it to the smallest max_ttl of the rules used; omitted = that maximum.',
  });

const Tier = z.union([z.literal(1), z.literal(2), z.literal(3)], { error: 'tier must be 1, 2 or 3' });
/** 1 issued at once, 2 one approver, 3 a quorum of approvers. */
export type Tier = z.infer<typeof Tier>;
const TierAsked = Tier.meta({
  description: 'Tier asked for: 1 issued at once if policy allows, 2 one approver, 3 a quorum of approvers. Policy may raise it, never lower it.',
});
const Reason = z
  .string()
  .trim()
  .min(1, 'reason is required')
  .max(2000)
  .meta({
    description:
      'Why the agent needs it; shown to the approver. Any text, newlines included; control, bidi and invisible characters are shown as visible escapes (\\u{202E}), apart from the request\'s own fields.',
  });

/**
 * Limits of what one request may ask for (SPEC §11). The approval message
 * shows every pair in full, never "… and N more", and must fit Telegram's
 * 4096 characters: 32 paths (or refs) of 1280 characters together, with
 * their capabilities, leave room for the fixed fields and the reason in
 * the worst case (src/telegram/render.ts; test/unit/telegram/render.test.ts
 * renders that worst case). More is refused at submission, not cut.
 */
export const REQUEST_LIMITS = { items: 32, itemsCharacters: 1280 } as const;

/** The alphabet of session keys, refs and Idempotency-Keys (isPrintableAsciiWord), for the OpenAPI document. */
const PRINTABLE_ASCII_WORD = { pattern: '^[\\x21-\\x7e]+$' };

/**
 * Security: a session key is shown to the approver beside the request's
 * own fields; a newline, bidi override or invisible character in it could
 * forge or hide them. It is printable ASCII without spaces, or a 400.
 */
const SessionKey = z
  .string()
  .min(1)
  .max(200)
  .refine(isPrintableAsciiWord, 'session_key must be printable ASCII without spaces or control characters')
  .meta({
    ...PRINTABLE_ASCII_WORD,
    description: "Session the decision webhook goes to; must match the agent's `sessions` patterns in policy (403 otherwise). Printable ASCII without spaces. Default: the agent's default session.",
  });

/** The items of one request: at most REQUEST_LIMITS.items, of at most REQUEST_LIMITS.itemsCharacters together. */
function limitedList<T extends z.ZodType>(item: T, what: 'paths' | 'refs', length: (v: z.output<T>) => number) {
  return z
    .array(item)
    .min(1, what === 'paths' ? 'vault_paths must name at least one path' : 'refs must name at least one ref')
    .max(REQUEST_LIMITS.items, `a request has at most ${REQUEST_LIMITS.items} ${what}; split it into several requests`)
    .superRefine((items, ctx) => {
      const total = items.reduce((n, v) => n + length(v), 0);
      if (total > REQUEST_LIMITS.itemsCharacters) {
        ctx.addIssue({
          code: 'custom',
          message: `the ${what} of a request are at most ${REQUEST_LIMITS.itemsCharacters} characters together (these have ${total}), so the approver sees every one; split it into several requests`,
        });
      }
    });
}

// Capabilities outside the known set are a malformed request (400); the
// never-issued ones (sudo, deny, root) pass here so policy can refuse them
// with a 403 that names the pair.
const Capability = z
  .string()
  .refine((c) => KNOWN_CAPABILITIES.includes(c), {
    error: `capability must be one of ${GRANTABLE_CAPABILITIES.join(', ')}`,
  })
  .meta({ enum: [...KNOWN_CAPABILITIES], description: `Vault capability. ${FORBIDDEN_CAPABILITIES.join(', ')} are accepted here but never issued (403 FORBIDDEN_CAPABILITY).` });

export const VaultRequestBody = z
  .strictObject({
    resource: z.literal('vault'),
    tier: TierAsked,
    reason: Reason,
    vault_paths: limitedList(
        z.strictObject({
          path: z.string().min(1).max(512).meta({ description: 'Exact Vault ACL path, e.g. homelab/data/docker/registry: no leading /, no .., no empty segments, no * or +.' }),
          capabilities: z
            .array(Capability)
            .min(1)
            .max(KNOWN_CAPABILITIES.length)
            .refine((caps) => new Set(caps).size === caps.length, 'a capability is named twice'),
        }),
        'paths',
        (p) => p.path.length,
      )
      .meta({ description: `At most ${REQUEST_LIMITS.items} paths, of at most ${REQUEST_LIMITS.itemsCharacters} characters together (400 otherwise).` }),
    ttl: Ttl.optional(),
    session_key: SessionKey.optional(),
  })
  .meta({ id: 'VaultRequestBody', description: 'A Vault token for exactly these paths and capabilities.' });

export const GateRequestBody = z
  .strictObject({
    resource: z.literal('gate'),
    tier: TierAsked,
    reason: Reason,
    repo: z.string().min(1).max(256).meta({ description: 'Repository the git gate serves, e.g. homelab/app.' }),
    refs: limitedList(
      z.string().min(1).max(256).refine(isPrintableAsciiWord, 'a ref must be printable ASCII without spaces').meta(PRINTABLE_ASCII_WORD),
      'refs',
      (r) => r.length,
    ).meta({
      description: `Exact refs to push, e.g. refs/heads/agent/fix-12 (no wildcards). At most ${REQUEST_LIMITS.items} refs, of at most ${REQUEST_LIMITS.itemsCharacters} characters together (400 otherwise).`,
    }),
    ttl: Ttl.optional(),
    session_key: SessionKey.optional(),
  })
  .meta({ id: 'GateRequestBody', description: 'A git gate push credential (EdDSA JWT) for these refs of this repository.' });

export const CredentialRequestBody = z
  .discriminatedUnion('resource', [VaultRequestBody, GateRequestBody], {
    error: (issue) => (issue.code === 'invalid_union' ? 'resource must be "vault" or "gate"' : undefined),
  })
  .meta({ id: 'CredentialRequestBody', description: 'Body of POST /jit/request. Unknown fields are refused (400).' });
export type CredentialRequestBody = z.infer<typeof CredentialRequestBody>;
export type VaultRequestBody = z.infer<typeof VaultRequestBody>;

export const IdempotencyKey = z
  .string()
  .min(1)
  .max(200)
  .refine(isPrintableAsciiWord, 'Idempotency-Key must be printable ASCII without spaces')
  .meta({ ...PRINTABLE_ASCII_WORD, description: 'The same key from the same agent returns the first answer and creates nothing new; reused with another body: 409.' });

/** One line per zod issue: `vault_paths[0].capabilities[1]: capability must be …`. */
export function describeZodError(error: z.ZodError): string {
  return error.issues
    .slice(0, 5)
    .map((i) => {
      const path = i.path.reduce<string>((acc, p) => (typeof p === 'number' ? `${acc}[${p}]` : acc ? `${acc}.${String(p)}` : String(p)), '');
      const msg = i.code === 'unrecognized_keys' ? `unknown field(s): ${i.keys.join(', ')}` : i.message;
      return path ? `${path}: ${msg}` : msg;
    })
    .join('; ');
}

export const GateVerifyBody = z
  .strictObject({
    credential: z.string().min(1).max(8192).meta({ description: 'The compact JWT from a gate_push credential.' }),
    repo: z.string().min(1).max(256).refine(isPrintableAsciiWord, 'must be printable ASCII without spaces'),
    ref: z.string().min(1).max(256).refine(isPrintableAsciiWord, 'must be printable ASCII without spaces'),
  })
  .meta({ id: 'GateVerifyBody', description: 'May this credential push this ref to this repository now?' });
export type GateVerifyBody = z.infer<typeof GateVerifyBody>;

// ---- Responses -------------------------------------------------------------
// The shapes the broker answers with. The verbs return these types
// (request-credential.ts, claim.ts, view.ts, revoke.ts, gate-credential.ts)
// and each route declares them as its responses, so the compiler checks
// that a route answers what its contract says; test/integration/openapi
// also checks real answers against the generated document.

const Timestamp = z.iso.datetime().meta({ description: 'ISO 8601 time in UTC' });
export const RequestId = z.string().regex(/^req_[0-9a-z]{26}$/).meta({ description: 'Request id, req_ + 26 characters' });
const Resource = z.enum(['vault', 'gate']);

export const RequestStatus = z
  .enum(['pending', 'approved', 'issued', 'denied', 'timed_out', 'expired', 'revoked', 'failed'])
  .meta({
    description:
      'pending: awaiting approval; approved: awaiting claim; issued: credential minted; denied; timed_out: nobody decided in time; expired: the credential ran out or the claim window passed; revoked; failed: issuing failed.',
  });
export type RequestStatus = z.infer<typeof RequestStatus>;

/** The statuses a request never leaves (no move out of them): a decision stream closes after one. */
export const FINAL_STATUSES: readonly RequestStatus[] = ['denied', 'timed_out', 'expired', 'revoked', 'failed'];

export const VaultTokenCredential = z
  .object({
    type: z.literal('vault_token'),
    token: z.string().meta({ description: 'The Vault token (secret; returned this once, never stored)' }),
    accessor: z.string(),
    policies: z.array(z.string()).meta({ description: '"default" and the ephemeral policy granting exactly the approved paths' }),
    expires_at: Timestamp,
  })
  .meta({ description: 'An orphan, non-renewable Vault token' });
export type VaultTokenCredential = z.infer<typeof VaultTokenCredential>;

export const GatePushCredential = z
  .object({
    type: z.literal('gate_push'),
    credential: z.string().meta({ description: 'Compact JWT (EdDSA, kid header), verifiable against /.well-known/jwks.json (secret; returned this once)' }),
    jti: z.string(),
    repo: z.string(),
    refs: z.array(z.string()),
    expires_at: Timestamp,
  })
  .meta({ description: 'A git gate push credential' });
export type GatePushCredential = z.infer<typeof GatePushCredential>;

export const IssuedCredential = z.discriminatedUnion('type', [VaultTokenCredential, GatePushCredential]);
export type IssuedCredential = z.infer<typeof IssuedCredential>;

/** 201 of POST /jit/request (tier 1, issued at once) and of POST /jit/requests/{id}/claim. */
export const IssuedResponse = z
  .object({
    id: RequestId,
    status: z.literal('issued'),
    tier: Tier,
    required_tier: Tier,
    resource: Resource,
    expires_at: Timestamp,
    credential: IssuedCredential,
  })
  .meta({ id: 'IssuedResponse', description: 'The credential, issued. It holds the secret and is returned only this once.' });
export type IssuedResponse = z.infer<typeof IssuedResponse>;

/** 202 of POST /jit/request: waiting for approval. */
export const PendingResponse = z
  .object({
    id: RequestId,
    status: z.literal('pending'),
    tier: Tier,
    required_tier: Tier.meta({ description: 'The tier policy requires (never lower than asked); this is the tier the approvers see.' }),
    approval_expires_at: Timestamp,
  })
  .meta({ id: 'PendingResponse', description: 'Held for approval; the decision arrives as a webhook, then claim.' });
export type PendingResponse = z.infer<typeof PendingResponse>;

/** One Vault path and its capabilities, as the broker shows a scope (requests, grants, decision events). */
export const PathCapabilities = z.object({ path: z.string(), capabilities: z.array(z.string()) });

/** What an approval granted (`{vault_paths | repo, refs, ttl_seconds}`): the request's scope, or less when narrowed. */
const RequestGrant = z.object({
  vault_paths: z.array(PathCapabilities).optional(),
  repo: z.string().optional(),
  refs: z.array(z.string()).optional(),
  ttl_seconds: z.number().int(),
});

/** GET /jit/requests/{id}, POST …/revoke, and a replayed Idempotency-Key. Never a secret. */
export const RequestView = z
  .object({
    id: RequestId,
    status: RequestStatus,
    resource: Resource,
    agent: z.string(),
    tier: Tier,
    required_tier: Tier,
    reason: z.string(),
    vault_paths: z.array(PathCapabilities).optional().meta({ description: 'vault requests' }),
    repo: z.string().optional().meta({ description: 'gate requests' }),
    refs: z.array(z.string()).optional().meta({ description: 'gate requests' }),
    ttl_seconds: z.number().int().meta({ description: 'TTL asked for, after policy clamping' }),
    granted: RequestGrant.nullable()
      .meta({ description: 'What the credential is (or will be) minted with; null until approved. Less than asked when an approver narrowed it.' }),
    narrowed: z.boolean().meta({ description: 'true when `granted` is less than the request asked for' }),
    session_key: z.string().nullable(),
    rules: z.array(z.string()).meta({ description: 'Policy rules that cover the request' }),
    created_at: Timestamp,
    approval_expires_at: Timestamp.nullable(),
    claim_expires_at: Timestamp.nullable(),
    decision: z
      .object({
        approver: z.string(),
        decided_at: Timestamp.nullable(),
        reason: z.string().nullable().meta({ description: 'Why: a denial\'s reason, a timeout\'s, a revocation\'s; null when none was given' }),
        granted: RequestGrant.nullable().meta({ description: 'As the top-level `granted`: what was approved, null unless approved' }),
        narrowed: z.boolean().meta({ description: 'As the top-level `narrowed`: true when the approver granted less than asked' }),
      })
      .nullable()
      .meta({ description: 'Who decided, when, why and what was granted: "policy" for tier 1, "local-cli", "telegram:<user id>" (a TELEGRAM_APPROVERS member), "approver:<id>" (a registered approver, whichever channel), "timeout", "agent:<name>" for a revoke; null while undecided' }),
    credential: z
      .object({
        type: z.enum(['vault_token', 'gate_push']),
        accessor: z.string().optional(),
        jti: z.string().optional(),
        state: z.enum(['issuing', 'live', 'revoking', 'ended']),
        issued_at: Timestamp.nullable(),
        expires_at: Timestamp.nullable(),
        ended_at: Timestamp.nullable(),
      })
      .nullable()
      .meta({ description: 'Credential metadata (accessor or jti, expiry); never the secret' }),
    failure: z.string().optional(),
  })
  .meta({ id: 'RequestView', description: 'A request as its agent may see it. Never contains a secret.' });
export type RequestView = z.infer<typeof RequestView>;

export const GateVerifyResponse = z
  .discriminatedUnion('valid', [
    z.object({ valid: z.literal(true), agent: z.string(), request_id: RequestId, expires_at: Timestamp, jti: z.string() }),
    z.object({ valid: z.literal(false), reason: z.string() }),
  ])
  .meta({ id: 'GateVerifyResponse', description: 'Verdict of POST /gate/verify: signature, issuer, expiry, repo/ref globs and revocation.' });
export type GateVerifyResponse = z.infer<typeof GateVerifyResponse>;

export const HealthResponse = z
  .object({
    status: z.enum(['ok', 'degraded']),
    db: z.enum(['ok', 'error']),
    vault: z.enum(['ok', 'sealed', 'unreachable']),
    telegram: z.enum(['disabled', 'starting', 'ok', 'degraded']),
    outbox_pending: z.number().int().nullable().meta({ description: 'Decision webhooks not yet delivered (pending or being sent)' }),
  })
  .meta({ id: 'HealthResponse', description: 'Health; HTTP 503 with status "degraded" when the database or Vault is down.' });
export type HealthResponse = z.infer<typeof HealthResponse>;

export const Jwks = z
  .object({
    keys: z.array(
      z.object({ kty: z.literal('OKP'), crv: z.literal('Ed25519'), x: z.string(), kid: z.string(), use: z.literal('sig'), alg: z.literal('EdDSA') }),
    ),
  })
  .meta({ id: 'Jwks', description: 'Current and previous Ed25519 public keys (RFC 8037 OKP JWKs): gate credentials and decision webhook signatures.' });
export type Jwks = z.infer<typeof Jwks>;

const ERROR_CODE_NAMES = Object.keys(ERROR_CODES) as [ErrorCode, ...ErrorCode[]];

/** application/problem+json (RFC 9457), every error the broker answers with. */
export const Problem = z
  .looseObject({
    type: z.enum(ERROR_CODE_NAMES.map(problemType) as [string, ...string[]]).meta({ description: 'urn:jit-broker:problem:<code in kebab case>' }),
    title: z.string(),
    status: z.number().int(),
    detail: z.string().meta({ description: 'What went wrong, for a person; never a secret or a stack trace' }),
    code: z.enum(ERROR_CODE_NAMES).meta({
      description: 'Stable machine-readable code',
      // Every code of the registry, with its status, title and problem type.
      oneOf: ERROR_CODE_NAMES.map((c) => ({ const: c, title: ERROR_CODES[c].title, description: `HTTP ${ERROR_CODES[c].status}; type ${problemType(c)}` })),
    }),
    request_id: z.string().optional().meta({ description: 'Same as the X-Request-Id header; the operator finds the log line by it' }),
    pair: z.string().optional().meta({ description: 'Policy refusals (400 INVALID_PATH, 403): the refused pair, "path:capability" or "repo:ref"' }),
  })
  .meta({ id: 'Problem', description: 'An error (RFC 9457 problem details).' });
export type Problem = z.infer<typeof Problem>;

/** POST /telegram/webhook: a Telegram Update; the bot handles it (grammY), only update_id is checked here. */
export const TelegramUpdate = z
  .looseObject({ update_id: z.number().int() })
  .meta({ id: 'TelegramUpdate', description: 'A Telegram Bot API Update object (https://core.telegram.org/bots/api#update).' });
