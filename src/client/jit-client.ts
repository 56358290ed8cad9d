import { randomUUID } from 'node:crypto';
import { setTimeout as delay } from 'node:timers/promises';
import type { Clock } from '../lib/clock.ts';
import { JitApiError, JitOptionError, JitRateLimitedError, JitUnavailableError, JitUnreachableError, JitWaitTimeoutError, apiErrorFor, type Problem } from './errors.ts';
import type { CredentialRequestInput, IssuedResult, PendingResult, ReplayedResult, RequestResult, RequestStatus, RequestView } from './types.ts';

export interface JitClientOptions {
  /** The broker, e.g. `http://127.0.0.1:8787`. */
  baseUrl: string;
  /** The agent's bearer token (`jit_…`). Never appears in an error message. */
  token: string;
  /** Injected for tests and custom agents (proxies, instrumentation). Defaults to the global fetch. */
  fetch?: typeof fetch;
  /** How the client waits between retries and polls. */
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
  status: RequestStatus;
  elapsedMs: number;
  /** When the next check is due. */
  nextCheckInMs: number;
  request: RequestView;
}

export interface WaitOptions extends CallOptions {
  /** Give up after this long (default 10 min) with a JitWaitTimeoutError. */
  timeoutMs?: number;
  /** Called after each check that found the request still pending. */
  onProgress?: (progress: WaitProgress) => void;
  /** First poll interval (default 1 s); it doubles up to `maxIntervalMs` (default 15 s). */
  initialIntervalMs?: number;
  maxIntervalMs?: number;
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
   * Polls the request until it is no longer pending (approved, issued,
   * denied, timed out, …) and resolves with that state. Polls back off from
   * 1 s to 15 s. For agents without a webhook receiver; the others are told
   * by the decision webhook and never need this.
   */
  async waitForDecision(id: string, options: WaitOptions = {}): Promise<RequestView> {
    const timeoutMs = options.timeoutMs ?? 600_000;
    const maxInterval = options.maxIntervalMs ?? 15_000;
    let interval = options.initialIntervalMs ?? 1_000;
    const started = this.#clock.now();
    for (;;) {
      const view = await this.status(id, options);
      if (view.status !== 'pending') return view;
      const elapsedMs = this.#clock.now() - started;
      if (elapsedMs >= timeoutMs) throw new JitWaitTimeoutError(id, elapsedMs, view);
      const nextCheckInMs = Math.min(interval, timeoutMs - elapsedMs);
      options.onProgress?.({ id, status: view.status, elapsedMs, nextCheckInMs, request: view });
      await this.#sleep(nextCheckInMs, options.signal);
      interval = Math.min(interval * 2, maxInterval);
    }
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
      if (signal?.aborted) throw signal.reason;
      const limit = this.#timeoutMs < 1000 ? `${this.#timeoutMs} ms` : `${Math.round(this.#timeoutMs / 1000)} s`;
      const reason = timeout.aborted ? `no answer within ${limit}` : networkReason(err);
      throw new JitUnreachableError(this.baseUrl, this.#scrub(reason), { cause: err });
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
