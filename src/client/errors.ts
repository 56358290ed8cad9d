/** What an API error means to a caller, whatever its exact code. */
export type JitApiErrorKind =
  | 'bad_request'
  | 'unauthorized'
  | 'policy_denied'
  | 'not_found'
  | 'conflict'
  | 'gone'
  | 'rate_limited'
  | 'unavailable'
  | 'other';

/** The problem+json body the broker answers errors with (RFC 9457, plus `code`). */
export interface Problem {
  type?: string;
  title?: string;
  status?: number;
  detail?: string;
  code?: string;
  request_id?: string;
  [field: string]: unknown;
}

/**
 * A bad `JitClient` option. A TypeError (the caller passed a bad value), with
 * the option it names in `field` and the complaint without the option's name
 * in `detail`, so a caller can say which setting it came from without parsing
 * the message.
 */
export class JitOptionError extends TypeError {
  override name = 'JitOptionError';
  constructor(
    readonly field: 'token' | 'baseUrl',
    readonly detail: string,
  ) {
    super(`${field} ${detail}`);
  }
}

/** Base class of every error the client throws. */
export class JitError extends Error {
  override name = 'JitError';
}

/**
 * The broker answered with an error status. `code` is the broker's error
 * code (`DENIED_BY_POLICY`, `RATE_LIMITED`, …) or `HTTP_<status>` when the
 * answer was not problem+json (a proxy in between, for example).
 */
export class JitApiError extends JitError {
  override name = 'JitApiError';
  readonly kind: JitApiErrorKind = 'other';
  readonly status: number;
  readonly code: string;
  readonly title: string;
  readonly detail: string;
  /** From `Retry-After`, when the broker sent one. */
  readonly retryAfterSeconds: number | undefined;
  /** The broker's `X-Request-Id` / `request_id`, for the operator's log. */
  readonly requestId: string | undefined;
  /** The whole problem body as received. */
  readonly problem: Problem;

  constructor(init: { status: number; code: string; title: string; detail: string; retryAfterSeconds?: number; requestId?: string; problem: Problem }) {
    super(init.detail ? `${init.title}: ${init.detail}` : init.title);
    this.status = init.status;
    this.code = init.code;
    this.title = init.title;
    this.detail = init.detail;
    this.retryAfterSeconds = init.retryAfterSeconds;
    this.requestId = init.requestId;
    this.problem = init.problem;
  }
}

/** 400, 413, 415: the request was malformed; sending it again will not help. */
export class JitBadRequestError extends JitApiError {
  override name = 'JitBadRequestError';
  override readonly kind = 'bad_request';
}
/** 401: the agent token is missing, malformed or unknown. */
export class JitUnauthorizedError extends JitApiError {
  override name = 'JitUnauthorizedError';
  override readonly kind = 'unauthorized';
}
/** 403: policy refuses the request (or the session key); `problem.pair` names the refused pair. */
export class JitPolicyDeniedError extends JitApiError {
  override name = 'JitPolicyDeniedError';
  override readonly kind = 'policy_denied';
}
/** 404: no such request for this agent. */
export class JitNotFoundError extends JitApiError {
  override name = 'JitNotFoundError';
  override readonly kind = 'not_found';
}
/** 409: already claimed, not approved yet, or an idempotency key reused with another body. */
export class JitConflictError extends JitApiError {
  override name = 'JitConflictError';
  override readonly kind = 'conflict';
}
/** 410: the claim window has passed. */
export class JitGoneError extends JitApiError {
  override name = 'JitGoneError';
  override readonly kind = 'gone';
}
/** 429: too many requests per minute or too many pending; see `retryAfterSeconds`. */
export class JitRateLimitedError extends JitApiError {
  override name = 'JitRateLimitedError';
  override readonly kind = 'rate_limited';
}
/** 503: Vault (or the broker) is unavailable; nothing was issued; see `retryAfterSeconds`. */
export class JitUnavailableError extends JitApiError {
  override name = 'JitUnavailableError';
  override readonly kind = 'unavailable';
}

const BY_STATUS: Record<number, typeof JitApiError> = {
  400: JitBadRequestError,
  401: JitUnauthorizedError,
  403: JitPolicyDeniedError,
  404: JitNotFoundError,
  409: JitConflictError,
  410: JitGoneError,
  413: JitBadRequestError,
  415: JitBadRequestError,
  429: JitRateLimitedError,
  503: JitUnavailableError,
};

/** The typed error for an HTTP error status. */
export function apiErrorFor(init: ConstructorParameters<typeof JitApiError>[0]): JitApiError {
  const Ctor = BY_STATUS[init.status] ?? JitApiError;
  return new Ctor(init);
}

/** The broker could not be reached at all (refused, reset, DNS, timeout); nothing is known about the request. */
export class JitUnreachableError extends JitError {
  override name = 'JitUnreachableError';
  constructor(
    readonly baseUrl: string,
    readonly reason: string,
    options?: { cause?: unknown },
  ) {
    super(`cannot reach the JIT broker at ${baseUrl}: ${reason}`, options);
  }
}

/**
 * `waitForDecision` could not follow the decision stream (it dropped or was
 * refused `reconnects` times in a row) and the one GET after it found the
 * request still pending. `request` is that state; `cause` the last failure.
 */
export class JitStreamLostError extends JitError {
  override name = 'JitStreamLostError';
  constructor(
    readonly requestId: string,
    readonly reconnects: number,
    readonly request: unknown,
    cause: unknown,
  ) {
    super(`lost the decision stream of request ${requestId} after ${reconnects} reconnects; it is still pending`, { cause });
  }
}

/** `waitForDecision` gave up while the request was still pending. `request` is the last state seen. */
export class JitWaitTimeoutError extends JitError {
  override name = 'JitWaitTimeoutError';
  constructor(
    readonly requestId: string,
    readonly waitedMs: number,
    readonly request: unknown,
  ) {
    super(`request ${requestId} is still pending after ${Math.round(waitedMs / 1000)} s`);
  }
}
