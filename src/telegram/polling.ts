import type { Bot } from 'grammy';
import type { Logger } from '../lib/logger.ts';
import { classifyTelegramError, describeTelegramError } from './errors.ts';

/** Update kinds the bot handles; Telegram drops the rest before sending them. */
export const ALLOWED_UPDATES = ['message', 'callback_query'] as const;

/** How long-lived loops of the bot wait and learn that it stops. */
export interface BotLifetime {
  stopped(): boolean;
  /** Sleeps `ms`, or less if the bot stops meanwhile. */
  sleep(ms: number): Promise<void>;
}

export interface PollingOptions {
  bot: Bot;
  log: Logger;
  token: string;
  lifetime: BotLifetime;
  /** getMe and the command menu, before every (re)start. */
  connect(): Promise<void>;
  /** Called once polling runs. */
  onStart(): void;
  pollTimeoutSeconds: number;
  restartDelayMs: number;
}

/**
 * Long polling until the bot stops: grammY's `bot.start`, restarted after
 * every failure (slowly when the token is rejected), each kind of failure
 * logged once at its level and then quietly until it changes.
 */
export async function pollForever(o: PollingOptions): Promise<void> {
  const { bot, log, token, lifetime, restartDelayMs } = o;
  let lastFailure: string | undefined;
  while (!lifetime.stopped()) {
    let delay = restartDelayMs;
    try {
      await o.connect();
      if (lifetime.stopped()) break;
      await bot.start({
        timeout: o.pollTimeoutSeconds,
        allowed_updates: [...ALLOWED_UPDATES],
        drop_pending_updates: false,
        onStart: o.onStart,
      });
      if (lifetime.stopped()) break;
      log.warn('telegram: long polling ended unexpectedly; restarting');
    } catch (err) {
      if (lifetime.stopped()) break;
      const f = classifyTelegramError(err);
      // A rejected token will not fix itself soon: retry slowly.
      if (f.kind === 'unauthorized') delay = restartDelayMs * 12;
      const detail = { telegram: describeTelegramError(err, token), retry_in_ms: delay };
      const level = lastFailure === f.kind ? 'debug' : f.kind === 'unauthorized' || f.kind === 'conflict' ? 'error' : 'warn';
      lastFailure = f.kind;
      if (f.kind === 'unauthorized') log[level](detail, 'telegram: the Bot API rejected TELEGRAM_BOT_TOKEN; approvals via Telegram are unavailable');
      else if (f.kind === 'conflict') log[level](detail, 'telegram: another process is polling with this bot token (or set a webhook); only one may');
      else log[level](detail, 'telegram: long polling failed; restarting');
      await lifetime.sleep(delay);
      continue;
    }
    lastFailure = undefined;
    await lifetime.sleep(delay);
  }
}
