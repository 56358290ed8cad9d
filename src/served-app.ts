import type { Hono } from 'hono';
import type { BrokerDeps } from './broker/deps.ts';
import { BrokerError } from './broker/errors.ts';
import { createApp } from './http/app.ts';
import type { AppEnv, AppTelegram } from './http/env.ts';
import { TELEGRAM_WEBHOOK_PATH } from './telegram/config.ts';

/** The approval bot as the served app needs it: the primary's bot, or in an HTTP worker its proxy to the primary over IPC. */
export interface ServedTelegram extends AppTelegram {
  /** `POST /telegram/webhook`: the Fetch API request in, the answer for Telegram out. */
  handleWebhook(request: Request): Promise<Response>;
}

/**
 * The HTTP app as the broker serves it (main.ts, and each HTTP worker): the
 * API, plus the Telegram webhook route mounted here so that the HTTP and
 * Telegram folders never import each other. Without Telegram the route
 * answers 404, saying so.
 */
export function createServedApp(deps: BrokerDeps, telegram?: ServedTelegram): Hono<AppEnv> {
  return createApp(deps, {
    telegram,
    routes: [
      {
        path: TELEGRAM_WEBHOOK_PATH,
        handler(request) {
          if (!telegram) throw new BrokerError('NOT_FOUND', 'Telegram is not configured on this broker');
          return telegram.handleWebhook(request);
        },
      },
    ],
  });
}
