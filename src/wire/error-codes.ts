/**
 * Every error code the broker answers with, in one registry: HTTP status and
 * a human title. `type` in problem+json is derived from the code
 * ({@link problemBody} in problem.ts). Part of the wire contract: the broker
 * throws them (BrokerError), the HTTP API renders them, clients read them.
 */
export const ERROR_CODES = {
  BAD_REQUEST: { status: 400, title: 'Bad request' },
  UNAUTHORIZED: { status: 401, title: 'Unauthorized' },
  FORBIDDEN: { status: 403, title: 'Forbidden' },
  DENIED_BY_POLICY: { status: 403, title: 'Denied by policy' },
  NOT_COVERED: { status: 403, title: 'Not covered by policy' },
  FORBIDDEN_CAPABILITY: { status: 403, title: 'Capability never issued' },
  INVALID_PATH: { status: 400, title: 'Invalid path' },
  SESSION_NOT_ALLOWED: { status: 403, title: 'Session key not allowed' },
  NOT_FOUND: { status: 404, title: 'Not found' },
  METHOD_NOT_ALLOWED: { status: 405, title: 'Method not allowed' },
  CONFLICT: { status: 409, title: 'Conflict' },
  IDEMPOTENCY_KEY_REUSED: { status: 409, title: 'Idempotency key reused with another body' },
  GONE: { status: 410, title: 'Gone' },
  PAYLOAD_TOO_LARGE: { status: 413, title: 'Payload too large' },
  UNSUPPORTED_MEDIA_TYPE: { status: 415, title: 'Unsupported media type' },
  RATE_LIMITED: { status: 429, title: 'Too many requests' },
  TOO_MANY_PENDING: { status: 429, title: 'Too many pending requests' },
  TOO_MANY_STREAMS: { status: 429, title: 'Too many open decision streams' },
  INTERNAL: { status: 500, title: 'Internal error' },
  NOT_IMPLEMENTED: { status: 501, title: 'Not implemented' },
  VAULT_UNAVAILABLE: { status: 503, title: 'Vault unavailable' },
  UNAVAILABLE: { status: 503, title: 'Service unavailable' },
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;

/**
 * The problem+json body for an error code (RFC 9457): the one rendering of
 * an error, for the HTTP API and for the Telegram webhook endpoint alike.
 */
export function problemBody(code: ErrorCode, detail: string, extra: Record<string, unknown> = {}) {
  const { status, title } = ERROR_CODES[code];
  return {
    type: problemType(code),
    title,
    status,
    detail,
    code,
    ...extra,
  };
}

/** The problem type URI of a code: `urn:jit-broker:problem:<code in kebab case>`. */
export function problemType(code: ErrorCode): string {
  return `urn:jit-broker:problem:${code.toLowerCase().replaceAll('_', '-')}`;
}
