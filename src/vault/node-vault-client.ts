import NodeVault from 'node-vault';
import { systemClock } from '../lib/clock.ts';
import type { Clock } from '../lib/clock.ts';
import { VaultError, toVaultError } from './errors.ts';
import { createHttpTransport } from './http-transport.ts';
import { AppRoleTokenSource, StaticTokenSource } from './token-source.ts';
import type { TokenSource, TokenSourceTransport, VaultLogger } from './token-source.ts';
import type {
  CreateTokenRequest,
  CreatedToken,
  TokenInfo,
  VaultClient,
  VaultClientConfig,
  VaultHealth,
  WrapInfo,
} from './types.ts';

export type { VaultLogger } from './token-source.ts';

export interface VaultClientOptions {
  /** Time source for renewal decisions (default: the system clock). */
  clock?: Clock;
  log?: VaultLogger;
}

const DEFAULT_TIMEOUT_MS = 5_000;
const silentLog: VaultLogger = { info: () => {}, warn: () => {} };

type Body = Record<string, unknown>;

function obj(v: unknown): Body {
  return v && typeof v === 'object' && !Array.isArray(v) ? (v as Body) : {};
}

function stringArray(v: unknown): string[] {
  return Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : [];
}

function stringMap(v: unknown): Record<string, string> | null {
  if (!v || typeof v !== 'object') return null;
  return Object.fromEntries(Object.entries(v).filter((e): e is [string, string] => typeof e[1] === 'string'));
}

function num(v: unknown): number {
  return typeof v === 'number' && Number.isFinite(v) ? v : 0;
}

/** Vault's answer to an accessor it does not know (or no longer knows). */
function isUnknownAccessor(err: VaultError): boolean {
  // Vault's own text: it answers an unknown accessor with a bare 400 and no error code.
  return err.kind === 'not_found' || (err.kind === 'bad_request' && err.vaultErrors.some((m) => /invalid accessor/i.test(m)));
}

/** Resolves a 404 (policy or secret absent) to `fallback`; rethrows anything else. */
async function unlessNotFound<T>(call: Promise<T>, fallback: T): Promise<T> {
  try {
    return await call;
  } catch (err) {
    if (err instanceof VaultError && err.kind === 'not_found') return fallback;
    throw err;
  }
}

function checkConfig(config: VaultClientConfig): void {
  if (!config.endpoint) throw new VaultError('bad_request', 'Vault endpoint is not configured');
  const approle = Boolean(config.roleId || config.secretId);
  if (approle && !(config.roleId && config.secretId)) {
    throw new VaultError('bad_request', 'AppRole needs both a role id and a secret id');
  }
  if (!approle && !config.token) throw new VaultError('bad_request', 'Vault needs a token or AppRole credentials');
}

/**
 * The broker's Vault client over node-vault 0.12.
 *
 * node-vault traps avoided here (docs/vault.md): lists go out as
 * `GET …?list=1` (`noCustomHTTPVerbs`); the broker's token is sent as an
 * explicit per-request header and never through the constructor's
 * `requestOptions.headers` (which would freeze the first token); agent tokens
 * are minted with `vault.write('auth/token/create-orphan')`, never with the
 * `tokenCreate*` helpers that overwrite the client's own token. Requests go
 * through node-vault's `'request-promise'` transport option over
 * node:http(s) with keep-alive (http-transport.ts), not its default axios
 * stack; stop() closes the pooled sockets. Every failure is a
 * {@link VaultError}; requests time out after 5 s by default.
 */
export function createVaultClient(config: VaultClientConfig, opts: VaultClientOptions = {}): VaultClient {
  checkConfig(config);
  const log = opts.log ?? silentLog;
  const timeoutMs = config.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const http = createHttpTransport({ timeoutMs });
  const vault = NodeVault({
    endpoint: config.endpoint,
    apiVersion: 'v1',
    noCustomHTTPVerbs: true,
    requestOptions: { timeout: timeoutMs },
    'request-promise': http,
  });
  // Never fall back to VAULT_TOKEN from the environment: the token is
  // always passed per request by the token source below.
  vault.token = '';

  const headers = (token: string | undefined, extra: Record<string, string> = {}) => ({
    headers: token ? { ...extra, 'X-Vault-Token': token } : { ...extra },
  });
  const transport: TokenSourceTransport = {
    read: (path, token) => vault.read(path, headers(token)),
    write: (path, data, token) => vault.write(path, data, headers(token)),
  };
  const source: TokenSource = config.token
    ? new StaticTokenSource(config.token)
    : new AppRoleTokenSource(
        transport,
        { roleId: config.roleId!, secretId: config.secretId!, mount: config.approleMount ?? 'approle' },
        opts.clock ?? systemClock,
        log,
      );

  /** Runs `fn` with the broker's token; after a 403 from a dead token, logs in again and retries once. */
  async function withToken<T>(operation: string, fn: (token: string) => Promise<T>): Promise<T> {
    let token: string;
    try {
      token = await source.current();
    } catch (err) {
      throw toVaultError(err, operation);
    }
    try {
      return await fn(token);
    } catch (err) {
      const ve = toVaultError(err, operation);
      if (ve.kind !== 'permission_denied' || !(await source.recover().catch(() => false))) throw ve;
    }
    try {
      return await fn(await source.current());
    } catch (err) {
      throw toVaultError(err, operation);
    }
  }

  const warn = (operation: string, resp: unknown, expected: (w: string) => boolean = () => false) => {
    const warnings = stringArray(obj(resp)['warnings']).filter((w) => !expected(w));
    if (warnings.length > 0) log.warn({ operation, warnings }, 'vault: request succeeded with warnings');
  };

  const policyPath = (name: string) => {
    if (!name || name.includes('/')) throw new VaultError('bad_request', `invalid policy name "${name}"`);
    return `sys/policies/acl/${encodeURIComponent(name)}`;
  };

  return {
    async health(): Promise<VaultHealth> {
      let body: Body;
      try {
        // node-vault resolves sys/health whatever the status (sealed → 503).
        body = obj(await vault.read('sys/health?standbyok=true&perfstandbyok=true', headers(undefined)));
      } catch (err) {
        throw toVaultError(err, 'health');
      }
      if (typeof body['sealed'] !== 'boolean') throw new VaultError('server', 'Vault health failed: unexpected response');
      return {
        initialized: body['initialized'] === true,
        sealed: body['sealed'],
        standby: body['standby'] === true,
        ...(typeof body['version'] === 'string' ? { version: body['version'] } : {}),
      };
    },

    async writePolicy(name, policy) {
      const path = policyPath(name);
      const resp = await withToken('write policy', (t) => vault.write(path, { policy }, headers(t)));
      warn('write policy', resp);
    },

    async deletePolicy(name) {
      const path = policyPath(name);
      await unlessNotFound(withToken('delete policy', (t) => vault.delete(path, headers(t))), undefined);
    },

    async listPolicies() {
      // Vault answers an empty list with 404.
      const resp = await unlessNotFound(withToken('list policies', (t) => vault.list('sys/policies/acl', headers(t))), null);
      return stringArray(obj(obj(resp)['data'])['keys']);
    },

    async readPolicy(name) {
      const path = policyPath(name);
      const found = await unlessNotFound(withToken('read policy', (t) => vault.read(path, headers(t))), null);
      if (found === null) return null;
      const resp = obj(found);
      const data = obj(resp['data']);
      const text = data['policy'] ?? data['rules'] ?? resp['policy'] ?? resp['rules'];
      return typeof text === 'string' ? text : '';
    },

    async createOrphanToken(req: CreateTokenRequest): Promise<CreatedToken> {
      if (!Number.isSafeInteger(req.ttlSeconds) || req.ttlSeconds <= 0) {
        throw new VaultError('bad_request', 'token TTL must be a positive whole number of seconds');
      }
      const body: Body = {
        policies: req.policies,
        ttl: `${req.ttlSeconds}s`,
        explicit_max_ttl: `${req.ttlSeconds}s`,
        renewable: false,
        meta: req.meta,
        display_name: req.displayName,
      };
      if (req.numUses !== undefined) body['num_uses'] = req.numUses;
      if (req.noDefaultPolicy) body['no_default_policy'] = true;
      // vault.write, not tokenCreateOrphan: the helper would make the new
      // token the client's own.
      const resp = await withToken('create token', (t) => vault.write('auth/token/create-orphan', body, headers(t)));
      const writing = new Set(req.policiesBeingWritten ?? []);
      warn('create token', resp, (w) => {
        // Vault's own text: its warnings carry no code.
        const missing = /^Policy "(.+)" does not exist$/.exec(w);
        return missing !== null && writing.has(missing[1]!);
      });
      const auth = obj(obj(resp)['auth']);
      if (typeof auth['client_token'] !== 'string' || typeof auth['accessor'] !== 'string') {
        throw new VaultError('server', 'Vault create token failed: response carries no auth block');
      }
      return {
        token: auth['client_token'],
        accessor: auth['accessor'],
        policies: stringArray(auth['policies']),
        leaseDurationSeconds: num(auth['lease_duration']),
      };
    },

    async lookupAccessor(accessor): Promise<TokenInfo | null> {
      let resp: unknown;
      try {
        resp = await withToken('lookup accessor', (t) => vault.write('auth/token/lookup-accessor', { accessor }, headers(t)));
      } catch (err) {
        if (err instanceof VaultError && isUnknownAccessor(err)) return null;
        throw err;
      }
      const d = obj(obj(resp)['data']);
      return {
        accessor: typeof d['accessor'] === 'string' ? d['accessor'] : accessor,
        policies: stringArray(d['policies']),
        meta: stringMap(d['meta']),
        ttlSeconds: num(d['ttl']),
        expireTime: typeof d['expire_time'] === 'string' ? d['expire_time'] : null,
        orphan: d['orphan'] === true,
        renewable: d['renewable'] === true,
        numUses: num(d['num_uses']),
      };
    },

    async revokeAccessor(accessor) {
      try {
        await withToken('revoke accessor', (t) => vault.write('auth/token/revoke-accessor', { accessor }, headers(t)));
      } catch (err) {
        // Already gone is what we wanted (older Vaults say 400 "invalid accessor").
        if (!(err instanceof VaultError && isUnknownAccessor(err))) throw err;
      }
    },

    async wrap(data, ttlSeconds): Promise<WrapInfo> {
      if (!Number.isSafeInteger(ttlSeconds) || ttlSeconds <= 0) {
        throw new VaultError('bad_request', 'wrap TTL must be a positive whole number of seconds');
      }
      const resp = await withToken('wrap', (t) =>
        vault.write('sys/wrapping/wrap', data, headers(t, { 'X-Vault-Wrap-TTL': `${ttlSeconds}s` })),
      );
      const info = obj(obj(resp)['wrap_info']);
      if (typeof info['token'] !== 'string') throw new VaultError('server', 'Vault wrap failed: response carries no wrap_info');
      return {
        token: info['token'],
        accessor: typeof info['accessor'] === 'string' ? info['accessor'] : '',
        ttlSeconds: num(info['ttl']),
        creationTime: typeof info['creation_time'] === 'string' ? info['creation_time'] : '',
      };
    },

    async unwrap(wrappingToken) {
      let resp: Body;
      try {
        // Authenticate as the wrapping token itself: it carries the right to
        // unwrap, so the broker's own policy needs nothing for this.
        resp = obj(await vault.write('sys/wrapping/unwrap', {}, headers(wrappingToken)));
      } catch (err) {
        throw toVaultError(err, 'unwrap');
      }
      if (resp['data'] && typeof resp['data'] === 'object') return obj(resp['data']);
      if (resp['auth'] && typeof resp['auth'] === 'object') return { auth: resp['auth'] };
      return {};
    },

    start: () =>
      source.start().catch((err: unknown) => {
        throw toVaultError(err, 'login');
      }),
    stop: () => {
      source.stop();
      http.close();
    },
  };
}
