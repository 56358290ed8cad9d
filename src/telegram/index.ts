/**
 * Telegram approvals (SPEC §7). `createApprovalBot` is the entry point;
 * main.ts builds it when TELEGRAM_BOT_TOKEN is set (see docs/telegram.md).
 */
export {
  createApprovalBot,
  validateTelegramConfig,
  TELEGRAM_WEBHOOK_PATH,
  type ApprovalBot,
  type ApprovalBotOptions,
  type ApprovalBotStatus,
  type TelegramConfig,
} from './approval-bot.ts';
export { answerFor, telegramIdentity } from './handlers.ts';
export { renderApproval, callbackData, parseCallbackData, type ApprovalView, type RenderedApproval } from './render.ts';
export { boundedRetry, callTimeout, classifyTelegramError, describeTelegramError, redactToken, type RetryOptions } from './errors.ts';
