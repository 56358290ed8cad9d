/** Signed decision webhooks: Standard Webhooks signing, durable outbox and its dispatcher. */
export { signWebhook, verifyWebhook, signedContent } from './sign.ts';
export type { VerifyResult, WebhookHeaders } from './sign.ts';
export { addressUnresolved, createOutboxSink, resolveTargetUrl, redactUrl } from './outbox.ts';
export type { OutboxRow, OutboxState } from './outbox.ts';
export { createDispatcher, DEFAULT_CONCURRENCY } from './dispatcher.ts';
export { OPENCLAW_CONFIG_ERRORS } from './attempt.ts';
export { createHttpTransport } from './transport.ts';
export type { Dispatcher, DrainSummary } from './dispatcher.ts';
export type { Transport, TransportRequest, TransportResponse } from './transport.ts';
export { DEFAULT_RETRY_SCHEDULE_MS, nextAttemptDelay, parseRetryAfter } from './retry.ts';
