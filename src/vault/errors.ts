/** What went wrong talking to Vault, coarse enough for the broker to decide what to do. */
export type VaultErrorKind =
  | 'permission_denied'
  | 'not_found'
  | 'rate_limited'
  | 'sealed'
  | 'server'
  | 'unreachable'
  | 'bad_request';

/**
 * A failed Vault call. The message names the operation and what Vault
 * said, and never contains a token: Vault's own messages are scrubbed of
 * anything token-shaped, and the underlying error (whose request config
 * holds the X-Vault-Token header) is deliberately not kept as `cause`.
 */
export class VaultError extends Error {
  override readonly name = 'VaultError';

  constructor(
    readonly kind: VaultErrorKind,
    message: string,
    /** HTTP status Vault answered with; absent when Vault was not reached. */
    readonly status?: number,
    /** Vault's `errors` list, scrubbed of tokens. */
    readonly vaultErrors: readonly string[] = [],
  ) {
    super(message);
  }
}

/** Replaces anything shaped like a Vault token (hvs./hvb./hvr., legacy s./b./r.) with a marker. */
export function redactTokens(text: string): string {
  return text.replace(/\b(hv[sbr]|[sbr])\.[A-Za-z0-9_-]{8,}/g, '$1.[redacted]');
}

/** Maps an HTTP status from Vault to an error kind. */
export function kindForStatus(status: number): VaultErrorKind {
  if (status === 403 || status === 401) return 'permission_denied';
  if (status === 404) return 'not_found';
  if (status === 429) return 'rate_limited';
  if (status === 503) return 'sealed';
  if (status >= 500) return 'server';
  return 'bad_request';
}

const NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'ETIMEDOUT',
  'EPIPE',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
  'ERR_NETWORK',
  'ERR_CANCELED',
  'ERR_SOCKET_CONNECTION_TIMEOUT',
  'UND_ERR_CONNECT_TIMEOUT',
  // undici's (the Vault transport): the connection closed under the request, or was destroyed with it.
  'UND_ERR_SOCKET',
  'UND_ERR_CLOSED',
  'UND_ERR_DESTROYED',
  'UND_ERR_HEADERS_TIMEOUT',
  'UND_ERR_BODY_TIMEOUT',
]);

interface ApiResponseErrorLike {
  message?: unknown;
  response?: { statusCode?: unknown; body?: unknown };
}

/**
 * Converts whatever node-vault rejected with into a VaultError:
 * an `ApiResponseError` (Vault answered with a non-2xx status) by its
 * status; an AxiosError or socket error without a response (refused,
 * reset, timed out, DNS) as `unreachable`; anything else as `server`.
 */
export function toVaultError(err: unknown, operation: string): VaultError {
  if (err instanceof VaultError) return err;
  const e = (err ?? {}) as ApiResponseErrorLike & { code?: unknown; isAxiosError?: unknown; name?: unknown };
  const status = typeof e.response?.statusCode === 'number' ? e.response.statusCode : undefined;
  if (status !== undefined) {
    const body = e.response?.body as { errors?: unknown } | undefined;
    const errors = Array.isArray(body?.errors) ? body.errors.filter((x): x is string => typeof x === 'string').map(redactTokens) : [];
    const said = errors.length > 0 ? errors.join('; ').replace(/\s+/g, ' ').trim() : `status ${status}`;
    return new VaultError(kindForStatus(status), `Vault ${operation} failed: ${said} (HTTP ${status})`, status, errors);
  }
  const code = typeof e.code === 'string' ? e.code : undefined;
  if ((code && NETWORK_CODES.has(code)) || e.isAxiosError === true) {
    return new VaultError('unreachable', `Vault ${operation} failed: Vault is unreachable (${code ?? 'network error'})`);
  }
  if (e.name === 'ValidationError') {
    return new VaultError('bad_request', `Vault ${operation} failed: invalid request arguments`);
  }
  const msg = typeof e.message === 'string' ? redactTokens(e.message) : 'unexpected error';
  return new VaultError('server', `Vault ${operation} failed: ${msg}`);
}
