import { resolve } from 'node:path';
import { z } from 'zod';
import type { Storage } from '../storage/storage.ts';
import type { Config } from './config.ts';

/**
 * The running service's effective settings that decide what a decision does
 * (SPEC §10): recorded by `jit serve` at start, read by operator commands
 * that decide (`jit approve`, `jit deny`, revocations), so a decision made
 * from any shell on the broker host has the service's effects, not the
 * shell's. Non-secret values only: no token, no key, no URL credentials.
 *
 * Webhook targets, tokens and the public URL in a message are not taken
 * from here: the dispatcher, inside the service, resolves and renders them
 * at delivery (docs/jit-webhook-design.md §1). What must be fixed when the
 * decision is made (the claim deadline, the quorum) and where the policy
 * lives (it names each agent's webhook target) are.
 */
export const ServiceSettings = z
  .object({
    claim_window_seconds: z.number().int().positive(),
    approval_timeout_seconds: z.number().int().positive(),
    tier3_quorum: z.number().int().min(2),
    /** JIT_PASSKEY_TIER (null: none), so that `jit approve` refuses what the service would send to the console. Absent from rows of older services. */
    passkey_tier: z.number().int().min(1).max(3).nullable().optional(),
    public_url: z.string().min(1),
    /** Absolute, as the service resolved it. */
    policies_dir: z.string().min(1),
    /** Whether OPENCLAW_HOOKS_URL is set in the service (the URL itself is the dispatcher's business). */
    openclaw_configured: z.boolean(),
    /**
     * Whether the service runs the development Vault inside its own process
     * (no VAULT_ADDR): its tokens exist only while `jit serve` runs. Otherwise
     * a real Vault, at `vault_addr` (scheme, host, port and path only).
     */
    dev_vault: z.boolean(),
    vault_addr: z.string().min(1).nullable(),
    /** Whether the service has a Telegram approver bot (TELEGRAM_BOT_TOKEN), and its chat (an id, not a secret). */
    telegram_configured: z.boolean(),
    telegram_chat_id: z.string().min(1).nullable(),
  })
  .strict();
export type ServiceSettings = z.infer<typeof ServiceSettings>;

export interface RecordedSettings {
  settings: ServiceSettings;
  recordedAt: number;
  pid: number;
}

/** The settings a service with `config` works with. */
export function settingsOf(config: Config): ServiceSettings {
  return {
    claim_window_seconds: config.claimWindowSeconds,
    approval_timeout_seconds: config.approvalTimeoutSeconds,
    tier3_quorum: config.tier3Quorum,
    passkey_tier: config.passkeyTier ?? null,
    public_url: config.publicUrl,
    policies_dir: resolve(config.policiesDir),
    openclaw_configured: config.openclaw !== undefined,
    dev_vault: config.vault === undefined,
    vault_addr: config.vault ? withoutCredentials(config.vault.addr) : null,
    telegram_configured: config.telegram !== undefined,
    telegram_chat_id: config.telegram?.chatId ?? null,
  };
}

/** A URL without user:password, query or fragment: what may be recorded and shown. */
function withoutCredentials(url: string): string {
  const u = new URL(url);
  return `${u.protocol}//${u.host}${u.pathname === '/' ? '' : u.pathname}`;
}

/** Records the service's settings (one row; the last service to start wins). Called by `jit serve` at start. */
export function recordServiceSettings(storage: Storage, config: Config, now: number, pid = process.pid): Promise<void> {
  return storage.settings.recordService({ settings: JSON.stringify(settingsOf(config)), recorded_at: now, pid });
}

/**
 * The settings the service recorded, or undefined when no service of this
 * version has started on this database. Throws on a row that does not parse
 * (written by something else): deciding with guessed settings is worse.
 */
export async function readServiceSettings(storage: Storage): Promise<RecordedSettings | undefined> {
  const row = await storage.settings.readService();
  if (!row) return undefined;
  const parsed = ServiceSettings.safeParse(JSON.parse(row.settings));
  if (!parsed.success) throw new Error(`the service settings recorded in the database do not parse (${parsed.error.issues[0]?.message ?? 'invalid'}); restart jit serve to record them again`);
  return { settings: parsed.data, recordedAt: row.recorded_at, pid: row.pid };
}

/** Environment variable of each recorded setting, for messages. */
const VARIABLE: Record<Exclude<keyof ServiceSettings, 'openclaw_configured' | 'dev_vault' | 'vault_addr' | 'telegram_configured' | 'telegram_chat_id'>, string> = {
  claim_window_seconds: 'JIT_CLAIM_WINDOW',
  approval_timeout_seconds: 'JIT_APPROVAL_TIMEOUT',
  tier3_quorum: 'JIT_TIER3_QUORUM',
  passkey_tier: 'JIT_PASSKEY_TIER',
  public_url: 'JIT_PUBLIC_URL',
  policies_dir: 'JIT_POLICIES',
};

/**
 * `config` (from the shell's environment) with the service's recorded
 * settings in place of the shell's, and one line per variable whose value
 * in the shell's environment differs from the service's (set explicitly and
 * ignored: the operator should know).
 */
export function withServiceSettings(config: Config, env: Record<string, string | undefined>, recorded: ServiceSettings): { config: Config; differences: string[] } {
  const shell = settingsOf(config);
  const differences: string[] = [];
  for (const [key, variable] of Object.entries(VARIABLE) as [keyof typeof VARIABLE, string][]) {
    if (env[variable] !== undefined && recorded[key] !== undefined && shell[key] !== recorded[key]) {
      differences.push(`${variable} in this shell (${String(shell[key])}) differs from the service's (${String(recorded[key])}); the service's is used`);
    }
  }
  const merged: Config = {
    ...config,
    claimWindowSeconds: recorded.claim_window_seconds,
    approvalTimeoutSeconds: recorded.approval_timeout_seconds,
    tier3Quorum: recorded.tier3_quorum,
    passkeyTier: recorded.passkey_tier === undefined ? config.passkeyTier : (recorded.passkey_tier ?? undefined),
    publicUrl: recorded.public_url,
    policiesDir: recorded.policies_dir,
  };
  return { config: Object.freeze(merged), differences };
}
