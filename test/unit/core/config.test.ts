import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../../src/config/config.ts';

describe('loadConfig', () => {
  it('runs on defaults with an empty environment (dev mode)', () => {
    const c = loadConfig({});
    expect(c).toMatchObject({
      host: '127.0.0.1',
      port: 8787,
      publicUrl: 'http://localhost:8787',
      dbPath: './data/jit.db',
      policiesDir: './policies',
      approvalTimeoutSeconds: 600,
      claimWindowSeconds: 600,
      tier3Quorum: 2,
      vault: undefined,
      telegram: undefined,
      logLevel: 'info',
    });
    expect(Object.isFrozen(c)).toBe(true);
  });

  it('dev mode on loopback defaults the public URL to http://localhost:PORT (passkeys need a host name); otherwise the listening address', () => {
    expect(loadConfig({ JIT_PORT: '9000' }).publicUrl).toBe('http://localhost:9000');
    expect(loadConfig({ JIT_HOST: '::1' }).publicUrl).toBe('http://localhost:8787');
    expect(loadConfig({ JIT_HOST: '0.0.0.0' }).publicUrl).toBe('http://0.0.0.0:8787');
    expect(loadConfig({ VAULT_ADDR: 'http://127.0.0.1:8200', VAULT_TOKEN: 't' }).publicUrl).toBe('http://127.0.0.1:8787');
    expect(loadConfig({ JIT_PUBLIC_URL: 'https://jit.example.net' }).publicUrl).toBe('https://jit.example.net');
  });

  it('reads durations, Vault AppRole and Telegram settings', () => {
    const c = loadConfig({
      JIT_APPROVAL_TIMEOUT: '15m',
      JIT_CLAIM_WINDOW: '90',
      VAULT_ADDR: 'https://vault.example:8200/',
      VAULT_ROLE_ID: 'role',
      VAULT_SECRET_ID: 'secret',
      TELEGRAM_BOT_TOKEN: '123:abc',
      TELEGRAM_CHAT_ID: '-100200',
      TELEGRAM_APPROVERS: '111, 222',
    });
    expect(c.approvalTimeoutSeconds).toBe(900);
    expect(c.claimWindowSeconds).toBe(90);
    expect(loadConfig({}).nodeLeaseSeconds).toBe(15);
    expect(loadConfig({ JIT_NODE_LEASE: '2s' }).nodeLeaseSeconds).toBe(2);
    expect(loadConfig({ JIT_NODE_LEASE: '5m' }).nodeLeaseSeconds).toBe(300);
    expect(c.vault).toEqual({ addr: 'https://vault.example:8200', auth: { kind: 'approle', roleId: 'role', secretId: 'secret', mount: 'approle' } });
    expect(c.telegram?.approvers).toEqual(['111', '222']);
  });

  it('reads JIT_PASSKEY_TIER (unset by default) and the console session timeouts, validated', () => {
    expect(loadConfig({})).toMatchObject({ passkeyTier: undefined, consoleIdleTimeoutSeconds: 1800, consoleSessionMaxSeconds: 43_200 });
    expect(loadConfig({ JIT_PASSKEY_TIER: '3', JIT_CONSOLE_IDLE_TIMEOUT: '15m', JIT_CONSOLE_SESSION_MAX: '8h' })).toMatchObject({ passkeyTier: 3, consoleIdleTimeoutSeconds: 900, consoleSessionMaxSeconds: 28_800 });
    expect(loadConfig({ JIT_PASSKEY_TIER: '' }).passkeyTier).toBeUndefined();
    for (const bad of ['0', '4', 'high', '2.5']) expect(() => loadConfig({ JIT_PASSKEY_TIER: bad })).toThrow(/^JIT_PASSKEY_TIER: must be 1, 2 or 3/);
    expect(() => loadConfig({ JIT_CONSOLE_IDLE_TIMEOUT: 'soon' })).toThrow(/^JIT_CONSOLE_IDLE_TIMEOUT: "soon" is not a duration/);
    expect(() => loadConfig({ JIT_CONSOLE_IDLE_TIMEOUT: '10s' })).toThrow(/^JIT_CONSOLE_IDLE_TIMEOUT: must be between 1m and 24h/);
    expect(() => loadConfig({ JIT_CONSOLE_SESSION_MAX: '60d' })).toThrow(/^JIT_CONSOLE_SESSION_MAX: must be between 5m and 30d/);
    expect(() => loadConfig({ JIT_CONSOLE_IDLE_TIMEOUT: '2h', JIT_CONSOLE_SESSION_MAX: '1h' })).toThrow(/^JIT_CONSOLE_IDLE_TIMEOUT: must not be longer than JIT_CONSOLE_SESSION_MAX/);
  });

  it('refuses JIT_HTTP_WORKERS, removed, pointing to several brokers on one database; an empty value passes', () => {
    expect(() => loadConfig({ JIT_HTTP_WORKERS: '2' })).toThrow(
      'JIT_HTTP_WORKERS: no longer supported (HTTP worker processes were removed): unset it, and to scale run several brokers on one database (docs/operations.md, "High availability")',
    );
    expect(() => loadConfig({ JIT_HTTP_WORKERS: '' })).not.toThrow();
  });

  it.each([
    [{ JIT_PORT: 'eighty' }, 'JIT_PORT'],
    [{ JIT_PORT: '70000' }, 'JIT_PORT'],
    [{ JIT_APPROVAL_TIMEOUT: '10 minutes' }, 'JIT_APPROVAL_TIMEOUT'],
    [{ JIT_TIER3_QUORUM: '1' }, 'JIT_TIER3_QUORUM'],
    // Removed: refused at start rather than ignored (an install that relied on it learns it runs one process now).
    [{ JIT_HTTP_WORKERS: '2' }, 'JIT_HTTP_WORKERS'],
    [{ JIT_HTTP_WORKERS: '1' }, 'JIT_HTTP_WORKERS'],
    [{ JIT_NODE_LEASE: '1s' }, 'JIT_NODE_LEASE'],
    [{ JIT_NODE_LEASE: '1h' }, 'JIT_NODE_LEASE'],
    [{ JIT_NODE_LEASE: 'long' }, 'JIT_NODE_LEASE'],
    [{ VAULT_ADDR: 'ftp://vault' }, 'VAULT_ADDR'],
    [{ VAULT_ADDR: 'http://127.0.0.1:8200' }, 'VAULT_TOKEN'],
    [{ VAULT_ADDR: 'http://127.0.0.1:8200', VAULT_ROLE_ID: 'r' }, 'VAULT_SECRET_ID'],
    [{ TELEGRAM_BOT_TOKEN: 'x' }, 'TELEGRAM_CHAT_ID'],
    [{ TELEGRAM_BOT_TOKEN: 'x', TELEGRAM_CHAT_ID: '1' }, 'TELEGRAM_APPROVERS'],
    [{ TELEGRAM_BOT_TOKEN: 'x', TELEGRAM_CHAT_ID: '1', TELEGRAM_APPROVERS: 'alice' }, 'TELEGRAM_APPROVERS'],
    [{ LOG_LEVEL: 'loud' }, 'LOG_LEVEL'],
    [{ OPENCLAW_HOOKS_URL: 'http://openclaw:s3cret@127.0.0.1:18789/hooks' }, 'OPENCLAW_HOOKS_URL'],
    [{ OPENCLAW_HOOKS_URL: 'http://127.0.0.1:18789/hooks?token=s3cret' }, 'OPENCLAW_HOOKS_URL'],
    // Recorded in service_settings and shown by the CLI: no secret may ride in it.
    [{ JIT_PUBLIC_URL: 'https://jit:s3cret@jit.example.org' }, 'JIT_PUBLIC_URL'],
    [{ JIT_PUBLIC_URL: 'https://jit.example.org/?token=s3cret' }, 'JIT_PUBLIC_URL'],
    [{ JIT_PUBLIC_URL: 'https://jit.example.org/#s3cret' }, 'JIT_PUBLIC_URL'],
  ])('names the bad variable: %o', (env, variable) => {
    let error: unknown;
    try {
      loadConfig(env);
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).variable).toBe(variable);
    expect((error as ConfigError).message.startsWith(`${variable}: `)).toBe(true);
    expect((error as ConfigError).message).not.toContain('\n');
    expect((error as ConfigError).message).not.toContain('s3cret');
  });

  it('never echoes a secret value in its error', () => {
    expect(() => loadConfig({ VAULT_ADDR: 'http://127.0.0.1:8200', VAULT_ROLE_ID: 'r', VAULT_SECRET_ID: '' })).toThrow(ConfigError);
    try {
      loadConfig({ TELEGRAM_BOT_TOKEN: 'super-secret-bot-token', TELEGRAM_CHAT_ID: '1' });
    } catch (err) {
      expect((err as Error).message).not.toContain('super-secret-bot-token');
    }
  });
});
