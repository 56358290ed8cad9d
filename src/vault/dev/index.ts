/**
 * DEVELOPMENT ONLY. An in-memory stand-in for HashiCorp Vault, like
 * `vault server -dev`: it speaks the subset of Vault's HTTP API the broker
 * uses, enforces ACLs and token lifetimes as Vault documents them, keeps
 * everything in memory, and listens on loopback only. Never point anything
 * real at it: it has no storage, no audit log and no seal.
 */
import type { AddressInfo } from 'node:net';
import { systemClock } from '../../lib/clock.ts';
import type { Clock } from '../../lib/clock.ts';
import { rfc3339 } from './duration.ts';
import { createDevVaultServer } from './server.ts';
import { DevVaultState } from './state.ts';
import type { DevAppRole, DevRequestRecord } from './state.ts';
import { newTokenId } from './token-store.ts';

export type { DevAppRole, DevRequestRecord } from './state.ts';
export { DEV_VAULT_VERSION } from './routes/sys.ts';

export interface DevVaultSeed {
  /** ACL policies by name (HCL or JSON text). */
  policies?: Record<string, string>;
  /** KV v2 secrets by `mount/path` (e.g. `homelab/docker/registry`), written as version 1. */
  kv?: Record<string, Record<string, unknown>>;
}

export interface DevVaultOptions {
  /** Loopback address to bind (default 127.0.0.1); anything else is refused. */
  host?: string;
  /** Port (default 8200; 0 picks a free one, as tests do). */
  port?: number;
  /** Root token id (default: a random `hvs.` token). */
  rootToken?: string;
  /** Time source for every TTL and timestamp (default: the system clock). */
  clock?: Clock;
  /** The AppRole `auth/approle/login` accepts. Without it, every login fails. */
  approle?: DevAppRole;
  seed?: DevVaultSeed;
  /** Default token TTL when none is requested (default 768h, as Vault's). */
  defaultLeaseTtlSeconds?: number;
  /** System maximum token TTL (default 768h, as Vault's). */
  maxLeaseTtlSeconds?: number;
}

/** A read-only view of a token, without its secret id. Test/diagnostic only. */
export interface DevTokenSnapshot {
  accessor: string;
  policies: string[];
  meta: Record<string, string> | null;
  displayName: string;
  path: string;
  orphan: boolean;
  parentAccessor: string | null;
  numUses: number;
  renewable: boolean;
  creationTime: string;
  expireTime: string | null;
  ttlSeconds: number;
  /** A response-wrapping token rather than an ordinary one. */
  wrapping: boolean;
}

export interface DevVault {
  /** Base address, e.g. `http://127.0.0.1:8200` (no trailing slash, no `/v1`). */
  url: string;
  port: number;
  rootToken: string;
  /** Stops listening and drops open connections. */
  close(): Promise<void>;
  /** Test/diagnostic only: the live tokens, secrets omitted. */
  listTokens(): DevTokenSnapshot[];
  /** Test/diagnostic only: stored ACL policy names, sorted (`root` is virtual and not listed). */
  policyNames(): string[];
  /** Test/diagnostic only: the stored text of a policy. */
  policyText(name: string): string | undefined;
  /** Test/diagnostic only: every `mount/path` KV key. */
  kvKeys(): string[];
  /** Test/diagnostic only: the last 1000 requests (method, path, status, caller accessor). */
  requests(): DevRequestRecord[];
  /** Test/diagnostic only: seal (every request but sys/health answers 503) or unseal. */
  setSealed(sealed: boolean): void;
}

const LOOPBACK = new Set(['127.0.0.1', '::1', 'localhost']);
const DEFAULT_TTL = 768 * 3600;

/**
 * Starts the development Vault and resolves once it is listening.
 * DEVELOPMENT ONLY — see the module comment.
 */
export async function startDevVault(opts: DevVaultOptions = {}): Promise<DevVault> {
  const host = opts.host ?? '127.0.0.1';
  if (!LOOPBACK.has(host)) {
    throw new Error(`the development Vault only listens on loopback (127.0.0.1, ::1, localhost), not ${host}`);
  }
  const clock = opts.clock ?? systemClock;
  const state = new DevVaultState(
    clock,
    {
      defaultTtl: opts.defaultLeaseTtlSeconds ?? DEFAULT_TTL,
      maxTtl: opts.maxLeaseTtlSeconds ?? DEFAULT_TTL,
    },
    opts.approle,
  );
  const rootToken = opts.rootToken ?? newTokenId();
  state.tokens.create({
    id: rootToken,
    policies: ['root'],
    meta: null,
    displayName: 'root',
    path: 'auth/token/root',
    creationTtl: 0,
    maxTtl: 0,
    explicitMaxTtl: 0,
    renewable: false,
  });
  for (const [name, text] of Object.entries(opts.seed?.policies ?? {})) state.putPolicy(name.toLowerCase(), text);
  for (const [key, data] of Object.entries(opts.seed?.kv ?? {})) {
    const slash = key.indexOf('/');
    if (slash <= 0 || slash === key.length - 1) throw new Error(`seed kv key must be "mount/path", got "${key}"`);
    state.kv.write(key.slice(0, slash), key.slice(slash + 1), data);
  }

  const server = createDevVaultServer(state);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 8200, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  const urlHost = host.includes(':') ? `[${host}]` : host;

  return {
    url: `http://${urlHost}:${port}`,
    port,
    rootToken,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.close((err) => (err ? reject(err) : resolve()));
        server.closeAllConnections();
      }),
    listTokens: () => {
      const all = state.tokens.all();
      return all.map((t) => ({
        accessor: t.accessor,
        policies: [...t.policies],
        meta: t.meta ? { ...t.meta } : null,
        displayName: t.displayName,
        path: t.path,
        orphan: t.parentHash === null,
        parentAccessor: all.find((p) => state.tokens.isParentOf(p, t))?.accessor ?? null,
        numUses: t.numUses,
        renewable: t.renewable && t.expireMs !== null,
        creationTime: rfc3339(t.creationMs),
        expireTime: t.expireMs === null ? null : rfc3339(t.expireMs),
        ttlSeconds: state.tokens.remainingTtl(t),
        wrapping: t.wrapped !== undefined,
      }));
    },
    policyNames: () => state.policyNames(),
    policyText: (name) => state.getPolicy(name)?.raw,
    kvKeys: () => state.kv.keys(),
    requests: () => state.requestRecords(),
    setSealed: (sealed) => {
      state.sealed = sealed;
    },
  };
}
