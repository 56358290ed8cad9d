import { z } from 'zod';
import { ERROR_CODES, type ErrorCode } from '../broker/errors.ts';
import {
  CredentialRequestBody,
  GateRequestBody,
  GateVerifyBody,
  GateVerifyResponse,
  HealthResponse,
  IdempotencyKey,
  IssuedResponse,
  Jwks,
  PendingResponse,
  Problem,
  RequestId,
  RequestView,
  TelegramUpdate,
  VaultRequestBody,
} from '../wire/schemas.ts';
import { packageVersion } from '../lib/package-version.ts';
import { problemBody } from './problem.ts';

/**
 * The OpenAPI 3.1 description of the HTTP API, served at `GET /openapi.json`.
 *
 * Every body schema is generated from the zod schemas the routes validate
 * with (request bodies in zod's `input` view, so `ttl: "15m"` is allowed)
 * and the response schemas beside them in src/wire/schemas.ts (`output`
 * view). Problem responses are generated from the ERROR_CODES registry and
 * rendered by the same `problemBody` the server uses. Only the list of
 * operations is written here; test/integration/openapi checks it against
 * the routes the Hono app registers.
 */

type Json = Record<string, unknown>;

/** How long a cache may keep the JWKS: a revoked key leaves HTTP caches within a minute (served by public-routes.ts). */
export const JWKS_CACHE_CONTROL = 'public, max-age=60';

const COMPONENT = (id: string) => `#/components/schemas/${id}`;
const ref = (id: string) => ({ $ref: COMPONENT(id) });

/** Components generated in zod's input view: what clients send. */
const REQUEST_SCHEMAS = { CredentialRequestBody, VaultRequestBody, GateRequestBody, GateVerifyBody, TelegramUpdate };
/** Components generated in zod's output view: what the broker answers. */
const RESPONSE_SCHEMAS = { IssuedResponse, PendingResponse, RequestView, GateVerifyResponse, HealthResponse, Jwks, Problem };
export type SchemaName = keyof typeof REQUEST_SCHEMAS | keyof typeof RESPONSE_SCHEMAS;

/** Which zod schema each component was generated from (tests validate documented examples with them). */
export const COMPONENT_SCHEMAS: Record<SchemaName, z.ZodType> = { ...REQUEST_SCHEMAS, ...RESPONSE_SCHEMAS };

function generate(schemas: Record<string, z.ZodType>, io: 'input' | 'output'): Record<string, Json> {
  const registry = z.registry<{ id: string }>();
  for (const [id, schema] of Object.entries(schemas)) registry.add(schema, { id });
  const out = z.toJSONSchema(registry, { io, target: 'draft-2020-12', uri: COMPONENT, unrepresentable: 'throw' }) as { schemas: Record<string, Json> };
  return Object.fromEntries(Object.entries(out.schemas).map(([id, s]) => [id, tidy(s, true) as Json]));
}

/** Drops what only adds noise to the document: `$schema`/`$id` per component, zod's ISO pattern under `format: date-time`, safe-integer bounds. */
function tidy(value: unknown, top = false): unknown {
  if (Array.isArray(value)) return value.map((v) => tidy(v));
  if (value === null || typeof value !== 'object') return value;
  const out: Json = {};
  for (const [k, v] of Object.entries(value)) {
    if (top && (k === '$schema' || k === '$id')) continue;
    if (k === 'pattern' && (value as Json).format === 'date-time') continue;
    if ((k === 'minimum' || k === 'maximum') && Math.abs(v as number) === Number.MAX_SAFE_INTEGER) continue;
    out[k] = tidy(v);
  }
  return out;
}

function inputSchema(schema: z.ZodType): Json {
  return tidy(z.toJSONSchema(schema, { io: 'input', target: 'draft-2020-12' }), true) as Json;
}

/** A realistic `detail` for every code, so the examples read like real answers. `Record<ErrorCode, …>` keeps it complete. */
const EXAMPLE_DETAIL: Record<ErrorCode, string> = {
  BAD_REQUEST: 'vault_paths[0].capabilities[0]: capability must be one of create, read, update, patch, delete, list',
  UNAUTHORIZED: 'send the agent token as Authorization: Bearer <token>',
  FORBIDDEN: 'not allowed',
  DENIED_BY_POLICY: '"homelab/data/vault/unseal" is denied by policy (deny pattern "homelab/data/vault/*")',
  NOT_COVERED: 'no rule allows "update" on "homelab/data/apps/web" for agent "dev"',
  FORBIDDEN_CAPABILITY: 'capability "sudo" is never issued (requested for "homelab/data/docker/registry")',
  INVALID_PATH: 'invalid path "homelab/data/../sys": path must not contain ".."',
  SESSION_NOT_ALLOWED: 'session_key "hook:jit:other" does not match the sessions policy allows agent "dev"',
  NOT_FOUND: 'request req_01jd4x9q3m5k7n2p4r6t8v0w2y not found',
  METHOD_NOT_ALLOWED: 'method not allowed',
  CONFLICT: 'the credential of request req_01jd4x9q3m5k7n2p4r6t8v0w2y was already claimed',
  IDEMPOTENCY_KEY_REUSED: 'Idempotency-Key "deploy-42" was already used for a different request (req_01jd4x9q3m5k7n2p4r6t8v0w2y)',
  GONE: 'the claim window of request req_01jd4x9q3m5k7n2p4r6t8v0w2y has passed',
  PAYLOAD_TOO_LARGE: 'request bodies are limited to 65536 bytes',
  UNSUPPORTED_MEDIA_TYPE: 'send the body as JSON with Content-Type: application/json (got "text/plain")',
  RATE_LIMITED: 'agent "dev" made 60 requests in the last minute (limit 60)',
  TOO_MANY_PENDING: 'agent "dev" already has 20 requests awaiting approval',
  INTERNAL: 'internal error; the operator can find it in the broker log by X-Request-Id',
  NOT_IMPLEMENTED: 'not implemented',
  VAULT_UNAVAILABLE: 'Vault is unavailable (unreachable); could not create the token. Nothing was issued; retry later.',
  UNAVAILABLE: 'the Telegram bot is not running yet',
};

/** Policy refusals name the refused pair (`path:capability` or `repo:ref`). */
const EXAMPLE_PAIR: Partial<Record<ErrorCode, string>> = {
  DENIED_BY_POLICY: 'homelab/data/vault/unseal:read',
  NOT_COVERED: 'homelab/data/apps/web:update',
  FORBIDDEN_CAPABILITY: 'homelab/data/docker/registry:sudo',
  INVALID_PATH: 'homelab/data/../sys:read',
};

const RETRY_AFTER_CODES: readonly ErrorCode[] = ['RATE_LIMITED', 'TOO_MANY_PENDING', 'VAULT_UNAVAILABLE', 'UNAVAILABLE'];
const ALL_CODES = Object.keys(ERROR_CODES) as ErrorCode[];

/** The problem type URI of a code, as the server renders it. */
export const problemType = (code: ErrorCode) => problemBody(code, '').type;

/** One response per HTTP status among `codes`, each listing its codes and an example of each. */
function problemResponses(codes: readonly ErrorCode[]): Record<string, Json> {
  const byStatus = new Map<number, ErrorCode[]>();
  for (const code of codes) {
    const status = ERROR_CODES[code].status;
    byStatus.set(status, [...(byStatus.get(status) ?? []), code]);
  }
  const out: Record<string, Json> = {};
  for (const [status, list] of [...byStatus].sort((a, b) => a[0] - b[0])) {
    const headers: Json = { 'X-Request-Id': { $ref: '#/components/headers/X-Request-Id' } };
    if (list.some((c) => RETRY_AFTER_CODES.includes(c))) headers['Retry-After'] = { $ref: '#/components/headers/Retry-After' };
    if (status === 401) headers['WWW-Authenticate'] = { $ref: '#/components/headers/WWW-Authenticate' };
    out[String(status)] = {
      description: list.map((c) => `${c}: ${ERROR_CODES[c].title}`).join('; '),
      headers,
      content: {
        'application/problem+json': {
          schema: { allOf: [ref('Problem'), { properties: { status: { const: status }, code: { enum: list } } }] },
          examples: Object.fromEntries(
            list.map((c) => [
              c,
              { summary: ERROR_CODES[c].title, value: problemBody(c, EXAMPLE_DETAIL[c], { ...(EXAMPLE_PAIR[c] ? { pair: EXAMPLE_PAIR[c] } : {}), request_id: 'http_5f0c2a9e7d1b3c4a' }) },
            ]),
          ),
        },
      },
    };
  }
  return out;
}

const xRequestId = { 'X-Request-Id': { $ref: '#/components/headers/X-Request-Id' } };
const jsonResponse = (description: string, schema: Json, extra: Json = {}): Json => ({
  description,
  headers: { ...xRequestId, ...((extra.headers as Json | undefined) ?? {}) },
  content: { 'application/json': { schema, ...(extra.examples ? { examples: extra.examples } : {}) } },
});

const BEARER = [{ agentBearer: [] }];
const requestIdParam = { name: 'id', in: 'path', required: true, description: 'The request id from POST /jit/request', schema: { $ref: '#/components/schemas/RequestIdParam' } };

/** Example bodies of POST /jit/request; the test suite parses each with CredentialRequestBody. */
export const REQUEST_EXAMPLES = {
  'vault-tier1': {
    summary: 'Tier 1: read a secret (issued at once if policy allows)',
    value: { resource: 'vault', tier: 1, reason: 'read the registry login for a deploy', vault_paths: [{ path: 'homelab/data/docker/registry', capabilities: ['read'] }] },
  },
  'vault-tier2': {
    summary: 'Tier 2: write, held for approval',
    value: {
      resource: 'vault',
      tier: 2,
      reason: 'rotate the registry password',
      vault_paths: [{ path: 'homelab/data/docker/registry', capabilities: ['read', 'update'] }],
      ttl: '15m',
    },
  },
  gate: {
    summary: 'Git gate push credential',
    value: { resource: 'gate', tier: 2, reason: 'push the fix for issue 12', repo: 'homelab/app', refs: ['refs/heads/agent/fix-12'], ttl: '30m' },
  },
} as const;

export interface OpenApiOptions {
  /** The broker's public base URL (`JIT_PUBLIC_URL`), listed as the server. */
  serverUrl?: string | undefined;
  /** Request body limit, for the 413 description. */
  maxBodyBytes?: number;
}

/** Builds the OpenAPI 3.1 document. Pure: the route builds it once and serves it. */
export function createOpenApiDocument(opts: OpenApiOptions = {}): Json {
  const maxBody = opts.maxBodyBytes ?? 64 * 1024;
  const schemas: Record<string, Json> = {
    ...generate(REQUEST_SCHEMAS, 'input'),
    ...generate(RESPONSE_SCHEMAS, 'output'),
    RequestIdParam: tidy(z.toJSONSchema(RequestId), true) as Json,
  };
  // OpenAPI's discriminator helps generated clients pick the branch.
  schemas.CredentialRequestBody = {
    ...schemas.CredentialRequestBody,
    discriminator: { propertyName: 'resource', mapping: { vault: COMPONENT('VaultRequestBody'), gate: COMPONENT('GateRequestBody') } },
  };
  // Every code of the registry, with its status, title and problem type.
  const problem = schemas.Problem as { properties: Record<string, Json> };
  problem.properties.code = {
    description: problem.properties.code?.description,
    oneOf: ALL_CODES.map((c) => ({ const: c, title: ERROR_CODES[c].title, description: `HTTP ${ERROR_CODES[c].status}; type ${problemType(c)}` })),
  };
  problem.properties.type = { ...problem.properties.type, enum: ALL_CODES.map(problemType) };

  const bodyErrors: ErrorCode[] = ['BAD_REQUEST', 'PAYLOAD_TOO_LARGE', 'UNSUPPORTED_MEDIA_TYPE', 'INTERNAL'];
  const agentErrors: ErrorCode[] = ['UNAUTHORIZED', 'NOT_FOUND', 'INTERNAL'];

  const paths: Record<string, Json> = {
    '/jit/request': {
      post: {
        operationId: 'requestCredential',
        tags: ['agent'],
        summary: 'Ask for a credential',
        description:
          'Checks the request against policy. Tier 1 that policy allows at tier 1: issued at once (201). Otherwise held for approval (202, `required_tier` says the tier policy requires); the decision arrives as a signed webhook, then claim. A repeated `Idempotency-Key` returns the first answer: 202 while pending, else 200 with the request as it stands (`Idempotent-Replayed: true`, never the secret).',
        security: BEARER,
        parameters: [{ name: 'Idempotency-Key', in: 'header', required: false, schema: inputSchema(IdempotencyKey) }],
        requestBody: { required: true, content: { 'application/json': { schema: ref('CredentialRequestBody'), examples: REQUEST_EXAMPLES } } },
        responses: {
          '200': jsonResponse('Idempotency-Key replay of a request that is no longer pending: its current state, without the secret', ref('RequestView'), {
            headers: { 'Idempotent-Replayed': { $ref: '#/components/headers/Idempotent-Replayed' } },
          }),
          '201': jsonResponse('Issued at once (tier 1). The secret is in `credential` and is shown only this once.', ref('IssuedResponse')),
          '202': jsonResponse('Pending approval (tier 2 or 3)', ref('PendingResponse')),
          ...problemResponses([
            ...bodyErrors,
            'INVALID_PATH',
            'UNAUTHORIZED',
            'DENIED_BY_POLICY',
            'NOT_COVERED',
            'FORBIDDEN_CAPABILITY',
            'SESSION_NOT_ALLOWED',
            'IDEMPOTENCY_KEY_REUSED',
            'RATE_LIMITED',
            'TOO_MANY_PENDING',
            'VAULT_UNAVAILABLE',
          ]),
        },
      },
    },
    '/jit/requests/{id}': {
      get: {
        operationId: 'getRequest',
        tags: ['agent'],
        summary: "The agent's own request",
        description: "Status, tiers, scope, decision (approver, time, reason) and credential metadata (accessor or jti, expiry); never the secret. Another agent's request is 404.",
        security: BEARER,
        parameters: [requestIdParam],
        responses: { '200': jsonResponse('The request', ref('RequestView')), ...problemResponses(agentErrors) },
      },
    },
    '/jit/requests/{id}/claim': {
      post: {
        operationId: 'claimCredential',
        tags: ['agent'],
        summary: 'Claim an approved credential, once',
        description: 'Mints the credential of an approved request and returns it once. Already claimed: 409. After JIT_CLAIM_WINDOW: 410. Vault down: 503 and the request stays approved, so retry within the window.',
        security: BEARER,
        parameters: [requestIdParam],
        responses: {
          '201': jsonResponse('The credential, shown only this once', ref('IssuedResponse')),
          ...problemResponses([...agentErrors, 'CONFLICT', 'GONE', 'VAULT_UNAVAILABLE']),
        },
      },
    },
    '/jit/requests/{id}/revoke': {
      post: {
        operationId: 'revokeRequest',
        tags: ['agent'],
        summary: 'End the credential now',
        description:
          'A live Vault token is revoked and its ephemeral policy deleted; a gate credential is revoked; a pending or approved request is cancelled. Revoking a revoked request is not an error. If Vault is down the revocation is recorded (503) and finished by the broker later.',
        security: BEARER,
        parameters: [requestIdParam],
        responses: { '200': jsonResponse('The request, now revoked', ref('RequestView')), ...problemResponses([...agentErrors, 'CONFLICT', 'VAULT_UNAVAILABLE']) },
      },
    },
    '/healthz': {
      get: {
        operationId: 'health',
        tags: ['operations'],
        summary: 'Health',
        security: [],
        responses: {
          '200': jsonResponse('Healthy', ref('HealthResponse')),
          '503': jsonResponse('The database or Vault is down (status "degraded")', ref('HealthResponse')),
        },
      },
    },
    '/.well-known/jwks.json': {
      get: {
        operationId: 'jwks',
        tags: ['public'],
        summary: 'Public signing keys',
        description: 'Verifies gate credentials (JWT `kid`) and decision webhook signatures. Previous keys stay listed for 7 days after a rotation.',
        security: [],
        responses: { '200': jsonResponse('The JWKS', ref('Jwks'), { headers: { 'Cache-Control': { schema: { type: 'string' }, example: JWKS_CACHE_CONTROL } } }) },
      },
    },
    '/gate/verify': {
      post: {
        operationId: 'verifyGateCredential',
        tags: ['gate'],
        summary: 'Check a gate push credential',
        description: 'For the git gate: signature, issuer, expiry, repo and ref against the granted globs, and revocation. An invalid credential is a 200 with `valid: false` and the reason.',
        security: [],
        requestBody: { required: true, content: { 'application/json': { schema: ref('GateVerifyBody') } } },
        responses: { '200': jsonResponse('The verdict', ref('GateVerifyResponse')), ...problemResponses(bodyErrors) },
      },
    },
    '/metrics': {
      get: {
        operationId: 'metrics',
        tags: ['operations'],
        summary: 'Prometheus metrics',
        security: [],
        responses: {
          '200': {
            description: 'Prometheus text exposition format',
            headers: xRequestId,
            content: { 'text/plain; version=0.0.4': { schema: { type: 'string' } } },
          },
        },
      },
    },
    '/telegram/webhook': {
      post: {
        operationId: 'telegramWebhook',
        tags: ['telegram'],
        summary: 'Telegram updates (webhook mode)',
        description:
          'Called by Telegram when TELEGRAM_WEBHOOK_SECRET is set (the broker registers the webhook at start). The header X-Telegram-Bot-Api-Secret-Token must equal the secret (401 otherwise). Without Telegram or in polling mode: 404.',
        security: [{ telegramSecretToken: [] }],
        requestBody: { required: true, content: { 'application/json': { schema: ref('TelegramUpdate') } } },
        responses: {
          '200': { description: 'Accepted (also for an update already handled)', headers: xRequestId },
          ...problemResponses(['BAD_REQUEST', 'UNAUTHORIZED', 'NOT_FOUND', 'PAYLOAD_TOO_LARGE', 'UNAVAILABLE', 'INTERNAL']),
        },
      },
    },
    '/openapi.json': {
      get: {
        operationId: 'openapi',
        tags: ['public'],
        summary: 'This document',
        security: [],
        responses: { '200': jsonResponse('OpenAPI 3.1 description of the API', { type: 'object' }) },
      },
    },
  };

  return {
    openapi: '3.1.0',
    info: {
      title: 'jit-broker',
      version: packageVersion(),
      summary: 'Just-in-time credential and approval broker for AI agents',
      description: [
        'Agents ask for short-lived Vault tokens or git gate push credentials; policy decides the tier; tier 2 and 3 wait for approvers.',
        '',
        `JSON everywhere. Errors are \`application/problem+json\` (RFC 9457) with a stable \`code\` (see the Problem schema for every code, its status and its \`type\`) and \`request_id\`, the same as the \`X-Request-Id\` header every answer carries. Bodies over ${maxBody} bytes get 413; unknown fields get 400; an unknown path or method gets 404 NOT_FOUND.`,
        '',
        'See docs/api.md for curl examples.',
      ].join('\n'),
      license: { name: 'Apache-2.0', identifier: 'Apache-2.0' },
    },
    ...(opts.serverUrl ? { servers: [{ url: opts.serverUrl }] } : {}),
    tags: [
      { name: 'agent', description: 'Agent endpoints (Authorization: Bearer <agent token>, from `jit agent add`)' },
      { name: 'gate', description: 'For the git gate' },
      { name: 'public', description: 'Public keys and this document' },
      { name: 'operations', description: 'Health and metrics for monitoring' },
      { name: 'telegram', description: 'Telegram Bot API webhook' },
    ],
    paths,
    components: {
      schemas,
      securitySchemes: {
        agentBearer: { type: 'http', scheme: 'bearer', description: 'The agent token printed by `jit agent add NAME` (jit_…)' },
        telegramSecretToken: { type: 'apiKey', in: 'header', name: 'X-Telegram-Bot-Api-Secret-Token', description: 'TELEGRAM_WEBHOOK_SECRET, sent by Telegram' },
      },
      headers: {
        'X-Request-Id': { description: 'Id of this HTTP request in the broker log', schema: { type: 'string' } },
        'Retry-After': { description: 'Seconds to wait before retrying', schema: { type: 'integer', minimum: 1 } },
        'WWW-Authenticate': { description: 'Bearer realm="jit-broker"', schema: { type: 'string' } },
        'Idempotent-Replayed': { description: '"true" when the answer is a replay for a repeated Idempotency-Key', schema: { type: 'string', const: 'true' } },
      },
    },
  };
}
