import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Agent } from '../../../src/broker/agents.ts';
import type { BrokerDeps } from '../../../src/broker/deps.ts';
import { PolicyStore } from '../../../src/broker/policy/index.ts';
import { requestCredential } from '../../../src/broker/request-credential.ts';
import { CredentialRequestBody } from '../../../src/wire/schemas.ts';
import { loadConfig, type Config } from '../../../src/config/config.ts';
import { createDeps } from '../../../src/create-deps.ts';
import type { Storage } from '../../../src/storage/storage.ts';
import { ManualClock } from '../../../src/lib/clock.ts';
import { createApprovalBot, type ApprovalBot, type ApprovalBotOptions } from '../../../src/telegram/index.ts';
import { startDevVault } from '../../../src/vault/dev/index.ts';
import { createVaultClient } from '../../../src/vault/node-vault-client.ts';
import type { VaultClient } from '../../../src/vault/types.ts';
import { startTelegramEmulator, type TelegramEmulator, type TgMessage } from '../../fakes/telegram-emulator/index.ts';
import { openSqliteStorage, sqliteDatabase } from '../../../src/storage/sqlite/index.ts';
import { captureLogger } from '../../helpers/log-capture.ts';

export const CHAT_ID = -1001234567890;
export const ALICE = 111;
export const BOB = 222;
export const CAROL = 333;
export const MALLORY = 999;
export const BOT_TOKEN = '7000000001:AAH-telegram-test-token_0123456789abcdefXYZ';

export const POLICY = `
agents:
  moltbot:
    sessions: ["hook:jit:moltbot*"]
    default_session: "hook:jit:moltbot"
rules:
  - name: docker-read
    agents: [moltbot]
    resource: vault
    paths: ["homelab/data/docker/*"]
    capabilities: [read, list]
    tier: 1
    max_ttl: 1h
  - name: homelab-write
    agents: [moltbot]
    resource: vault
    paths: ["homelab/data/*"]
    capabilities: [read, create, update]
    tier: 2
    max_ttl: 30m
  - name: prod-delete
    agents: [moltbot]
    resource: vault
    paths: ["homelab/data/prod/*"]
    capabilities: [delete]
    tier: 3
    max_ttl: 10m
deny:
  - paths: ["sys/*", "auth/*"]
`;

const ROOT_TOKEN = 'hvs.telegram-test-root-token';

/** Fast settings for tests: short polls, short back-offs, quick sync. */
export const FAST: Partial<ApprovalBotOptions> = {
  syncIntervalMs: 200,
  pollTimeoutSeconds: 1,
  callTimeoutSeconds: 3,
  restartDelayMs: 100,
  errorBackoffMs: 100,
  retry: { maxAttempts: 2, maxRetryAfterSeconds: 0, baseDelayMs: 50 },
};

export interface TelegramTestEnv {
  emu: TelegramEmulator;
  clock: ManualClock;
  config: Config;
  deps: BrokerDeps;
  vault: VaultClient;
  agent: Agent;
  dbPath: string;
  logs(): string;
  /** Another BrokerDeps on its own connection to the same database file (a second broker process). */
  secondDeps(): BrokerDeps;
  /** Creates (and by default starts) a bot; stopped by close(). */
  bot(o?: Partial<ApprovalBotOptions> & { deps?: BrokerDeps; start?: boolean }): Promise<ApprovalBot>;
  /** A tier-2 (or whatever the body says) request through the real verb; returns its id. */
  request(body?: Record<string, unknown>): Promise<string>;
  /** The bot's message about a request, as the chat shows it now. */
  messageFor(requestId: string): TgMessage | undefined;
  /** Waits until the bot's message about a request satisfies `pred`. */
  waitMessage(requestId: string, pred?: (m: TgMessage) => boolean, what?: string): Promise<TgMessage>;
  close(): Promise<void>;
}

export const TIER2_BODY = {
  resource: 'vault',
  tier: 2,
  reason: 'rotate the web app key',
  vault_paths: [{ path: 'homelab/data/apps/web', capabilities: ['read', 'update'] }],
};

export const TIER3_BODY = {
  resource: 'vault',
  tier: 3,
  reason: 'delete the retired prod database password',
  vault_paths: [{ path: 'homelab/data/prod/db', capabilities: ['delete'] }],
};

export async function startTelegramEnv(o: { env?: Record<string, string>; emulator?: Parameters<typeof startTelegramEmulator>[0] } = {}): Promise<TelegramTestEnv> {
  const clock = new ManualClock(Date.now());
  const emu = await startTelegramEmulator({
    token: BOT_TOKEN,
    chats: [{ id: CHAT_ID, type: 'supergroup', title: 'Homelab approvals' }],
    users: [
      { id: ALICE, first_name: 'Alice', username: 'alice' },
      { id: BOB, first_name: 'Bob' },
      { id: CAROL, first_name: 'Carol' },
      { id: MALLORY, first_name: 'Mallory', username: 'mallory' },
    ],
    webhookRetryMs: 100,
    ...o.emulator,
  });
  const devVault = await startDevVault({ host: '127.0.0.1', port: 0, rootToken: ROOT_TOKEN, clock });
  const dir = mkdtempSync(join(tmpdir(), 'jit-telegram-test-'));
  const policiesDir = join(dir, 'policies');
  mkdirSync(policiesDir);
  writeFileSync(join(policiesDir, 'test.yaml'), POLICY);
  const dbPath = join(dir, 'jit.db');
  const config = loadConfig({
    JIT_DB: dbPath,
    JIT_POLICIES: policiesDir,
    JIT_PUBLIC_URL: 'http://127.0.0.1:1',
    VAULT_ADDR: devVault.url,
    VAULT_TOKEN: ROOT_TOKEN,
    TELEGRAM_BOT_TOKEN: BOT_TOKEN,
    TELEGRAM_CHAT_ID: String(CHAT_ID),
    TELEGRAM_APPROVERS: `${ALICE},${BOB},${CAROL}`,
    TELEGRAM_API_ROOT: emu.url,
    ...o.env,
  });
  const { log, text: logText } = captureLogger();
  const policies = new PolicyStore();
  const loaded = policies.reload(policiesDir);
  if (!loaded.ok) throw new Error(JSON.stringify(loaded.problems));
  const vault = createVaultClient({ endpoint: devVault.url, token: ROOT_TOKEN }, { clock });
  await vault.start();

  const dbs: Storage[] = [];
  const makeDeps = () => {
    const storage = openSqliteStorage(dbPath);
    dbs.push(storage);
    return createDeps({ config, storage, vault, policies, log, clock });
  };
  const deps = makeDeps();
  const { agent } = await deps.agents.add('moltbot');
  const bots: ApprovalBot[] = [];

  const messageFor = (requestId: string) => emu.botMessages(CHAT_ID).find((m) => m.text?.includes(requestId));

  return {
    emu,
    clock,
    config,
    deps,
    vault,
    agent,
    dbPath,
    logs: logText,
    secondDeps: makeDeps,
    async bot(opts = {}) {
      const { deps: d, start, ...rest } = opts;
      const bot = createApprovalBot({ deps: d ?? deps, ...FAST, ...rest });
      bots.push(bot);
      if (start !== false) {
        await bot.start();
        await bot.ready;
      }
      return bot;
    },
    async request(body = TIER2_BODY) {
      const outcome = await requestCredential(deps, agent, CredentialRequestBody.parse(body));
      return outcome.body.id as string;
    },
    messageFor,
    waitMessage(requestId, pred = () => true, what = 'the approval message') {
      return emu.waitFor(() => {
        const m = messageFor(requestId);
        return m && pred(m) ? m : undefined;
      }, 5_000, `${what} of ${requestId}`);
    },
    async close() {
      for (const b of bots) await b.stop();
      await emu.close();
      vault.stop();
      await devVault.close();
      for (const storage of dbs) await storage.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** The buttons' callback data of a message. */
export const buttonsOf = (m: TgMessage | undefined) => (m?.reply_markup?.inline_keyboard.flat() ?? []).map((b) => b.callback_data);

/** Waits until the emulator recorded `n` callback answers. */
export const waitAnswers = (emu: TelegramEmulator, n: number) =>
  emu.waitFor(() => (emu.callbackAnswers().length >= n ? emu.callbackAnswers() : undefined), 5_000, `${n} callback answers`);

/** Taps a button under a message, waits for the bot's answer to it and for the chat to be brought up to date. */
export async function tapAndAnswer(t: TelegramTestEnv, bot: ApprovalBot, user: number, messageId: number, data: string, o: { force?: boolean; chatId?: number } = {}) {
  const n = t.emu.callbackAnswers().length + 1;
  t.emu.tap(user, messageId, data, o);
  const answer = (await waitAnswers(t.emu, n))[n - 1]!;
  await bot.kick();
  return answer;
}

/** The callback data of the button whose text contains `label`. */
export function buttonData(m: TgMessage, label: string): string {
  const b = (m.reply_markup?.inline_keyboard.flat() ?? []).find((x) => x.text.includes(label));
  if (!b?.callback_data) throw new Error(`no button "${label}" in ${JSON.stringify(m.reply_markup?.inline_keyboard.flat().map((x) => x.text))}`);
  return b.callback_data;
}

/** Audit entries of one event, oldest first, with their data parsed. */
export const auditEntries = (deps: BrokerDeps, event: string) =>
  (sqliteDatabase(deps.storage).prepare('SELECT actor, request_id, data FROM audit_log WHERE event = ? ORDER BY seq').all(event) as { actor: string; request_id: string; data: string }[]).map((r) => ({
    ...r,
    data: JSON.parse(r.data) as Record<string, unknown>,
  }));
