import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { openCliContext } from '../../../src/cli/context.ts';
import type { CliIo } from '../../../src/lib/cli-io.ts';
import { loadConfig } from '../../../src/config/config.ts';
import { readServiceSettings, recordServiceSettings } from '../../../src/config/service-settings.ts';
import { openSqliteStorage, sqliteDatabase } from '../../../src/storage/sqlite/index.ts';

let dbPath: string;
beforeEach(() => {
  dbPath = join(mkdtempSync(join(tmpdir(), 'jit-settings-unit-')), 'jit.db');
});
afterEach(() => rmSync(dirname(dbPath), { recursive: true, force: true }));

function io(env: Record<string, string>) {
  const err: string[] = [];
  const value: CliIo = { env, out: () => {}, err: (l) => err.push(l) };
  return { io: value, err };
}

const SERVICE_ENV = {
  JIT_CLAIM_WINDOW: '45m',
  JIT_APPROVAL_TIMEOUT: '20m',
  JIT_TIER3_QUORUM: '3',
  JIT_PUBLIC_URL: 'https://jit.example.net',
  JIT_POLICIES: 'policies',
  OPENCLAW_HOOKS_URL: 'http://127.0.0.1:18789/hooks',
  OPENCLAW_HOOKS_TOKEN: 'hook-token-never-recorded-91b2',
  VAULT_ADDR: 'https://broker:vault-pw-never-recorded@vault.example.net:8200/?ns=x',
  VAULT_TOKEN: 'hvs.vault-token-never-recorded',
  TELEGRAM_BOT_TOKEN: '123456:bot-token-never-recorded',
  TELEGRAM_CHAT_ID: '-100777',
  TELEGRAM_APPROVERS: '42',
};

async function recordService(env: Record<string, string> = SERVICE_ENV) {
  const storage = openSqliteStorage(dbPath);
  await recordServiceSettings(storage, loadConfig({ JIT_DB: dbPath, ...env }), 1_000, 4242);
  return storage;
}

describe('service settings', () => {
  it('are recorded without secrets, and the last start wins', async () => {
    const storage = await recordService();
    const db = sqliteDatabase(storage);
    expect(await readServiceSettings(storage)).toEqual({
      settings: {
        claim_window_seconds: 2700,
        approval_timeout_seconds: 1200,
        tier3_quorum: 3,
        passkey_tier: null,
        public_url: 'https://jit.example.net',
        policies_dir: resolve('policies'),
        openclaw_configured: true,
        dev_vault: false,
        vault_addr: 'https://vault.example.net:8200',
        telegram_configured: true,
        telegram_chat_id: '-100777',
      },
      recordedAt: 1_000,
      pid: 4242,
    });
    expect(JSON.stringify(db.prepare('SELECT * FROM service_settings').all())).not.toMatch(/never-recorded/);
    await recordServiceSettings(storage, loadConfig({ JIT_DB: dbPath }), 2_000, 4243);
    expect(await readServiceSettings(storage)).toMatchObject({
      settings: { claim_window_seconds: 600, openclaw_configured: false, dev_vault: true, vault_addr: null, telegram_configured: false, telegram_chat_id: null },
      recordedAt: 2_000,
    });
    await storage.close();
  });

  it('replace the shell\'s in a deciding CLI context; each differing variable the shell sets is named', async () => {
    await (await recordService()).close();
    const quiet = io({ JIT_DB: dbPath });
    const ctx = await openCliContext(quiet.io, { decisions: true });
    expect(ctx.config).toMatchObject({ claimWindowSeconds: 2700, approvalTimeoutSeconds: 1200, tier3Quorum: 3, publicUrl: 'https://jit.example.net', policiesDir: resolve('policies') });
    expect(Object.isFrozen(ctx.config)).toBe(true);
    ctx.close();
    expect(quiet.err).toEqual([]);

    const loud = io({ JIT_DB: dbPath, JIT_CLAIM_WINDOW: '5m', JIT_TIER3_QUORUM: '3', JIT_PUBLIC_URL: 'http://127.0.0.1:8787' });
    const ctx2 = await openCliContext(loud.io, { decisions: true });
    expect(ctx2.config.claimWindowSeconds).toBe(2700);
    ctx2.close();
    expect(loud.err).toEqual([
      "warning: JIT_CLAIM_WINDOW in this shell (300) differs from the service's (2700); the service's is used",
      "warning: JIT_PUBLIC_URL in this shell (http://127.0.0.1:8787) differs from the service's (https://jit.example.net); the service's is used",
    ]);
  });

  it("the service's JIT_PASSKEY_TIER holds for `jit approve` from any shell", async () => {
    const storage = openSqliteStorage(dbPath);
    await recordServiceSettings(storage, loadConfig({ ...SERVICE_ENV, JIT_DB: dbPath, JIT_PASSKEY_TIER: '3' }), 1_000, 4242);
    await storage.close();
    const quiet = io({ JIT_DB: dbPath });
    const ctx = await openCliContext(quiet.io, { decisions: true });
    expect(ctx.config.passkeyTier).toBe(3);
    ctx.close();
    const loud = io({ JIT_DB: dbPath, JIT_PASSKEY_TIER: '' });
    const ctx2 = await openCliContext(loud.io, { decisions: true });
    expect(ctx2.config.passkeyTier).toBe(3);
    ctx2.close();
    expect(loud.err).toEqual(["warning: JIT_PASSKEY_TIER in this shell (null) differs from the service's (3); the service's is used"]);
  });

  it('when no service recorded any, the shell\'s are used with a warning saying so', async () => {
    const { io: cli, err } = io({ JIT_DB: dbPath, JIT_CLAIM_WINDOW: '5m' });
    const ctx = await openCliContext(cli, { decisions: true });
    expect(ctx.config.claimWindowSeconds).toBe(300);
    ctx.close();
    expect(err).toHaveLength(1);
    expect(err[0]).toMatch(/^warning: no jit serve has recorded its settings in .*this decision uses this shell's JIT_CLAIM_WINDOW/);
  });

  it('commands that do not decide neither read them nor warn', async () => {
    await (await recordService()).close();
    const { io: cli, err } = io({ JIT_DB: dbPath, JIT_CLAIM_WINDOW: '5m' });
    const ctx = await openCliContext(cli);
    expect(ctx.config.claimWindowSeconds).toBe(300);
    ctx.close();
    expect(err).toEqual([]);
  });
});
