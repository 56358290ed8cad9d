import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { addApprover, removeApprover } from '../../src/broker/approvers.ts';
import type { CliIo } from '../../src/lib/cli-io.ts';
import { runCli } from '../../src/cli/main.ts';
import { ManualClock } from '../../src/lib/clock.ts';
import { startBroker, type RunningBroker, type StartOptions } from '../../src/main.ts';
import { startDevVault } from '../../src/vault/dev/index.ts';
import { startTelegramEmulator, type TelegramEmulator } from '../fakes/telegram-emulator/index.ts';
import { ROOT_TOKEN, TEST_POLICY } from './broker-harness.ts';
import { freePort } from './net.ts';
import { postgresSchemas } from './postgres.ts';
import { captureLogger } from './log-capture.ts';

/*
 * The whole broker in-process for the console's browser tests: real
 * PostgreSQL (a schema of one database per test file), the development Vault
 * over HTTP, optionally the Telegram emulator, and a manual clock (the
 * enrolment link's expiry is driven, not waited for). It listens on
 * 127.0.0.1 and its public URL is http://localhost:PORT: the passkeys'
 * relying party must be a host name, and http://localhost is a secure
 * context for WebAuthn.
 */

export const TG_CHAT = -100424242;
export const TG_BOT_TOKEN = '7000000020:AAH-console-browser-token_abcdefghijkl';
/** Telegram users of the emulator: BOB is in TELEGRAM_APPROVERS (a Telegram-only approver). */
export const TG_BOB = 222;
export const TG_MALLORY = 999;

const schemas = postgresSchemas('jit_console');

export interface ConsoleBroker {
  broker: RunningBroker;
  clock: ManualClock;
  /** http://localhost:PORT: what the browser opens (JIT_PUBLIC_URL). */
  url: string;
  /** The environment the broker was started with (and `jit` commands get). */
  env: Record<string, string>;
  tg: TelegramEmulator | undefined;
  logs(): string;
  /** An agent's bearer token. */
  addAgent(name: string): Promise<string>;
  /** POST /jit/request as the agent: the new request's id (the body must not be tier 1). */
  request(agentToken: string, body: unknown): Promise<string>;
  /** `jit approver add NAME [--telegram-id ID]`, in-process against the same database: the enrolment link (stdout's last line). */
  approverAddCli(name: string, telegramId?: string): Promise<string>;
  /** The addApprover verb: the enrolment link. */
  addApprover(name: string, telegramId?: string): Promise<string>;
  removeApprover(name: string): Promise<void>;
  close(): Promise<void>;
}

export async function startConsoleBroker(o: { env?: Record<string, string>; telegram?: boolean; policy?: string } = {}): Promise<ConsoleBroker> {
  const clock = new ManualClock(Date.now());
  const devVault = await startDevVault({ host: '127.0.0.1', port: 0, rootToken: ROOT_TOKEN, clock });
  const tg = o.telegram
    ? await startTelegramEmulator({
        token: TG_BOT_TOKEN,
        chats: [{ id: TG_CHAT, type: 'supergroup', title: 'approvals' }],
        users: [
          { id: TG_BOB, first_name: 'Bob' },
          { id: TG_MALLORY, first_name: 'Mallory' },
        ],
        maxLongPollSeconds: 1,
      })
    : undefined;
  const dir = mkdtempSync(join(tmpdir(), 'jit-console-browser-'));
  const policiesDir = join(dir, 'policies');
  mkdirSync(policiesDir);
  writeFileSync(join(policiesDir, 'test.yaml'), o.policy ?? TEST_POLICY);
  const port = await freePort();
  const url = `http://localhost:${port}`;
  const env: Record<string, string> = {
    JIT_HOST: '127.0.0.1',
    JIT_PORT: String(port),
    JIT_PUBLIC_URL: url,
    JIT_DATABASE_URL: await schemas(),
    JIT_KEY_ENCRYPTION_KEY: randomBytes(32).toString('base64'),
    JIT_POLICIES: policiesDir,
    VAULT_ADDR: devVault.url,
    VAULT_TOKEN: ROOT_TOKEN,
    ...(tg
      ? { TELEGRAM_BOT_TOKEN: TG_BOT_TOKEN, TELEGRAM_CHAT_ID: String(TG_CHAT), TELEGRAM_APPROVERS: String(TG_BOB), TELEGRAM_API_ROOT: tg.url }
      : {}),
    ...o.env,
  };
  const captured = captureLogger();
  const start: StartOptions = {
    clock,
    log: captured.log,
    sweepIntervalMs: 3_600_000,
    ...(tg ? { telegram: { syncIntervalMs: 200, pollTimeoutSeconds: 1, callTimeoutSeconds: 5, errorBackoffMs: 50, restartDelayMs: 100 } } : {}),
  };
  const broker = await startBroker(env, start);
  const deps = broker.deps;
  const LINK = /\/console\/enrol\/[A-Za-z0-9_-]{16,}$/;

  return {
    broker,
    clock,
    url,
    env,
    tg,
    logs: captured.text,
    addAgent: async (name) => (await deps.agents.add(name)).token,
    async request(agentToken, body) {
      const res = await fetch(`${broker.url}/jit/request`, {
        method: 'POST',
        headers: { authorization: `Bearer ${agentToken}`, 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });
      const json = (await res.json()) as { id?: string; status?: string };
      if (res.status !== 202 || !json.id) throw new Error(`POST /jit/request answered ${res.status}: ${JSON.stringify(json)}`);
      return json.id;
    },
    async approverAddCli(name, telegramId) {
      const out: string[] = [];
      const err: string[] = [];
      const io: CliIo = { env, out: (l) => out.push(l), err: (l) => err.push(l) };
      const code = await runCli(['approver', 'add', name, ...(telegramId ? ['--telegram-id', telegramId] : [])], io);
      const last = out.join('\n').trimEnd().split('\n').at(-1) ?? '';
      if (code !== 0 || !LINK.test(last)) throw new Error(`jit approver add ${name}: exit ${code}, stdout ${JSON.stringify(out)}, stderr ${JSON.stringify(err)}`);
      return last;
    },
    async addApprover(name, telegramId) {
      const { token } = await addApprover(deps, { name, telegramId });
      return `${url}/console/enrol/${token}`;
    },
    async removeApprover(name) {
      await removeApprover(deps, name);
    },
    async close() {
      await broker.stop();
      await tg?.close();
      await devVault.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
