import { describe, expect, it } from 'vitest';
import { VaultError, kindForStatus, redactTokens, toVaultError } from '../../../src/vault/errors.ts';

/** The shape of node-vault 0.12's ApiResponseError. */
function apiError(statusCode: number, errors: string[]): Error & { response: unknown } {
  return Object.assign(new Error(errors[0] ?? `Status ${statusCode}`), { response: { statusCode, body: { errors } } });
}

describe('toVaultError', () => {
  it.each([
    [400, 'bad_request'],
    [403, 'permission_denied'],
    [404, 'not_found'],
    [405, 'bad_request'],
    [413, 'bad_request'],
    [429, 'rate_limited'],
    [500, 'server'],
    [502, 'server'],
    [503, 'sealed'],
  ])('status %d → %s', (status, kind) => {
    const e = toVaultError(apiError(status, ['x']), 'op');
    expect(e).toBeInstanceOf(VaultError);
    expect(e).toMatchObject({ kind, status });
    expect(kindForStatus(status)).toBe(kind);
  });

  it('keeps Vault\'s messages, names the operation and the status', () => {
    const e = toVaultError(apiError(400, ['child policies must be subset of parent']), 'create token');
    expect(e.message).toBe('Vault create token failed: child policies must be subset of parent (HTTP 400)');
    expect(e.vaultErrors).toEqual(['child policies must be subset of parent']);
  });

  it('handles an empty error list (Vault\'s 404)', () => {
    expect(toVaultError(apiError(404, []), 'read').message).toBe('Vault read failed: status 404 (HTTP 404)');
  });

  it('scrubs anything token-shaped from Vault messages', () => {
    const e = toVaultError(apiError(400, ['bad token hvs.ABCDEFGHIJKLMNOP1234 and s.abcdefghijkl']), 'op');
    expect(e.message).not.toContain('ABCDEFGHIJKLMNOP1234');
    expect(e.message).not.toContain('abcdefghijkl');
    expect(e.vaultErrors[0]).toBe('bad token hvs.[redacted] and s.[redacted]');
  });

  it.each(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'ECONNABORTED', 'ENOTFOUND'])('network code %s → unreachable', (code) => {
    const axiosLike = Object.assign(new Error('connect failed'), {
      code,
      isAxiosError: true,
      config: { headers: { 'X-Vault-Token': 'hvs.SECRETSECRETSECRET' } },
    });
    const e = toVaultError(axiosLike, 'list');
    expect(e).toMatchObject({ kind: 'unreachable', status: undefined });
    expect(e.message).toContain(code);
    expect(JSON.stringify(e)).not.toContain('SECRET');
    expect(e.cause).toBeUndefined();
  });

  // What the Vault transport rejects with (src/vault/http-transport.ts): a plain Error with a code, no axios flag,
  // so only the code decides.
  it.each(['ECONNREFUSED', 'ETIMEDOUT', 'UND_ERR_SOCKET', 'UND_ERR_CLOSED', 'UND_ERR_DESTROYED', 'UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT'])(
    "the transport's connection error %s → unreachable",
    (code) => {
      const e = toVaultError(Object.assign(new Error('other side closed'), { code }), 'create token');
      expect(e).toMatchObject({ kind: 'unreachable', status: undefined });
      expect(e.message).toContain(code);
    },
  );

  it.each(['UND_ERR_INVALID_ARG', 'ERR_VAULT_TRANSPORT', 'ERR_VAULT_RESPONSE_TOO_LARGE'])("the transport's error %s is not a connection error → server", (code) => {
    expect(toVaultError(Object.assign(new Error('invalid x-vault-token header'), { code }), 'op').kind).toBe('server');
  });

  it('anything else → server, with tokens scrubbed', () => {
    const e = toVaultError(new Error('boom hvs.SECRETSECRETSECRET'), 'op');
    expect(e.kind).toBe('server');
    expect(e.message).toBe('Vault op failed: boom hvs.[redacted]');
  });

  it('passes a VaultError through unchanged', () => {
    const original = new VaultError('sealed', 'x', 503);
    expect(toVaultError(original, 'op')).toBe(original);
  });
});

describe('redactTokens', () => {
  it('leaves ordinary text alone', () => {
    expect(redactTokens('policy jit-req_1 is missing')).toBe('policy jit-req_1 is missing');
  });
});
