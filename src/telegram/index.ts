/**
 * Telegram approvals (SPEC §7). `createApprovalBot` is the entry point;
 * main.ts builds it when TELEGRAM_BOT_TOKEN is set and mounts its webhook
 * handler at TELEGRAM_WEBHOOK_PATH (see docs/telegram.md).
 */
export { createApprovalBot, type ApprovalBot, type ApprovalBotOptions, type ApprovalBotStatus } from './approval-bot.ts';
export { TELEGRAM_WEBHOOK_PATH, validateTelegramConfig, type TelegramConfig } from './config.ts';
export { answerFor, telegramIdentity } from './handlers.ts';
export { renderApproval, callbackData, parseCallbackData, type ApprovalView, type RenderedApproval } from './render.ts';
export { boundedRetry, callTimeout, classifyTelegramError, describeTelegramError, redactToken, type RetryOptions } from './errors.ts';
