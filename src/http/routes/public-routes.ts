import { Hono } from 'hono';
import type { BrokerDeps } from '../../broker/deps.ts';
import { BrokerError } from '../../broker/errors.ts';
import { verifyGateCredential } from '../../broker/gate-credential.ts';
import { GateVerifyBody, describeZodError } from '../../broker/schemas.ts';
import { readJson } from '../body.ts';
import type { AppEnv, AppTelegram } from '../env.ts';
import { JWKS_CACHE_CONTROL } from '../openapi.ts';
import { createOutboxStore } from '../../webhooks/outbox.ts';

/** Unauthenticated endpoints. */
export function publicRoutes(deps: BrokerDeps, telegram?: AppTelegram) {
  const app = new Hono<AppEnv>();
  const outbox = createOutboxStore(deps.db);

  app.get('/healthz', async (c) => {
    let db: 'ok' | 'error' = 'ok';
    try {
      deps.db.prepare('SELECT 1').get();
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
      outboxPending = outbox.pendingCount();
    } catch {
      db = 'error';
    }
    const healthy = db === 'ok' && vault === 'ok';
    return c.json(
      { status: healthy ? 'ok' : 'degraded', db, vault, telegram: telegramHealth(telegram), outbox_pending: outboxPending },
      healthy ? 200 : 503,
    );
  });

  app.get('/.well-known/jwks.json', (c) => {
    // Short: after `jit keys revoke` a cached copy would keep trusting the key for this long.
    c.header('Cache-Control', JWKS_CACHE_CONTROL);
    return c.json(deps.keys.jwks());
  });

  app.post('/gate/verify', async (c) => {
    const parsed = GateVerifyBody.safeParse(await readJson(c));
    if (!parsed.success) throw new BrokerError('BAD_REQUEST', describeZodError(parsed.error));
    const verdict = verifyGateCredential(deps, parsed.data);
    c.get('log').info({ valid: verdict.valid, repo: parsed.data.repo, ref: parsed.data.ref, ...(verdict.valid ? { request_id: verdict.request_id } : { reason: verdict.reason }) }, 'gate verify');
    return c.json(verdict);
  });

  return app;
}

function telegramHealth(bot: AppTelegram | undefined): 'disabled' | 'starting' | 'ok' | 'degraded' {
  if (!bot) return 'disabled';
  const status = bot.status();
  if (status.lastError) return 'degraded';
  return status.ready ? 'ok' : 'starting';
}
