import { webhookCallback, type Bot } from 'grammy';
import type { Update } from 'grammy/types';
import { problemBody, type ErrorCode } from '../broker/errors.ts';
import type { Logger } from '../lib/logger.ts';
import { safeEqual } from '../lib/secrets.ts';
import { describeTelegramError } from './errors.ts';
import { ALLOWED_UPDATES, type BotLifetime } from './polling.ts';


/** Telegram redelivers an update it thinks failed (a slow answer, say); the ids of this many recent updates are kept. */
const RECENT_UPDATES = 2048;

export interface RegisterWebhookOptions {
  bot: Bot;
  log: Logger;
  token: string;
  lifetime: BotLifetime;
  /** getMe and the command menu. */
  connect(): Promise<void>;
  /** Called once the webhook is registered. */
  onReady(): void;
  url: string;
  secret: string;
  signal(): Parameters<Bot['api']['setWebhook']>[2];
  restartDelayMs: number;
}

/** setWebhook with the secret, retried (doubling to 60 s) until it succeeds or the bot stops. */
export async function registerWebhook(o: RegisterWebhookOptions): Promise<void> {
  const { bot, log, token, lifetime, url, restartDelayMs } = o;
  if (!url.startsWith('https://')) {
    log.warn({ url }, 'telegram: Telegram only delivers webhooks to https URLs; set JIT_PUBLIC_URL to the public https address');
  }
  let delay = restartDelayMs;
  while (!lifetime.stopped()) {
    try {
      await o.connect();
      await bot.api.setWebhook(url, { secret_token: o.secret, allowed_updates: [...ALLOWED_UPDATES], drop_pending_updates: false }, o.signal());
      o.onReady();
      return;
    } catch (err) {
      if (lifetime.stopped()) return;
      log.error({ telegram: describeTelegramError(err, token), url, retry_in_ms: delay }, 'telegram: could not register the webhook; will retry');
    }
    await lifetime.sleep(delay);
    delay = Math.min(delay * 2, Math.max(restartDelayMs, 60_000));
  }
}

export interface WebhookHandlerOptions {
  /** Undefined in polling mode: every call then gets 404. */
  bot: Bot | undefined;
  secret: string | undefined;
  log: Logger;
  /** False until the bot is initialised, and once it stops: calls then get 503. */
  accepting(): boolean;
  /** Telegram gets its 200 after this long even if the update is still being handled. */
  replyTimeoutMs: number;
  /** Logs a failure to handle an update (the call still gets 200, as Telegram would otherwise redeliver it). */
  onError(err: unknown): void;
}

const problem = (code: ErrorCode, detail: string, headers: Record<string, string> = {}) => {
  const body = problemBody(code, detail);
  return new Response(JSON.stringify(body), { status: body.status, headers: { 'content-type': 'application/problem+json', ...headers } });
};

/**
 * `POST /telegram/webhook` as a Fetch API handler: checks the secret header
 * (401), that the body is a Telegram update (400) and that the bot runs
 * (503), drops a redelivered update, and hands the update to grammY's
 * `webhookCallback`, which answers within `replyTimeoutMs` while the
 * handling goes on.
 *
 * Security: the secret is compared here, in constant time, before grammY
 * sees the request. grammY checks it again (its own comparison is
 * constant-time only for a header of the right length: a wrong length
 * returns at once), and its refusal is an empty 401 where ours is
 * problem+json and logged.
 */
export function createWebhookHandler(o: WebhookHandlerOptions): (request: Request) => Promise<Response> {
  const { bot, secret, log } = o;
  if (!bot || !secret) return async () => problem('NOT_FOUND', 'Telegram webhook mode is not enabled (TELEGRAM_WEBHOOK_SECRET is unset)');

  // The update reaches grammY already read and checked; `call.refused` is set if grammY's own secret check fails.
  const adapter = (update: Update, header: string, call: { refused: boolean }) => ({
    update,
    header,
    respond: () => {},
    unauthorized: () => {
      call.refused = true;
    },
  });
  const handle = webhookCallback(bot, adapter, { secretToken: secret, onTimeout: 'return', timeoutMilliseconds: o.replyTimeoutMs });
  const recentUpdates = new Set<number>();

  return async (request) => {
    // Only Telegram knows the secret (sent with setWebhook); without this check
    // anyone could post forged updates, e.g. a callback query from an approver's id.
    const given = request.headers.get('x-telegram-bot-api-secret-token');
    if (given === null || !safeEqual(given, secret)) {
      log.warn({ header: given === null ? 'missing' : 'wrong' }, 'telegram: webhook call with a missing or wrong secret token refused');
      return problem('UNAUTHORIZED', 'missing or wrong X-Telegram-Bot-Api-Secret-Token');
    }
    let update: unknown;
    try {
      update = await request.json();
    } catch {
      return problem('BAD_REQUEST', 'the body is not JSON');
    }
    if (typeof update !== 'object' || update === null || !Number.isSafeInteger((update as { update_id?: unknown }).update_id)) {
      return problem('BAD_REQUEST', 'the body is not a Telegram update');
    }
    if (!o.accepting()) return problem('UNAVAILABLE', 'the Telegram bot is not running yet', { 'retry-after': '5' });
    const id = (update as Update).update_id;
    if (recentUpdates.has(id)) return new Response(null, { status: 200 });
    recentUpdates.add(id);
    if (recentUpdates.size > RECENT_UPDATES) recentUpdates.delete(recentUpdates.values().next().value!);
    const call = { refused: false };
    try {
      await handle(update as Update, given, call);
    } catch (err) {
      // The handlers run inside an error boundary (approval-bot.ts); this is grammY itself failing. Telegram must not redeliver.
      o.onError(err);
    }
    if (call.refused) return problem('UNAUTHORIZED', 'missing or wrong X-Telegram-Bot-Api-Secret-Token');
    return new Response(null, { status: 200 });
  };
}
