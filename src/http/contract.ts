import { OpenAPIHono, type RouteConfig, type RouteHandler } from '@hono/zod-openapi';
import type { MiddlewareHandler } from 'hono';
import { z } from 'zod';
import { BrokerError } from '../broker/errors.ts';
import { ERROR_CODES, problemBody, type ErrorCode } from '../wire/error-codes.ts';
import { Problem, describeZodError } from '../wire/schemas.ts';
import { readJson } from './body.ts';
import type { AppEnv } from './env.ts';

/**
 * How a route declares its contract: each route file calls {@link route}
 * with a `createRoute` config (request and response schemas from
 * src/wire/), and GET /openapi.json is generated from those configs
 * (routes/openapi-route.ts). The helpers here are the parts every route
 * shares: the validation hook, the JSON body reader, problem responses.
 */

/** A router whose validation failures are today's 400 problem+json, never zod-openapi's own error body. */
export function contractRouter(): OpenAPIHono<AppEnv> {
  return new OpenAPIHono<AppEnv>({ defaultHook: validationHook });
}

/**
 * Renders a failed validation (path parameters: bodies and headers are
 * validated by {@link route}'s own middleware) as BAD_REQUEST with
 * {@link describeZodError}.
 */
function validationHook(result: { success: boolean; error?: z.ZodError }): void {
  if (result.success || !result.error) return;
  throw new BrokerError('BAD_REQUEST', describeZodError(result.error));
}

/**
 * A header's issues without the header's name as their path: the message
 * names it already ("Idempotency-Key must be …").
 */
function headerError(error: z.ZodError): z.ZodError {
  return new z.ZodError(error.issues.map((i) => ({ ...i, path: i.path.slice(1) })));
}

/**
 * Registers `config` in the document and mounts `handler`, typed by it: the
 * handler's `c.req.valid(...)` and `c.json(body, status)` are checked
 * against the declared request and responses.
 *
 * A JSON body is read by {@link readJson} (media type, size limit, empty and
 * malformed bodies: today's 413/415/400 problems) and validated with the
 * declared schema here rather than by zod-openapi's body validator, which
 * reads the body through the Fetch API and answers a missing or unusual
 * JSON content type differently. `readBody: false` documents a body that
 * the handler hands on unread (the Telegram webhook).
 */
export function route<R extends RouteConfig>(app: OpenAPIHono<AppEnv>, config: R, handler: RouteHandler<R, AppEnv>, opts: { readBody?: boolean } = {}): void {
  app.openAPIRegistry.registerPath(config);
  const { body, headers, ...request } = config.request ?? {};
  const media = body?.content['application/json'];
  const schema = media && 'schema' in media ? media.schema : undefined;
  const middleware = [config.middleware ?? []].flat() as MiddlewareHandler<AppEnv>[];
  if (schema instanceof z.ZodType && opts.readBody !== false) middleware.push(jsonBody(schema));
  // After the body, as zod-openapi ran its validators after the route's middleware.
  if (headers instanceof z.ZodObject) middleware.push(declaredHeaders(headers));
  app.openapi({ ...config, request, middleware, hide: true }, handler as never);
}

/**
 * Validates the declared request headers, each looked up by its name.
 * zod-openapi's header validator copies every header of the request into
 * an object first (`c.req.header()`), which on the issue path cost more
 * than the rest of the route's validation (docs/benchmarks.md, issue 18).
 */
function declaredHeaders(schema: z.ZodObject): MiddlewareHandler<AppEnv> {
  const names = Object.keys(schema.shape);
  return async (c, next) => {
    const values: Record<string, string | undefined> = {};
    for (const name of names) values[name] = c.req.header(name);
    const parsed = schema.safeParse(values);
    if (!parsed.success) throw new BrokerError('BAD_REQUEST', describeZodError(headerError(parsed.error)));
    c.req.addValidatedData('header', parsed.data as Record<string, string>);
    await next();
  };
}

function jsonBody(schema: z.ZodType): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    const parsed = schema.safeParse(await readJson(c));
    if (!parsed.success) throw new BrokerError('BAD_REQUEST', describeZodError(parsed.error));
    c.req.addValidatedData('json', parsed.data as object);
    await next();
  };
}

// ---- The document's shared parts -------------------------------------------

export const BEARER = [{ agentBearer: [] }];
const xRequestId = { 'X-Request-Id': { $ref: '#/components/headers/X-Request-Id' } };

/** A JSON response: the schema, the X-Request-Id header every answer carries, and any other headers. */
export function jsonResponse<S extends z.ZodType>(description: string, schema: S, headers: Record<string, unknown> = {}) {
  return { description, headers: { ...xRequestId, ...headers }, content: { 'application/json': { schema } } };
}

/** A response without a JSON body. */
export function plainResponse(description: string, content?: Record<string, { schema: z.ZodType | { type: 'object' } }>) {
  return { description, headers: xRequestId, ...(content ? { content } : {}) };
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
  TOO_MANY_STREAMS: 'agent "dev" already has 20 decision streams open (limit 20); close one, or read the request with GET /jit/requests/{id}',
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

const RETRY_AFTER_CODES: readonly ErrorCode[] = ['RATE_LIMITED', 'TOO_MANY_PENDING', 'TOO_MANY_STREAMS', 'VAULT_UNAVAILABLE', 'UNAVAILABLE'];

/** Errors of every route that reads a JSON body. */
export const BODY_ERRORS: readonly ErrorCode[] = ['BAD_REQUEST', 'PAYLOAD_TOO_LARGE', 'UNSUPPORTED_MEDIA_TYPE', 'INTERNAL'];
/** Errors of every agent route about one request. */
export const AGENT_ERRORS: readonly ErrorCode[] = ['UNAUTHORIZED', 'NOT_FOUND', 'INTERNAL'];

/**
 * One application/problem+json response per HTTP status among `codes`, each
 * naming its codes, with an example of each rendered by the server's own
 * {@link problemBody}.
 */
export function problemResponses(codes: readonly ErrorCode[]) {
  const byStatus = new Map<number, ErrorCode[]>();
  for (const code of new Set(codes)) {
    const status = ERROR_CODES[code].status;
    byStatus.set(status, [...(byStatus.get(status) ?? []), code]);
  }
  const out: Record<number, { description: string; headers: Record<string, unknown>; content: Record<string, { schema: z.ZodType; examples: Record<string, unknown> }> }> = {};
  for (const [status, list] of [...byStatus].sort((a, b) => a[0] - b[0])) {
    const headers: Record<string, unknown> = { ...xRequestId };
    if (list.some((c) => RETRY_AFTER_CODES.includes(c))) headers['Retry-After'] = { $ref: '#/components/headers/Retry-After' };
    if (status === 401) headers['WWW-Authenticate'] = { $ref: '#/components/headers/WWW-Authenticate' };
    out[status] = {
      description: list.map((c) => `${c}: ${ERROR_CODES[c].title}`).join('; '),
      headers,
      content: {
        'application/problem+json': {
          schema: Problem.and(z.object({ status: z.literal(status), code: z.enum(list as [ErrorCode, ...ErrorCode[]]) })),
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
