import { createRoute } from '@hono/zod-openapi';
import type { Context } from 'hono';
import { streamSSE } from 'hono/streaming';
import { z } from 'zod';
import { claimCredential } from '../../broker/claim.ts';
import type { BrokerDeps } from '../../broker/deps.ts';
import { BrokerError, notFound } from '../../broker/errors.ts';
import { requestCredential } from '../../broker/request-credential.ts';
import { revokeRequest } from '../../broker/revoke.ts';
import { CredentialRequestBody, IdempotencyKey, IssuedResponse, PendingResponse, RequestView } from '../../wire/schemas.ts';
import { requestView } from '../../broker/view.ts';
import type { RequestStreams } from '../../broker/request-stream.ts';
import { RequestStreamEventData, STREAM_HEARTBEAT } from '../../wire/events.ts';
import { isId } from '../../lib/ids.ts';
import type { HttpBindings } from '@hono/node-server';
import { getConnInfo } from '@hono/node-server/conninfo';
import type { AppEnv } from '../env.ts';
import { createAuthFailureAuditor } from '../auth-failure-audit.ts';
import { AGENT_ERRORS, BEARER, BODY_ERRORS, contractRouter, jsonResponse, plainResponse, problemResponses, route } from '../contract.ts';

/** The `{id}` of a request route: any string here; one that is not the caller's request id is 404 (ownRequest). */
const RequestIdParams = z.object({
  id: z.string().meta({ description: 'The request id from POST /jit/request', pattern: '^req_[0-9a-z]{26}$' }),
});

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

/**
 * Routes an agent calls with its bearer token. `onChange` runs after a
 * request is created, claimed or revoked (the Telegram bot re-syncs);
 * `streams` is the process's decision stream hub.
 */
export function agentRoutes(deps: BrokerDeps, streams: RequestStreams, onChange: () => void = () => {}) {
  const app = contractRouter();
  const authFailures = createAuthFailureAuditor(deps);

  app.use('*', async (c, next) => {
    const header = c.req.header('authorization') ?? '';
    const m = /^Bearer\s+(\S+)\s*$/i.exec(header);
    const agent = m ? await deps.agents.authenticate(m[1]!) : undefined;
    if (!agent) {
      const reason = header ? 'unknown or malformed token' : 'no bearer token';
      c.get('log').warn({ reason }, 'agent authentication failed');
      await authFailures.record(clientAddress(c), reason);
      throw new BrokerError('UNAUTHORIZED', header ? 'the bearer token is not valid' : 'send the agent token as Authorization: Bearer <token>');
    }
    c.set('agent', agent);
    await next();
  });

  route(
    app,
    createRoute({
      method: 'post',
      path: '/request',
      operationId: 'requestCredential',
      tags: ['agent'],
      summary: 'Ask for a credential',
      description:
        'Checks the request against policy. Tier 1 that policy allows at tier 1: issued at once (201). Otherwise held for approval (202, `required_tier` says the tier policy requires); the decision arrives as a signed webhook, then claim. A repeated `Idempotency-Key` returns the first answer: 202 while pending, else 200 with the request as it stands (`Idempotent-Replayed: true`, never the secret).',
      security: BEARER,
      request: {
        headers: z.object({ 'Idempotency-Key': IdempotencyKey.optional() }),
        body: { required: true, content: { 'application/json': { schema: CredentialRequestBody, examples: REQUEST_EXAMPLES } } },
      },
      responses: {
        200: jsonResponse('Idempotency-Key replay of a request that is no longer pending: its current state, without the secret', RequestView, {
          'Idempotent-Replayed': { $ref: '#/components/headers/Idempotent-Replayed' },
        }),
        201: jsonResponse('Issued at once (tier 1). The secret is in `credential` and is shown only this once.', IssuedResponse),
        202: jsonResponse('Pending approval (tier 2 or 3)', PendingResponse),
        ...problemResponses([
          ...BODY_ERRORS,
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
    }),
    async (c) => {
      const key = c.req.valid('header')['Idempotency-Key'];
      const outcome = await requestCredential(deps, c.get('agent'), c.req.valid('json'), key);
      c.header('Cache-Control', 'no-store');
      if ('replayed' in outcome) {
        c.header('Idempotent-Replayed', 'true');
        return c.json(outcome.body, 200);
      }
      if (outcome.status === 202) {
        onChange();
        return c.json(outcome.body, 202);
      }
      return c.json(outcome.body, 201);
    },
  );

  route(
    app,
    createRoute({
      method: 'get',
      path: '/requests/{id}',
      operationId: 'getRequest',
      tags: ['agent'],
      summary: "The agent's own request",
      description: "Status, tiers, scope, decision (approver, time, reason) and credential metadata (accessor or jti, expiry); never the secret. Another agent's request is 404.",
      security: BEARER,
      request: { params: RequestIdParams },
      responses: { 200: jsonResponse('The request', RequestView), ...problemResponses(AGENT_ERRORS) },
    }),
    async (c) => c.json(await requestView(deps, await ownRequest(deps, c)), 200),
  );

  route(
    app,
    createRoute({
      method: 'get',
      path: '/requests/{id}/events',
      operationId: 'requestEvents',
      tags: ['agent'],
      summary: "Follow the agent's own request: a decision stream (Server-Sent Events)",
      description: [
        "`text/event-stream`. Without `Last-Event-ID` the first event is the request's current state; with it, every change after that id, in order, then the live ones.",
        'Each event\'s `data:` is the request (the RequestView of GET /jit/requests/{id}) with `status` the status that change made: `approved` (with `decision.granted` and `decision.narrowed`), `denied` (with `decision.reason`), `timed_out`, `issued`, `revoked`, `expired`, `failed`.',
        "Each event's `id:` is the change's audit sequence number: valid across connections and broker nodes; send it back as `Last-Event-ID` to resume without a gap.",
        'A `: heartbeat` comment every 15 s while idle. The stream closes after a final state (denied, timed_out, revoked, expired, failed) and on shutdown.',
        "At most JIT_MAX_STREAMS (default 20) open streams per agent per broker process: 429 TOO_MANY_STREAMS beyond. Another agent's request is 404, as an unknown id.",
      ].join(' '),
      security: BEARER,
      request: {
        params: RequestIdParams,
        headers: z.object({
          'Last-Event-ID': z
            .string()
            .regex(/^[0-9]{1,15}$/, 'Last-Event-ID must be the id of an event of this stream (a decimal integer)')
            .optional()
            .meta({ description: 'The id of the last event received: the stream resumes after it' }),
        }),
      },
      responses: {
        200: plainResponse('The event stream: `id:` the audit sequence number, `data:` the request as JSON (RequestView, `status` the change\'s)', {
          'text/event-stream': { schema: RequestStreamEventData },
        }),
        ...problemResponses(['BAD_REQUEST', ...AGENT_ERRORS, 'TOO_MANY_STREAMS', 'UNAVAILABLE']),
      },
    }),
    async (c) => {
      const row = await ownRequest(deps, c);
      // Hono answers HEAD with the GET handler and discards the body: no stream is opened for a body nobody reads.
      if (c.req.method === 'HEAD') return c.body(null, 200, { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-cache' });
      const last = c.req.valid('header')['Last-Event-ID'];
      const stream = await streams.open(c.get('agent'), row, last === undefined ? undefined : Number(last));
      // Tells a buffering reverse proxy (nginx) to pass each event on as it is written.
      c.header('X-Accel-Buffering', 'no');
      return streamSSE(c, async (sse) => {
        sse.onAbort(() => stream.close());
        await stream.run({
          event: (e) => sse.writeSSE({ id: String(e.seq), data: JSON.stringify(e.data) }),
          heartbeat: async () => {
            await sse.write(`${STREAM_HEARTBEAT}\n\n`);
          },
          drop: () => (c.env as Partial<HttpBindings> | undefined)?.outgoing?.destroy(),
        });
      });
    },
  );

  route(
    app,
    createRoute({
      method: 'post',
      path: '/requests/{id}/claim',
      operationId: 'claimCredential',
      tags: ['agent'],
      summary: 'Claim an approved credential, once',
      description: 'Mints the credential of an approved request and returns it once. Already claimed: 409. After JIT_CLAIM_WINDOW: 410. Vault down: 503 and the request stays approved, so retry within the window.',
      security: BEARER,
      request: { params: RequestIdParams },
      responses: {
        201: jsonResponse('The credential, shown only this once', IssuedResponse),
        ...problemResponses([...AGENT_ERRORS, 'CONFLICT', 'GONE', 'VAULT_UNAVAILABLE']),
      },
    }),
    async (c) => {
      c.header('Cache-Control', 'no-store');
      const issued = await claimCredential(deps, await ownRequest(deps, c));
      onChange();
      return c.json(issued, 201);
    },
  );

  route(
    app,
    createRoute({
      method: 'post',
      path: '/requests/{id}/revoke',
      operationId: 'revokeRequest',
      tags: ['agent'],
      summary: 'End the credential now',
      description:
        'A live Vault token is revoked and its ephemeral policy deleted; a gate credential is revoked; a pending or approved request is cancelled. Revoking a revoked request is not an error. If Vault is down the revocation is recorded (503) and finished by the broker later.',
      security: BEARER,
      request: { params: RequestIdParams },
      responses: { 200: jsonResponse('The request, now revoked', RequestView), ...problemResponses([...AGENT_ERRORS, 'CONFLICT', 'VAULT_UNAVAILABLE']) },
    }),
    async (c) => {
      const row = await ownRequest(deps, c);
      const view = await revokeRequest(deps, row, `agent:${c.get('agent').name}`, 'revoked by the agent');
      onChange();
      return c.json(view, 200);
    },
  );

  return app;
}

function clientAddress(c: Context<AppEnv>): string {
  try {
    return getConnInfo(c).remote.address ?? 'unknown';
  } catch {
    return 'unknown';
  }
}

/** The caller's own request; another agent's id is indistinguishable from an unknown one (404). */
async function ownRequest(deps: BrokerDeps, c: Context<AppEnv>) {
  const id = c.req.param('id') ?? '';
  const row = isId('req', id) ? await deps.storage.requests.get(id) : undefined;
  if (!row || row.agent_id !== c.get('agent').id) throw notFound(`request ${id.slice(0, 64)}`);
  return row;
}
