import type { OpenAPIHono } from '@hono/zod-openapi';
import type { BrokerDeps } from './broker/deps.ts';
import type { RequestStreams } from './broker/request-stream.ts';
import { BrokerError } from './broker/errors.ts';
import { createConsole, type ConsoleOptions } from './console/app.ts';
import { createApp, type MountedRoute } from './http/app.ts';
import type { AppEnv, AppTelegram } from './http/env.ts';
import { plainResponse, problemResponses } from './http/contract.ts';
import { TELEGRAM_WEBHOOK_PATH } from './telegram/config.ts';
import { TelegramUpdate } from './wire/schemas.ts';

/** The approval bot as the served app needs it. */
export interface ServedTelegram extends AppTelegram {
  /** `POST /telegram/webhook`: the Fetch API request in, the answer for Telegram out. */
  handleWebhook(request: Request): Promise<Response>;
}

/**
 * The HTTP app as the broker serves it (main.ts): the
 * API, plus the Telegram webhook route and the operator console (/console)
 * mounted here so that the HTTP, Telegram and console folders never import
 * each other. Without Telegram the webhook route answers 404, saying so.
 */
export function createServedApp(deps: BrokerDeps, streams: RequestStreams, telegram?: ServedTelegram, consoleOptions?: ConsoleOptions): OpenAPIHono<AppEnv> {
  return createApp(deps, {
    telegram,
    streams,
    mounts: [{ path: '/console', app: createConsole(deps, consoleOptions) }],
    routes: [
      {
        path: TELEGRAM_WEBHOOK_PATH,
        handler(request) {
          if (!telegram) throw new BrokerError('NOT_FOUND', 'Telegram is not configured on this broker');
          return telegram.handleWebhook(request);
        },
        contract: TELEGRAM_WEBHOOK_CONTRACT,
      },
    ],
  });
}

/** `POST /telegram/webhook` in GET /openapi.json. */
const TELEGRAM_WEBHOOK_CONTRACT: MountedRoute['contract'] = {
  operationId: 'telegramWebhook',
  tags: ['telegram'],
  summary: 'Telegram updates (webhook mode)',
  description:
    'Called by Telegram when TELEGRAM_WEBHOOK_SECRET is set (the broker registers the webhook at start). The header X-Telegram-Bot-Api-Secret-Token must equal the secret (401 otherwise). Without Telegram or in polling mode: 404.',
  security: [{ telegramSecretToken: [] }],
  request: { body: { required: true, content: { 'application/json': { schema: TelegramUpdate } } } },
  responses: {
    200: plainResponse('Accepted (also for an update already handled)'),
    ...problemResponses(['BAD_REQUEST', 'UNAUTHORIZED', 'NOT_FOUND', 'PAYLOAD_TOO_LARGE', 'UNAVAILABLE', 'INTERNAL']),
  },
};
