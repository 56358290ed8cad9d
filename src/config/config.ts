import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { parseDurationSeconds } from '../lib/duration.ts';

const duration = z
  .string()
  .transform((v, ctx) => {
    const s = parseDurationSeconds(v);
    if (s === undefined) {
      ctx.addIssue({ code: 'custom', message: `"${v}" is not a duration (use seconds or 90s, 15m, 1h, 1d)` });
      return z.NEVER;
    }
    return s;
  });

const optionalText = z
  .string()
  .transform((v) => (v.trim() === '' ? undefined : v.trim()))
  .optional();

const httpUrl = z
  .string()
  .refine((v) => {
    try {
      const u = new URL(v);
      return u.protocol === 'http:' || u.protocol === 'https:';
    } catch {
      return false;
    }
  }, 'must be an http(s) URL')
  .transform((v) => v.replace(/\/+$/, ''));

/**
 * An http(s) URL that may be shown and stored (listings, logs, the
 * service_settings row the CLI reads): no user:password, query string or
 * fragment, where a secret could ride along.
 */
const shownHttpUrl = (hint: string) =>
  httpUrl.refine((v) => {
    const u = new URL(v);
    return !u.username && !u.password && !u.search && !u.hash;
  }, `must not carry user:password, a query string or a fragment; ${hint}`);

const port = z.coerce.number().int().min(0).max(65535);

/** Whether `v` is a PostgreSQL connection URL: postgres:// or postgresql://, with a host (or `?host=`, a socket directory). */
export function isPostgresUrl(v: string): boolean {
  try {
    const u = new URL(v);
    return (u.protocol === 'postgres:' || u.protocol === 'postgresql:') && (u.hostname !== '' || u.searchParams.has('host'));
  } catch {
    return false;
  }
}

/**
 * A PostgreSQL connection URL (JIT_DATABASE_URL; empty: unset). The message
 * never repeats the value: it may hold a password.
 */
const postgresUrl = z
  .string()
  .transform((v) => v.trim())
  .refine((v) => v === '' || isPostgresUrl(v), 'must be a postgres:// or postgresql:// URL with a host, such as postgres://jit:PASSWORD@db.internal:5432/jit?sslmode=verify-full (the value is not shown: it may hold a password)')
  .transform((v) => (v === '' ? undefined : v));

/**
 * A key-encryption key: standard base64 of exactly 32 bytes (`openssl rand
 * -base64 32`). The message never repeats the value.
 */
export const KeyEncryptionKeySchema = z
  .string()
  .transform((v) => v.trim())
  .refine((v) => /^[A-Za-z0-9+/]{43}=$/.test(v) && Buffer.from(v, 'base64').length === 32, 'must be base64 of exactly 32 random bytes, as printed by `openssl rand -base64 32` (the value is not shown)');

const EnvSchema = z.object({
  JIT_HOST: z.string().min(1).default('127.0.0.1'),
  JIT_PORT: port.default(8787),
  JIT_PUBLIC_URL: shownHttpUrl('it is the base of the URLs the broker hands to agents and is recorded for the CLI').optional(),
  JIT_DB: z.string().min(1).default('./data/jit.db'),
  JIT_DATABASE_URL: postgresUrl.optional(),
  JIT_POLICIES: z.string().min(1).default('./policies'),
  JIT_APPROVAL_TIMEOUT: duration.default(600),
  JIT_CLAIM_WINDOW: duration.default(600),
  JIT_TIER3_QUORUM: z.coerce.number().int().min(2).max(10).default(2),
  // Approving a request of this required tier or above needs a passkey step-up in the console (SPEC §12). Unset or empty: never.
  JIT_PASSKEY_TIER: z
    .string()
    .refine((v) => /^\s*[1-3]?\s*$/.test(v), 'must be 1, 2 or 3 (the lowest required tier whose approval needs a passkey step-up in the console; 3 is recommended), or empty for none')
    .transform((v) => (v.trim() === '' ? undefined : Number(v.trim())))
    .optional(),
  // Console sessions: signed out after this long without a request, and after JIT_CONSOLE_SESSION_MAX whatever happens.
  JIT_CONSOLE_IDLE_TIMEOUT: duration.refine((s) => s >= 60 && s <= 86_400, 'must be between 1m and 24h').default(1800),
  JIT_CONSOLE_SESSION_MAX: duration.refine((s) => s >= 300 && s <= 30 * 86_400, 'must be between 5m and 30d').default(43_200),
  JIT_RATE_PER_MINUTE: z.coerce.number().int().min(1).max(100_000).default(60),
  JIT_MAX_PENDING: z.coerce.number().int().min(1).max(10_000).default(20),
  JIT_MAX_STREAMS: z.coerce.number().int().min(1).max(10_000).default(20),
  JIT_DEV_VAULT_PORT: port.default(8200),
  // Removed (issue 19): more throughput or availability comes from several brokers on one database. Refused, not
  // ignored, so that an install relying on it learns at start that it now runs one process.
  JIT_HTTP_WORKERS: z
    .string()
    .refine((v) => v === '', 'no longer supported (HTTP worker processes were removed): unset it, and to scale run several brokers on one database (docs/operations.md, "High availability")')
    .optional(),
  // A node's lease in the database and the Telegram leader's (docs/architecture.md): renewed every third of it.
  JIT_NODE_LEASE: duration
    .refine((s) => s >= 2 && s <= 300, 'must be between 2s and 300s (a live broker renews its lease every third of it; another takes over a dead one\'s work once it lapses)')
    .default(15),
  JIT_SHARE_GRANT_POLICIES: z.enum(['true', 'false', '1', '0', '']).default('false').transform((v) => v === 'true' || v === '1'),
  VAULT_ADDR: z.union([httpUrl, z.literal('').transform(() => undefined)]).optional(),
  VAULT_TOKEN: optionalText,
  VAULT_ROLE_ID: optionalText,
  VAULT_SECRET_ID: optionalText,
  VAULT_APPROLE_MOUNT: z.string().min(1).default('approle'),
  TELEGRAM_BOT_TOKEN: optionalText,
  TELEGRAM_CHAT_ID: optionalText,
  TELEGRAM_APPROVERS: optionalText,
  TELEGRAM_API_ROOT: httpUrl.default('https://api.telegram.org'),
  TELEGRAM_WEBHOOK_SECRET: optionalText,
  // The token goes in a header (OPENCLAW_HOOKS_TOKEN), never in the URL, which is shown in listings and logs.
  OPENCLAW_HOOKS_URL: shownHttpUrl('put the token in OPENCLAW_HOOKS_TOKEN').optional(),
  OPENCLAW_HOOKS_TOKEN: optionalText,
  JIT_SIGNING_KEY: optionalText,
  JIT_KEY_ENCRYPTION_KEY: optionalText,
  JIT_KEY_ENCRYPTION_KEY_FILE: optionalText,
  JIT_KEY_ENCRYPTION_KEY_PREVIOUS: optionalText,
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  NODE_ENV: optionalText,
});

export type VaultAuth =
  | { kind: 'token'; token: string }
  | { kind: 'approle'; roleId: string; secretId: string; mount: string };

/** The broker's configuration: parsed once at start, frozen, handed out in slices. */
export interface Config {
  host: string;
  port: number;
  publicUrl: string;
  /** Whether JIT_PUBLIC_URL was set (not the default from JIT_HOST and JIT_PORT): Telegram messages then link to the console. */
  publicUrlSet: boolean;
  /** The SQLite file (and the directory of signing-keys.json); unused for the database when `databaseUrl` is set. */
  dbPath: string;
  /** PostgreSQL (JIT_DATABASE_URL) instead of SQLite: a secret (it may hold the password), never logged or shown. */
  databaseUrl: string | undefined;
  policiesDir: string;
  approvalTimeoutSeconds: number;
  claimWindowSeconds: number;
  tier3Quorum: number;
  /** JIT_PASSKEY_TIER: approving a request whose required tier is at least this needs a passkey step-up (console only); undefined: never. */
  passkeyTier: number | undefined;
  /** Seconds a console session may sit unused (JIT_CONSOLE_IDLE_TIMEOUT). */
  consoleIdleTimeoutSeconds: number;
  /** Seconds a console session lasts at most, used or not (JIT_CONSOLE_SESSION_MAX). */
  consoleSessionMaxSeconds: number;
  ratePerMinute: number;
  maxPending: number;
  /** Decision streams (GET /jit/requests/{id}/events) one agent may hold open at once, per broker process. */
  maxStreams: number;
  /** Undefined in dev mode: the development Vault is started in-process. */
  vault: { addr: string; auth: VaultAuth } | undefined;
  devVaultPort: number;
  /** One Vault policy per identical grant instead of per credential (faster; see docs/architecture.md). */
  shareGrantPolicies: boolean;
  /** Seconds: a serving broker's node lease and the Telegram leader lease (JIT_NODE_LEASE), renewed every third of it. */
  nodeLeaseSeconds: number;
  telegram:
    | { botToken: string; chatId: string; approvers: string[]; apiRoot: string; webhookSecret?: string }
    | undefined;
  openclaw: { hooksUrl: string; hooksToken?: string } | undefined;
  signingKey?: string;
  /**
   * The key-encryption key that seals the signing keys kept in PostgreSQL
   * (JIT_KEY_ENCRYPTION_KEY, or read from JIT_KEY_ENCRYPTION_KEY_FILE):
   * base64 of 32 bytes, validated. A secret: never logged or shown.
   * Unused with SQLite (the keys stay in their file).
   */
  keyEncryptionKey?: string;
  /** JIT_KEY_ENCRYPTION_KEY_PREVIOUS: the KEK being replaced; a ring still sealed under it is re-sealed under the new one at start. */
  previousKeyEncryptionKey?: string;
  logLevel: z.infer<typeof EnvSchema>['LOG_LEVEL'];
  /** NODE_ENV=production (the systemd unit and the container image set it): dev mode refuses to start. */
  production: boolean;
}

export class ConfigError extends Error {
  constructor(readonly variable: string, detail: string) {
    super(`${variable}: ${detail}`);
    this.name = 'ConfigError';
  }
}

/**
 * Parses the environment into a frozen Config. Throws ConfigError naming the
 * first bad variable; the caller prints its message as one line and exits.
 */
export function loadConfig(env: Record<string, string | undefined>): Config {
  const relevant = Object.fromEntries(
    Object.keys(EnvSchema.shape).flatMap((k) => (env[k] === undefined ? [] : [[k, env[k]]])),
  );
  const parsed = EnvSchema.safeParse(relevant);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new ConfigError(String(issue.path[0] ?? 'environment'), issue.message);
  }
  const e = parsed.data;

  let vault: Config['vault'];
  if (e.VAULT_ADDR) {
    if (e.VAULT_ROLE_ID || e.VAULT_SECRET_ID) {
      if (!e.VAULT_ROLE_ID || !e.VAULT_SECRET_ID) {
        throw new ConfigError(e.VAULT_ROLE_ID ? 'VAULT_SECRET_ID' : 'VAULT_ROLE_ID', 'AppRole needs both VAULT_ROLE_ID and VAULT_SECRET_ID');
      }
      vault = { addr: e.VAULT_ADDR, auth: { kind: 'approle', roleId: e.VAULT_ROLE_ID, secretId: e.VAULT_SECRET_ID, mount: e.VAULT_APPROLE_MOUNT } };
    } else if (e.VAULT_TOKEN) {
      vault = { addr: e.VAULT_ADDR, auth: { kind: 'token', token: e.VAULT_TOKEN } };
    } else {
      throw new ConfigError('VAULT_TOKEN', 'VAULT_ADDR is set, so set VAULT_TOKEN or VAULT_ROLE_ID and VAULT_SECRET_ID');
    }
  }

  let telegram: Config['telegram'];
  if (e.TELEGRAM_BOT_TOKEN) {
    if (!e.TELEGRAM_CHAT_ID) throw new ConfigError('TELEGRAM_CHAT_ID', 'required when TELEGRAM_BOT_TOKEN is set');
    const approvers = (e.TELEGRAM_APPROVERS ?? '').split(',').map((s) => s.trim()).filter(Boolean);
    if (approvers.length === 0) throw new ConfigError('TELEGRAM_APPROVERS', 'list at least one Telegram user id when TELEGRAM_BOT_TOKEN is set');
    const bad = approvers.find((a) => !/^\d{1,20}$/.test(a));
    if (bad !== undefined) throw new ConfigError('TELEGRAM_APPROVERS', `"${bad}" is not a numeric Telegram user id`);
    telegram = {
      botToken: e.TELEGRAM_BOT_TOKEN,
      chatId: e.TELEGRAM_CHAT_ID,
      approvers,
      apiRoot: e.TELEGRAM_API_ROOT,
      ...(e.TELEGRAM_WEBHOOK_SECRET ? { webhookSecret: e.TELEGRAM_WEBHOOK_SECRET } : {}),
    };
  }

  if (e.JIT_CONSOLE_IDLE_TIMEOUT > e.JIT_CONSOLE_SESSION_MAX) {
    throw new ConfigError('JIT_CONSOLE_IDLE_TIMEOUT', `must not be longer than JIT_CONSOLE_SESSION_MAX (${e.JIT_CONSOLE_SESSION_MAX}s)`);
  }

  const keyEncryptionKey = readKeyEncryptionKey(e.JIT_KEY_ENCRYPTION_KEY, e.JIT_KEY_ENCRYPTION_KEY_FILE);
  let previousKeyEncryptionKey: string | undefined;
  if (e.JIT_KEY_ENCRYPTION_KEY_PREVIOUS !== undefined) {
    const parsed = KeyEncryptionKeySchema.safeParse(e.JIT_KEY_ENCRYPTION_KEY_PREVIOUS);
    if (!parsed.success) throw new ConfigError('JIT_KEY_ENCRYPTION_KEY_PREVIOUS', parsed.error.issues[0]!.message);
    if (!keyEncryptionKey) throw new ConfigError('JIT_KEY_ENCRYPTION_KEY_PREVIOUS', 'set only beside the new JIT_KEY_ENCRYPTION_KEY (or JIT_KEY_ENCRYPTION_KEY_FILE), while replacing it');
    previousKeyEncryptionKey = parsed.data;
  }

  const publicUrl = e.JIT_PUBLIC_URL ?? defaultPublicUrl(e.JIT_HOST, e.JIT_PORT, !vault);

  const config: Config = {
    host: e.JIT_HOST,
    port: e.JIT_PORT,
    publicUrl,
    publicUrlSet: e.JIT_PUBLIC_URL !== undefined,
    dbPath: e.JIT_DB,
    databaseUrl: e.JIT_DATABASE_URL,
    policiesDir: e.JIT_POLICIES,
    approvalTimeoutSeconds: e.JIT_APPROVAL_TIMEOUT,
    claimWindowSeconds: e.JIT_CLAIM_WINDOW,
    tier3Quorum: e.JIT_TIER3_QUORUM,
    passkeyTier: e.JIT_PASSKEY_TIER,
    consoleIdleTimeoutSeconds: e.JIT_CONSOLE_IDLE_TIMEOUT,
    consoleSessionMaxSeconds: e.JIT_CONSOLE_SESSION_MAX,
    ratePerMinute: e.JIT_RATE_PER_MINUTE,
    maxPending: e.JIT_MAX_PENDING,
    maxStreams: e.JIT_MAX_STREAMS,
    vault,
    devVaultPort: e.JIT_DEV_VAULT_PORT,
    shareGrantPolicies: e.JIT_SHARE_GRANT_POLICIES,
    nodeLeaseSeconds: e.JIT_NODE_LEASE,
    telegram,
    openclaw: e.OPENCLAW_HOOKS_URL
      ? { hooksUrl: e.OPENCLAW_HOOKS_URL, ...(e.OPENCLAW_HOOKS_TOKEN ? { hooksToken: e.OPENCLAW_HOOKS_TOKEN } : {}) }
      : undefined,
    ...(e.JIT_SIGNING_KEY ? { signingKey: e.JIT_SIGNING_KEY } : {}),
    ...(keyEncryptionKey ? { keyEncryptionKey } : {}),
    ...(previousKeyEncryptionKey ? { previousKeyEncryptionKey } : {}),
    logLevel: e.LOG_LEVEL,
    production: e.NODE_ENV?.toLowerCase() === 'production',
  };
  return deepFreeze(config);
}

/** Host names of the loopback interface (IPv6 literals bare, as JIT_HOST spells them). */
const LOOPBACK_HOSTS = new Set(['127.0.0.1', '::1', 'localhost']);

/**
 * The public URL when JIT_PUBLIC_URL is unset: the listening address. In dev
 * mode (no VAULT_ADDR) on a loopback address it is `http://localhost:PORT`
 * instead, because the console's passkeys need a host name (WebAuthn refuses
 * an IP address as the relying party) and browsers treat localhost as a
 * secure context.
 */
function defaultPublicUrl(host: string, port: number, devMode: boolean): string {
  if (devMode && LOOPBACK_HOSTS.has(host)) return `http://localhost:${port}`;
  return `http://${host.includes(':') ? `[${host}]` : host}:${port}`;
}

/** JIT_KEY_ENCRYPTION_KEY, or the content of JIT_KEY_ENCRYPTION_KEY_FILE, validated; one of them at most. */
function readKeyEncryptionKey(value: string | undefined, file: string | undefined): string | undefined {
  if (value !== undefined && file !== undefined) {
    throw new ConfigError('JIT_KEY_ENCRYPTION_KEY', 'set either JIT_KEY_ENCRYPTION_KEY or JIT_KEY_ENCRYPTION_KEY_FILE, not both');
  }
  let text = value;
  const variable = file !== undefined ? 'JIT_KEY_ENCRYPTION_KEY_FILE' : 'JIT_KEY_ENCRYPTION_KEY';
  if (file !== undefined) {
    try {
      text = readFileSync(file, 'utf8');
    } catch (err) {
      throw new ConfigError(variable, `cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
  }
  if (text === undefined) return undefined;
  const parsed = KeyEncryptionKeySchema.safeParse(text);
  if (!parsed.success) throw new ConfigError(variable, `${file !== undefined ? `${file}: ` : ''}${parsed.error.issues[0]!.message}`);
  return parsed.data;
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object') {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}
