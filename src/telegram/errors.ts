import { GrammyError, HttpError } from 'grammy';
import type { Transformer } from 'grammy';

/** Bot tokens are `<digits>:<35 base64url characters>`; also caught inside URLs (`/bot<token>/`). */
const TOKEN_SHAPE = /\d{5,}:[A-Za-z0-9_-]{30,}/g;

/**
 * Removes the bot token from free text. grammY keeps the token out of its
 * own messages, but an underlying fetch error, a proxy's error page or a
 * misconfigured API root can quote the request URL, which contains it.
 */
export function redactToken(text: string, token?: string): string {
  let out = token ? text.split(token).join('[bot token]') : text;
  out = out.replace(TOKEN_SHAPE, '[bot token]');
  return out;
}

export type TelegramFailure =
  /** 429: wait `retryAfterSeconds` before calling again. */
  | { kind: 'rate_limited'; retryAfterSeconds: number }
  /** Network error, timeout or 5xx: try again later. */
  | { kind: 'unavailable' }
  /** 400 "message is not modified": the edit is already in place. */
  | { kind: 'not_modified' }
  /** 400 message to edit not found / can't be edited: the message is gone. */
  | { kind: 'message_gone' }
  /** 401 / 404: the token is wrong (or revoked). */
  | { kind: 'unauthorized' }
  /** 409: another instance is polling, or a webhook is set. */
  | { kind: 'conflict' }
  /** Anything else the API refused (a 400 that will not fix itself, 403 kicked from the chat, …). */
  | { kind: 'refused'; code: number };

/**
 * What kind of failure a Bot API call ended in, so callers decide: wait,
 * retry later, or give up. By type (GrammyError: the API said no; anything
 * else, HttpError included: the network) and by `error_code` and
 * `parameters.retry_after`. Two kinds are told apart by the description
 * because the Bot API gives nothing else: "message is not modified" and a
 * message that is gone are both plain 400s, distinguishable from any other
 * 400 only by their `description` (Telegram has no sub-codes).
 */
export function classifyTelegramError(err: unknown): TelegramFailure {
  if (err instanceof GrammyError) {
    const retryAfter = err.parameters?.retry_after;
    if (typeof retryAfter === 'number') return { kind: 'rate_limited', retryAfterSeconds: retryAfter };
    const d = err.description ?? '';
    if (err.error_code >= 500 || err.error_code === undefined) return { kind: 'unavailable' };
    if (err.error_code === 400 && d.includes('message is not modified')) return { kind: 'not_modified' };
    if (err.error_code === 400 && /message to edit not found|message can't be edited|MESSAGE_ID_INVALID/.test(d)) return { kind: 'message_gone' };
    if (err.error_code === 401 || err.error_code === 404) return { kind: 'unauthorized' };
    if (err.error_code === 409) return { kind: 'conflict' };
    if (err.error_code === 429) return { kind: 'rate_limited', retryAfterSeconds: 5 };
    return { kind: 'refused', code: err.error_code };
  }
  return { kind: 'unavailable' };
}

/**
 * A log-safe description of a Telegram failure: method, code and
 * description for API errors, a short message for network errors. Never
 * the raw error object (whose payload and cause may be large or carry URLs),
 * and never the token.
 */
export function describeTelegramError(err: unknown, token?: string): Record<string, unknown> {
  if (err instanceof GrammyError) {
    return {
      method: err.method,
      error_code: err.error_code,
      description: redactToken(String(err.description ?? ''), token),
      ...(typeof err.parameters?.retry_after === 'number' ? { retry_after: err.parameters.retry_after } : {}),
    };
  }
  if (err instanceof HttpError) {
    // grammY's node-fetch puts the request URL (with the token) in its messages: prefer the error code.
    const cause = err.error as { code?: string; message?: string; cause?: { code?: string } } | undefined;
    const detail = cause?.code ?? cause?.cause?.code ?? cause?.message;
    return { network: redactToken(err.message, token), ...(detail ? { cause: redactToken(String(detail), token) } : {}) };
  }
  const e = err as { name?: string; message?: string } | undefined;
  return { error: e?.name ?? 'Error', message: redactToken(String(e?.message ?? err), token) };
}

// grammY types its signals with the `abort-controller` polyfill's type; at run time they are the platform's.
type GrammySignal = Parameters<Transformer>[3];
const platformSignal = (s: GrammySignal) => s as unknown as AbortSignal | undefined;

/** Sleeps `ms`, or less if `signal` aborts meanwhile; never rejects. */
export const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve) => {
    if (signal?.aborted) return resolve();
    const done = () => {
      clearTimeout(t);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const t = setTimeout(done, ms);
    signal?.addEventListener('abort', done, { once: true });
  });

export interface RetryOptions {
  /** Attempts in all, including the first (default 3). */
  maxAttempts?: number;
  /** A 429 asking to wait longer than this is not retried inline (default 5). */
  maxRetryAfterSeconds?: number;
  /** First back-off after a network error or 5xx, doubled each time (default 500). */
  baseDelayMs?: number;
}

/**
 * A bounded retry for interactive calls (answering a tap, replying to a
 * command): honours `retry_after` when it is short, backs off on network
 * errors and 5xx, and gives up after a few attempts, so a Telegram outage
 * can never hold a handler forever (grammY's auto-retry plugin retries
 * forever by default). `getUpdates` is left alone: grammY's polling loop
 * has its own back-off. Background sync does not use it at all: the sync
 * loop is itself the retry.
 */
export function boundedRetry(opts: RetryOptions = {}): Transformer {
  const maxAttempts = opts.maxAttempts ?? 3;
  const maxRetryAfter = opts.maxRetryAfterSeconds ?? 5;
  const base = opts.baseDelayMs ?? 500;
  return async (prev, method, payload, signal) => {
    if (method === 'getUpdates') return prev(method, payload, signal);
    for (let attempt = 1; ; attempt++) {
      const last = attempt >= maxAttempts;
      let result;
      try {
        result = await prev(method, payload, signal);
      } catch (err) {
        if (last || signal?.aborted || !(err instanceof HttpError)) throw err;
        await sleep(base * 2 ** (attempt - 1), platformSignal(signal));
        continue;
      }
      if (result.ok || last) return result;
      const retryAfter = result.parameters?.retry_after;
      if (typeof retryAfter === 'number') {
        if (retryAfter > maxRetryAfter) return result;
        await sleep(retryAfter * 1000, platformSignal(signal));
        continue;
      }
      if (result.error_code >= 500) {
        await sleep(base * 2 ** (attempt - 1), platformSignal(signal));
        continue;
      }
      return result;
    }
  };
}

/**
 * Gives every call but `getUpdates` its own deadline, so one hung
 * connection cannot stall the sync loop for grammY's default 500 s.
 */
export function callTimeout(seconds: number): Transformer {
  return (prev, method, payload, signal) => {
    if (method === 'getUpdates') return prev(method, payload, signal);
    const deadline = AbortSignal.timeout(seconds * 1000);
    const given = platformSignal(signal);
    return prev(method, payload, (given ? anySignal(given, deadline) : deadline) as unknown as GrammySignal);
  };
}

/** `AbortSignal.any` (Node 20.3+), with a fallback for earlier 20.x. */
function anySignal(a: AbortSignal, b: AbortSignal): AbortSignal {
  if (typeof AbortSignal.any === 'function') return AbortSignal.any([a, b]);
  const controller = new AbortController();
  const abort = () => controller.abort();
  for (const s of [a, b]) {
    if (s.aborted) controller.abort();
    else s.addEventListener('abort', abort, { once: true });
  }
  return controller.signal;
}
