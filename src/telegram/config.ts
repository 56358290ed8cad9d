import { ConfigError, type Config } from '../config/config.ts';

export type TelegramConfig = NonNullable<Config['telegram']>;

/** The path the broker serves Telegram webhook updates on (SPEC §6); the composition root mounts it. */
export const TELEGRAM_WEBHOOK_PATH = '/telegram/webhook';

/** Telegram's rule for `secret_token` (setWebhook). */
const SECRET_SHAPE = /^[A-Za-z0-9_-]{1,256}$/;

/**
 * Checks the Telegram settings the config schema cannot: the webhook secret
 * must be something Telegram accepts, or setWebhook would fail forever.
 */
export function validateTelegramConfig(config: TelegramConfig): void {
  if (config.webhookSecret !== undefined && !SECRET_SHAPE.test(config.webhookSecret)) {
    throw new ConfigError('TELEGRAM_WEBHOOK_SECRET', 'Telegram accepts 1-256 characters of A-Z, a-z, 0-9, "_" and "-"');
  }
}
