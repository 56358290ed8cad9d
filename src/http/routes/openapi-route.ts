import { createRoute, type OpenAPIHono } from '@hono/zod-openapi';
import { packageVersion } from '../../lib/package-version.ts';
import { DecisionEvent, OpenClawAgentBody } from '../../wire/events.ts';
import type { AppEnv } from '../env.ts';
import { MAX_BODY_BYTES } from '../body.ts';
import { plainResponse, route } from '../contract.ts';

/**
 * `GET /openapi.json`: the OpenAPI 3.1 description of the API, generated
 * from the contracts the routes declare (createRoute in routes/*.ts, with
 * the schemas of src/wire/). Mount it on the app last: the document holds
 * the routes registered when it is first asked for.
 */
export function openApiRoutes(app: OpenAPIHono<AppEnv>, serverUrl: string | undefined): void {
  registerSharedComponents(app);
  registerDecisionEvents(app);
  let body: string | undefined;
  route(
    app,
    createRoute({
      method: 'get',
      path: '/openapi.json',
      operationId: 'openapi',
      tags: ['public'],
      summary: 'This document',
      security: [],
      responses: { 200: plainResponse('OpenAPI 3.1 description of the API', { 'application/json': { schema: { type: 'object' } } }) },
    }),
    (c) => {
      // Built on first use, then served as is: it depends only on the code and JIT_PUBLIC_URL.
      body ??= JSON.stringify(openApiDocument(app, serverUrl));
      c.header('Cache-Control', 'public, max-age=300');
      return c.body(body, 200, { 'Content-Type': 'application/json; charset=utf-8' });
    },
  );
}

/** The document's info (OpenAPI 3.1: `summary`, an SPDX licence `identifier`; the generator's types know only 3.0's fields). */
const info = () => ({
  title: 'jit-broker',
  version: packageVersion(),
  summary: 'Just-in-time credential and approval broker for AI agents',
  description: [
    'Agents ask for short-lived Vault tokens or git gate push credentials; policy decides the tier; tier 2 and 3 wait for approvers.',
    '',
    `JSON everywhere. Errors are \`application/problem+json\` (RFC 9457) with a stable \`code\` (see the Problem schema for every code, its status and its \`type\`) and \`request_id\`, the same as the \`X-Request-Id\` header every answer carries. Bodies over ${MAX_BODY_BYTES} bytes get 413; unknown fields get 400; an unknown path or method gets 404 NOT_FOUND.`,
    '',
    'See docs/api.md for curl examples.',
  ].join('\n'),
  license: { name: 'Apache-2.0', identifier: 'Apache-2.0' },
});

/** The document of every route registered on `app`. */
export function openApiDocument(app: OpenAPIHono<AppEnv>, serverUrl: string | undefined) {
  return app.getOpenAPI31Document({
    openapi: '3.1.0',
    info: info(),
    ...(serverUrl ? { servers: [{ url: serverUrl }] } : {}),
    tags: [
      { name: 'agent', description: 'Agent endpoints (Authorization: Bearer <agent token>, from `jit agent add`)' },
      { name: 'gate', description: 'For the git gate' },
      { name: 'public', description: 'Public keys and this document' },
      { name: 'operations', description: 'Health and metrics for monitoring' },
      { name: 'telegram', description: 'Telegram Bot API webhook' },
      { name: 'decision events', description: "What the broker sends to an agent's webhook target when its request is decided (docs/jit-webhook-design.md)" },
    ],
  });
}

/** The decision events the broker sends (OpenAPI 3.1 `webhooks`): the receiver answers any 2xx, else the event is retried. */
function registerDecisionEvents(app: OpenAPIHono<AppEnv>): void {
  const delivered = { 200: { description: 'Delivered: any 2xx within the timeout. Other answers are retried on a schedule, or are final (docs/jit-webhook-design.md §6).' } };
  app.openAPIRegistry.registerWebhook({
    method: 'post',
    path: 'decisionEvent',
    operationId: 'decisionEvent',
    tags: ['decision events'],
    summary: 'A decision, to a standard target',
    description:
      'Signed per Standard Webhooks: webhook-id (the event id, identical on every attempt; receivers deduplicate on it), webhook-timestamp, webhook-signature (Ed25519, keys at /.well-known/jwks.json).',
    request: { body: { required: true, content: { 'application/json': { schema: DecisionEvent } } } },
    responses: delivered,
  });
  app.openAPIRegistry.registerWebhook({
    method: 'post',
    path: 'openClawAgent',
    operationId: 'openClawAgent',
    tags: ['decision events'],
    summary: 'A decision, to an OpenClaw target (POST /hooks/agent)',
    description:
      'Signed like the standard event; also `Authorization: Bearer $OPENCLAW_HOOKS_TOKEN` (only to the origin of OPENCLAW_HOOKS_URL) and `Idempotency-Key` (the webhook-id).',
    request: { body: { required: true, content: { 'application/json': { schema: OpenClawAgentBody } } } },
    responses: delivered,
  });
}

/** Security schemes and response headers the routes refer to by `$ref`. */
function registerSharedComponents(app: OpenAPIHono<AppEnv>): void {
  const r = app.openAPIRegistry;
  r.registerComponent('securitySchemes', 'agentBearer', { type: 'http', scheme: 'bearer', description: 'The agent token printed by `jit agent add NAME` (jit_…)' });
  r.registerComponent('securitySchemes', 'telegramSecretToken', {
    type: 'apiKey',
    in: 'header',
    name: 'X-Telegram-Bot-Api-Secret-Token',
    description: 'TELEGRAM_WEBHOOK_SECRET, sent by Telegram',
  });
  r.registerComponent('headers', 'X-Request-Id', { description: 'Id of this HTTP request in the broker log', schema: { type: 'string' } });
  r.registerComponent('headers', 'Retry-After', { description: 'Seconds to wait before retrying', schema: { type: 'integer', minimum: 1 } });
  r.registerComponent('headers', 'WWW-Authenticate', { description: 'Bearer realm="jit-broker"', schema: { type: 'string' } });
  r.registerComponent('headers', 'Idempotent-Replayed', { description: '"true" when the answer is a replay for a repeated Idempotency-Key', schema: { type: 'string', const: 'true' } });
}
