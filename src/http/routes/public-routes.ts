import { Hono } from 'hono';
import type { BrokerDeps } from '../../broker/deps.ts';
import type { AppEnv } from '../app.ts';

/** Unauthenticated endpoints. */
export function publicRoutes(deps: BrokerDeps) {
  const app = new Hono<AppEnv>();

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
    const healthy = db === 'ok' && vault === 'ok';
    return c.json(
      { status: healthy ? 'ok' : 'degraded', db, vault, telegram: deps.config.telegram ? 'configured' : 'disabled', outbox_pending: 0 },
      healthy ? 200 : 503,
    );
  });

  return app;
}
