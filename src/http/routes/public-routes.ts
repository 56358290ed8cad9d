import { createRoute } from '@hono/zod-openapi';
import type { BrokerDeps } from '../../broker/deps.ts';
import { verifyGateCredential } from '../../broker/gate-credential.ts';
import { GateVerifyBody, GateVerifyResponse, HealthResponse, Jwks } from '../../wire/schemas.ts';
import type { AppTelegram } from '../env.ts';
import { BODY_ERRORS, contractRouter, jsonResponse, problemResponses, route } from '../contract.ts';

/** How long a cache may keep the JWKS: a revoked key leaves HTTP caches within a minute. */
export const JWKS_CACHE_CONTROL = 'public, max-age=60';

/** Unauthenticated endpoints. */
export function publicRoutes(deps: BrokerDeps, telegram?: AppTelegram) {
  const app = contractRouter();

  const health = createRoute({
    method: 'get',
    path: '/healthz',
    operationId: 'health',
    tags: ['operations'],
    summary: 'Health',
    security: [],
    responses: {
      200: jsonResponse('Healthy', HealthResponse),
      503: jsonResponse('The database or Vault is down (status "degraded")', HealthResponse),
    },
  });
  route(app, health, async (c) => {
    let db: 'ok' | 'error' = 'ok';
    try {
      await deps.storage.ping();
    } catch {
      db = 'error';
    }
    let vault: 'ok' | 'sealed' | 'unreachable' = 'ok';
    try {
      const h = await deps.vault.health();
      if (h.sealed || !h.initialized) vault = 'sealed';
    } catch {
      vault = 'unreachable';
    }
    let outboxPending: number | null = null;
    try {
      outboxPending = await deps.storage.outbox.pendingCount();
    } catch {
      db = 'error';
    }
    const healthy = db === 'ok' && vault === 'ok';
    const body: HealthResponse = { status: healthy ? 'ok' : 'degraded', db, vault, telegram: telegramHealth(telegram), outbox_pending: outboxPending };
    return healthy ? c.json(body, 200) : c.json(body, 503);
  });

  route(
    app,
    createRoute({
      method: 'get',
      path: '/.well-known/jwks.json',
      operationId: 'jwks',
      tags: ['public'],
      summary: 'Public signing keys',
      description: 'Verifies gate credentials (JWT `kid`) and decision webhook signatures. Previous keys stay listed for 7 days after a rotation.',
      security: [],
      responses: { 200: jsonResponse('The JWKS', Jwks, { 'Cache-Control': { schema: { type: 'string' }, example: JWKS_CACHE_CONTROL } }) },
    }),
    (c) => {
      // Short: after `jit keys revoke` a cached copy would keep trusting the key for this long.
      c.header('Cache-Control', JWKS_CACHE_CONTROL);
      return c.json(deps.keys.jwks(), 200);
    },
  );

  route(
    app,
    createRoute({
      method: 'post',
      path: '/gate/verify',
      operationId: 'verifyGateCredential',
      tags: ['gate'],
      summary: 'Check a gate push credential',
      description: 'For the git gate: signature, issuer, expiry, repo and ref against the granted globs, and revocation. An invalid credential is a 200 with `valid: false` and the reason.',
      security: [],
      request: { body: { required: true, content: { 'application/json': { schema: GateVerifyBody } } } },
      responses: { 200: jsonResponse('The verdict', GateVerifyResponse), ...problemResponses(BODY_ERRORS) },
    }),
    async (c) => {
      const asked = c.req.valid('json');
      const verdict = await verifyGateCredential(deps, asked);
      c.get('log').info({ valid: verdict.valid, repo: asked.repo, ref: asked.ref, ...(verdict.valid ? { request_id: verdict.request_id } : { reason: verdict.reason }) }, 'gate verify');
      return c.json(verdict, 200);
    },
  );

  return app;
}

function telegramHealth(bot: AppTelegram | undefined): 'disabled' | 'starting' | 'ok' | 'degraded' {
  if (!bot) return 'disabled';
  const status = bot.status();
  if (status.lastError) return 'degraded';
  return status.ready ? 'ok' : 'starting';
}
