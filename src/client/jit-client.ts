import { randomUUID } from 'node:crypto';
import { setTimeout as delay } from 'node:timers/promises';
import { createParser } from 'eventsource-parser';
import type { Clock } from '../lib/clock.ts';
import { JitApiError, JitOptionError, JitRateLimitedError, JitStreamLostError, JitUnavailableError, JitUnreachableError, JitWaitTimeoutError, apiErrorFor, type Problem } from './errors.ts';
import type { CredentialRequestInput, IssuedResult, PendingResult, ReplayedResult, RequestResult, RequestStatus, RequestView } from './types.ts';

export interface JitClientOptions {
  /** The broker, e.g. `http://127.0.0.1:8787`. */
  baseUrl: string;
  /** The agent's bearer token (`jit_…`). Never appears in an error message. */
  token: string;
  /** Injected for tests and custom agents (proxies, instrumentation). Defaults to the global fetch. */
  fetch?: typeof fetch;
  /** How the client waits between retries and reconnects. */
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
  /** Time source for Retry-After dates and wait deadlines. */
  clock?: Clock;
  /** Retries after 429 or 503 (default 3). 0 turns retrying off. */
  maxRetries?: number;
  /**
   * The longest single wait before a retry (default 10 s). A `Retry-After`
   * longer than this is not waited for: the error is thrown at once with
   * `retryAfterSeconds`, so an interactive caller is not blocked for minutes.
   */
  maxRetryDelayMs?: number;
  /** Time limit of one HTTP exchange (default 30 s). */
  timeoutMs?: number;
}

export interface CallOptions {
  signal?: AbortSignal;
}

export interface RequestCallOptions extends CallOptions {
  /**
   * Sent as `Idempotency-Key`. Without one the client makes up a fresh key
   * per call and reuses it on that call's retries, so a retry never creates
   * a second request.
   */
  idempotencyKey?: string;
}

export interface WaitProgress {
  id: string;
  /** Always `pending`: progress is reported only while the request waits for its decision. */
  status: RequestStatus;
  elapsedMs: number;
  /**
   * What happened: `state` the stream sent the request's (pending) state,
   * `heartbeat` the broker's idle heartbeat arrived (every 15 s), `reconnecting`
   * the stream dropped and the client reconnects in `retryInMs` (attempt
   * `attempt`) with Last-Event-ID.
   */
  kind: 'state' | 'heartbeat' | 'reconnecting';
  /** The last state the stream sent (undefined until the first event). */
  request: RequestView | undefined;
  attempt?: number;
  retryInMs?: number;
}

export interface WaitOptions extends CallOptions {
  /** Give up after this long (default 10 min; `Infinity`: never) with a JitWaitTimeoutError. */
  timeoutMs?: number;
  /** Called while the request is still pending: its state, each heartbeat, each reconnect. */
  onProgress?: (progress: WaitProgress) => void;
  /** Reconnects in a row after a dropped or refused stream before the one GET fallback (default 5). */
  maxReconnects?: number;
  /** Silence on an open stream (no event, no heartbeat) after which it is taken as dead and reconnected (default 45 s: three heartbeats). */
  idleTimeoutMs?: number;
}
interface Exchange {
  status: number;
  data: unknown;
}

const defaultSleep = (ms: number, signal?: AbortSignal) => delay(ms, undefined, signal ? { signal } : {});

/**
 * A typed client for the broker's agent endpoints. Errors are JitApiError
 * subclasses (one per kind of problem) or JitUnreachableError; 429 and 503
 * are retried after `Retry-After`, a bounded number of times.
 */
export class JitClient {
  readonly baseUrl: string;
  // A private field: util.inspect and JSON.stringify of the client do not show it.
  readonly #token: string;
  readonly #fetch: typeof fetch;
  readonly #sleep: (ms: number, signal?: AbortSignal) => Promise<void>;
  readonly #clock: Clock;
  readonly #maxRetries: number;
  readonly #maxRetryDelayMs: number;
  readonly #timeoutMs: number;

  constructor(options: JitClientOptions) {
    this.baseUrl = normalizeBaseUrl(options.baseUrl);
    if (!options.token || /\s/.test(options.token)) throw new JitOptionError('token', 'must be a non-empty agent token without spaces');
    this.#token = options.token;
    this.#fetch = options.fetch ?? globalThis.fetch;
    this.#sleep = options.sleep ?? defaultSleep;
    this.#clock = options.clock ?? { now: () => Date.now() };
    this.#maxRetries = options.maxRetries ?? 3;
    this.#maxRetryDelayMs = options.maxRetryDelayMs ?? 10_000;
    this.#timeoutMs = options.timeoutMs ?? 30_000;
  }

  /**
   * `POST /jit/request`. Resolves with the issued credential (201, tier 1),
   * the pending request (202), or, when the idempotency key was seen before,
   * the first request's current state (200, `replayed: true`, no secret).
   */
  async request(body: CredentialRequestInput, options: RequestCallOptions = {}): Promise<RequestResult> {
    const fixedKey = options.idempotencyKey;
    let key = fixedKey ?? newIdempotencyKey();
    let lastWasUnavailable = false;
    return this.#withRetries(async () => {
      try {
        const send = () => this.#exchange('POST', '/jit/request', body, { 'idempotency-key': key }, options.signal);
        let res = await send();
        // A tier-1 request that met a Vault outage (503) is recorded as failed
        // under its key, so a retry with that key only replays the failure.
        // Nothing was issued under it; a made-up key may start afresh.
        if (res.status === 200 && statusOf(res.data) === 'failed' && lastWasUnavailable && fixedKey === undefined) {
          key = newIdempotencyKey();
          res = await send();
        }
        if (res.status === 200) return { ...(res.data as RequestView), replayed: true } satisfies ReplayedResult;
        return res.data as IssuedResult | PendingResult;
      } catch (err) {
        lastWasUnavailable = err instanceof JitUnavailableError;
        throw err;
      }
    }, options.signal);
  }

  /** `GET /jit/requests/:id`: status, tiers, decision and credential metadata (never the secret). */
  async status(id: string, options: CallOptions = {}): Promise<RequestView> {
    return this.#withRetries(async () => (await this.#exchange('GET', requestPath(id), undefined, {}, options.signal)).data as RequestView, options.signal);
  }

  /** `POST /jit/requests/:id/claim`: the approved credential, once (409 afterwards, 410 after the claim window). */
  async claim(id: string, options: CallOptions = {}): Promise<IssuedResult> {
    return this.#withRetries(
      async () => (await this.#exchange('POST', `${requestPath(id)}/claim`, undefined, {}, options.signal)).data as IssuedResult,
      options.signal,
    );
  }

  /** `POST /jit/requests/:id/revoke`: ends the credential now, or cancels a pending/approved request. */
  async revoke(id: string, options: CallOptions = {}): Promise<RequestView> {
    return this.#withRetries(
      async () => (await this.#exchange('POST', `${requestPath(id)}/revoke`, undefined, {}, options.signal)).data as RequestView,
      options.signal,
    );
  }

  /**
   * Follows the request's decision stream (`GET /jit/requests/:id/events`,
   * Server-Sent Events) until it is decided, and resolves with the request
   * as that first decision left it: the first state that is not `pending`.
   * That is `approved` (`decision.granted` is what will be minted and
   * `decision.narrowed` says the approver granted less than asked; claim it
   * with {@link claim}), `issued` (tier 1, or claimed meanwhile), `denied`
   * (`decision.reason`), `timed_out`, `revoked` (cancelled), `expired` or
   * `failed`. A request already decided resolves at once.
   *
   * A dropped or refused stream (network error, 429, 5xx, three heartbeats
   * of silence) is reconnected with `Last-Event-ID`, so no change is
   * missed, after 0.25 s, 0.5 s, 1 s, … (at most 5 s, or the broker's
   * Retry-After), up to `maxReconnects` times in a row; then the client asks
   * `GET /jit/requests/:id` once and resolves with a decided state, or
   * throws JitStreamLostError with the last state seen. Never polls.
   * After `timeoutMs`: JitWaitTimeoutError; `signal` aborts the wait.
   */
  async waitForDecision(id: string, options: WaitOptions = {}): Promise<RequestView> {
    const path = `${requestPath(id)}/events`;
    const timeoutMs = options.timeoutMs ?? 600_000;
    const maxReconnects = options.maxReconnects ?? 5;
    const started = this.#clock.now();
    const elapsed = () => this.#clock.now() - started;
    let lastEventId: string | undefined;
    let last: RequestView | undefined;
    let failures = 0;
    for (;;) {
      const leftMs = timeoutMs - elapsed();
      if (leftMs <= 0) throw new JitWaitTimeoutError(id, elapsed(), last);
      let lost: unknown;
      try {
        const outcome = await this.#followStream(path, lastEventId, leftMs, options, {
          onEvent: (eventId, view) => {
            if (eventId !== undefined) lastEventId = eventId;
            last = view;
            failures = 0;
            if (view.status === 'pending') options.onProgress?.({ id, status: view.status, elapsedMs: elapsed(), kind: 'state', request: view });
          },
          onHeartbeat: () => {
            failures = 0;
            options.onProgress?.({ id, status: 'pending', elapsedMs: elapsed(), kind: 'heartbeat', request: last });
          },
        });
        if (outcome.decided) return outcome.decided;
        if (outcome.timedOut) throw new JitWaitTimeoutError(id, elapsed(), last);
        lost = new Error('the broker closed the stream before a decision');
      } catch (err) {
        if (options.signal?.aborted) throw options.signal.reason;
        if (err instanceof JitWaitTimeoutError || (err instanceof JitApiError && !isRetriableStreamError(err))) throw err;
        lost = err;
      }
      failures++;
      if (failures > maxReconnects) {
        // One GET (not retried, not a polling loop): the stream could not be followed.
        const view = (await this.#exchange('GET', requestPath(id), undefined, {}, options.signal)).data as RequestView;
        if (view.status !== 'pending') return view;
        throw new JitStreamLostError(id, failures - 1, view, lost);
      }
      const retryAfter = lost instanceof JitApiError && lost.retryAfterSeconds !== undefined ? Math.min(lost.retryAfterSeconds * 1000, this.#maxRetryDelayMs) : undefined;
      const retryInMs = Math.min(retryAfter ?? Math.min(250 * 2 ** (failures - 1), 5_000), Math.max(0, timeoutMs - elapsed()));
      options.onProgress?.({ id, status: 'pending', elapsedMs: elapsed(), kind: 'reconnecting', request: last, attempt: failures, retryInMs });
      await this.#sleep(retryInMs, options.signal);
    }
  }

  /**
   * One connection of the decision stream: resolves with the first decided
   * state, or `{}` when the broker ended the stream before one, or
   * `timedOut` when `leftMs` ran out. Throws JitApiError for an error
   * status, JitUnreachableError when the connection failed or went silent.
   */
  async #followStream(
    path: string,
    lastEventId: string | undefined,
    leftMs: number,
    options: WaitOptions,
    on: { onEvent: (eventId: string | undefined, view: RequestView) => void; onHeartbeat: () => void },
  ): Promise<{ decided?: RequestView; timedOut?: boolean }> {
    const idleMs = options.idleTimeoutMs ?? 45_000;
    const ctl = new AbortController();
    const signal = options.signal ? AbortSignal.any([options.signal, ctl.signal]) : ctl.signal;
    let why: 'connect' | 'idle' | 'deadline' | undefined;
    // setTimeout cannot wait longer than 2^31 - 1 ms (it would fire at once): a longer wait is checked again on reconnect.
    const deadline = Number.isFinite(leftMs) && leftMs < 2 ** 31 ? setTimeout(() => ((why = 'deadline'), ctl.abort()), leftMs) : undefined;
    let idle: NodeJS.Timeout | undefined;
    const quiet = (ms: number, reason: 'connect' | 'idle') => {
      clearTimeout(idle);
      idle = setTimeout(() => ((why ??= reason), ctl.abort()), ms);
    };
    try {
      quiet(this.#timeoutMs, 'connect');
      let res: Response;
      try {
        res = await this.#fetch(`${this.baseUrl}${path}`, {
          headers: {
            accept: 'text/event-stream',
            authorization: `Bearer ${this.#token}`,
            ...(lastEventId !== undefined ? { 'last-event-id': lastEventId } : {}),
          },
          signal,
          redirect: 'manual',
        });
      } catch (err) {
        if (why === 'deadline') return { timedOut: true };
        throw this.#unreachable(err, options.signal, why === 'connect' ? `no answer within ${formatMs(this.#timeoutMs)}` : undefined);
      }
      if (res.status < 200 || res.status >= 300 || !/^text\/event-stream\b/i.test(res.headers.get('content-type') ?? '')) {
        const text = await res.text().catch(() => '');
        if (res.status >= 200 && res.status < 300) {
          throw new JitApiError({ status: res.status, code: 'BAD_RESPONSE', title: 'Unexpected answer', detail: `the broker answered ${res.status} without an event stream`, problem: {} });
        }
        let data: unknown;
        try {
          data = JSON.parse(text);
        } catch {
          data = undefined;
        }
        throw this.#apiError(res, text, data);
      }
      let decided: RequestView | undefined;
      let bad: unknown;
      const parser = createParser({
        onEvent: (message) => {
          if (decided) return;
          let view: RequestView;
          try {
            view = JSON.parse(message.data) as RequestView;
          } catch (err) {
            bad ??= err;
            return;
          }
          on.onEvent(message.id, view);
          if (view.status !== 'pending') decided = view;
        },
        onComment: () => on.onHeartbeat(),
      });
      quiet(idleMs, 'idle');
      const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
      try {
        for (;;) {
          const { done, value } = await reader.read();
          if (done) return {};
          quiet(idleMs, 'idle');
          parser.feed(value);
          if (decided) return { decided };
          if (bad) throw new JitApiError({ status: res.status, code: 'BAD_RESPONSE', title: 'Unexpected answer', detail: 'an event of the decision stream is not JSON', problem: {} });
        }
      } catch (err) {
        if (err instanceof JitApiError) throw err;
        if (why === 'deadline') return { timedOut: true };
        throw this.#unreachable(err, options.signal, why === 'idle' ? `the decision stream was silent for ${formatMs(idleMs)}` : 'the decision stream was cut');
      } finally {
        reader.cancel().catch(() => {});
      }
    } finally {
      clearTimeout(deadline);
      clearTimeout(idle);
      ctl.abort();
    }
  }

  #unreachable(err: unknown, signal: AbortSignal | undefined, reason: string | undefined): unknown {
    if (signal?.aborted) return signal.reason;
    return new JitUnreachableError(this.baseUrl, this.#scrub(reason ?? networkReason(err)), { cause: err });
  }

  async #withRetries<T>(attempt: () => Promise<T>, signal: AbortSignal | undefined): Promise<T> {
    for (let n = 0; ; n++) {
      try {
        return await attempt();
      } catch (err) {
        const wait = this.#retryDelayMs(err, n);
        if (wait === undefined) throw err;
        await this.#sleep(wait, signal);
      }
    }
  }

  /** Only 429 and 503 are retried: the broker says nothing was done and when to come back. */
  #retryDelayMs(err: unknown, attempt: number): number | undefined {
    if (!(err instanceof JitRateLimitedError || err instanceof JitUnavailableError)) return undefined;
    if (attempt >= this.#maxRetries) return undefined;
    const ms = err.retryAfterSeconds !== undefined ? err.retryAfterSeconds * 1000 : Math.min(1000 * 2 ** attempt, this.#maxRetryDelayMs);
    return ms <= this.#maxRetryDelayMs ? ms : undefined;
  }

  async #exchange(method: string, path: string, body: unknown, headers: Record<string, string>, signal: AbortSignal | undefined): Promise<Exchange> {
    const timeout = AbortSignal.timeout(this.#timeoutMs);
    let res: Response;
    let text: string;
    try {
      res = await this.#fetch(`${this.baseUrl}${path}`, {
        method,
        headers: {
          accept: 'application/json, application/problem+json',
          authorization: `Bearer ${this.#token}`,
          ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
          ...headers,
        },
        ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
        signal: signal ? AbortSignal.any([signal, timeout]) : timeout,
        // The token must not follow a redirect to another place.
        redirect: 'manual',
      });
      text = await res.text();
    } catch (err) {
      throw this.#unreachable(err, signal, timeout.aborted ? `no answer within ${formatMs(this.#timeoutMs)}` : undefined);
    }
    let data: unknown;
    try {
      data = text === '' ? undefined : JSON.parse(text);
    } catch {
      data = undefined;
    }
    if (res.status >= 200 && res.status < 300) {
      if (data === undefined || typeof data !== 'object') {
        throw new JitApiError({ status: res.status, code: 'BAD_RESPONSE', title: 'Unexpected answer', detail: `the broker answered ${res.status} without a JSON body`, problem: {} });
      }
      return { status: res.status, data };
    }
    throw this.#apiError(res, text, data);
  }

  #apiError(res: Response, text: string, data: unknown): JitApiError {
    // Scrubbed as a whole: the problem rides along on the error, into whatever logs it.
    const problem: Problem = data !== null && typeof data === 'object' && !Array.isArray(data) ? (JSON.parse(this.#scrub(JSON.stringify(data))) as Problem) : {};
    const str = (v: unknown) => (typeof v === 'string' && v.trim() !== '' ? this.#scrub(v) : undefined);
    const plain = /^text\/plain\b/i.test(res.headers.get('content-type') ?? '') ? str(text.slice(0, 300)) : undefined;
    const location = res.status >= 300 && res.status < 400 ? res.headers.get('location') : null;
    const retryAfterSeconds = parseRetryAfter(res.headers.get('retry-after'), this.#clock.now());
    const requestId = str(problem.request_id) ?? res.headers.get('x-request-id') ?? undefined;
    return apiErrorFor({
      status: res.status,
      code: str(problem.code) ?? `HTTP_${res.status}`,
      title: str(problem.title) ?? (res.statusText || `HTTP ${res.status}`),
      detail: str(problem.detail) ?? plain ?? (location ? `redirected to ${this.#scrub(location)}; point the client at the broker's final address` : ''),
      ...(retryAfterSeconds !== undefined ? { retryAfterSeconds } : {}),
      ...(requestId !== undefined ? { requestId } : {}),
      problem,
    });
  }

  #scrub(s: string): string {
    return s.replaceAll(this.#token, '[redacted]');
  }
}

/**
 * `Retry-After` as seconds from now: delta-seconds or an HTTP date
 * (RFC 9110 §10.2.3). Undefined when absent or unparseable.
 */
export function parseRetryAfter(value: string | null, nowMs: number): number | undefined {
  if (value === null) return undefined;
  const v = value.trim();
  if (/^\d{1,9}$/.test(v)) return Number(v);
  const at = Date.parse(v);
  if (Number.isNaN(at)) return undefined;
  return Math.max(0, Math.ceil((at - nowMs) / 1000));
}

function normalizeBaseUrl(raw: string): string {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new JitOptionError('baseUrl', `"${raw.slice(0, 200)}" is not a URL (expected e.g. http://127.0.0.1:8787)`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new JitOptionError('baseUrl', `must be http:// or https:// (got ${url.protocol})`);
  if (url.username || url.password) throw new JitOptionError('baseUrl', 'must not contain credentials; the agent token goes in the token option');
  if (url.search || url.hash) throw new JitOptionError('baseUrl', 'must not have a query or fragment');
  return `${url.origin}${url.pathname.replace(/\/+$/, '')}`;
}

/** Refused or failed streams worth reconnecting: the broker asked to come back (429, 503) or a proxy failed (5xx). */
function isRetriableStreamError(err: JitApiError): boolean {
  return err.status === 429 || err.status >= 500;
}

function formatMs(ms: number): string {
  return ms < 1000 ? `${ms} ms` : `${Math.round(ms / 1000)} s`;
}

function requestPath(id: string): string {
  if (!id) throw new TypeError('a request id is required');
  return `/jit/requests/${encodeURIComponent(id)}`;
}

function newIdempotencyKey(): string {
  return `jit-client-${randomUUID()}`;
}

function statusOf(data: unknown): unknown {
  return data !== null && typeof data === 'object' ? (data as { status?: unknown }).status : undefined;
}

function networkReason(err: unknown): string {
  const cause = (err as { cause?: { code?: string; message?: string } } | null)?.cause;
  const code = cause?.code;
  const known: Record<string, string> = {
    ECONNREFUSED: 'connection refused (is the broker running?)',
    ECONNRESET: 'connection reset',
    ENOTFOUND: 'host not found',
    EAI_AGAIN: 'host name lookup failed',
    ETIMEDOUT: 'connection timed out',
    EHOSTUNREACH: 'host unreachable',
  };
  if (code && known[code]) return `${known[code]} (${code})`;
  const msg = cause?.message ?? (err as Error | null)?.message ?? String(err);
  return code ? `${msg} (${code})` : msg;
}
