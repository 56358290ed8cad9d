import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { callbackData } from '../../../src/telegram/index.ts';
import { startTelegramEmulator, type TelegramEmulator } from '../../fakes/telegram-emulator/index.ts';
import { freePort, until } from '../../helpers/chaos-process.ts';
import { startClusterBroker, type ClusterBroker } from '../../helpers/cluster.ts';

/**
 * Telegram in webhook mode with JIT_HTTP_WORKERS=2: the bot lives in the
 * primary, Telegram's updates arrive at whichever worker accepts the
 * connection, which hands them to the primary's bot over IPC.
 */
const CHAT = -100555;
const ALICE = 111;
const BOT_TOKEN = '7000000003:AAH-cluster-token_abcdefghijklmnopqrstu';
const SECRET = 'cluster-webhook-secret_0123456789';
const POLICY = `
agents:
  moltbot:
    sessions: ["hook:jit:moltbot*"]
rules:
  - name: homelab-write
    agents: [moltbot]
    resource: vault
    paths: ["homelab/data/*"]
    capabilities: [read, update]
    tier: 2
    max_ttl: 30m
`;

let tg: TelegramEmulator;
let cluster: ClusterBroker;
let serve: ClusterBroker['serve'];
let token: string;

beforeAll(async () => {
  tg = await startTelegramEmulator({ token: BOT_TOKEN, chats: [{ id: CHAT, type: 'supergroup', title: 'approvals' }] });
  const port = await freePort();
  cluster = await startClusterBroker({
    policy: POLICY,
    env: {
      JIT_PORT: String(port),
      JIT_PUBLIC_URL: `http://127.0.0.1:${port}`,
      TELEGRAM_BOT_TOKEN: BOT_TOKEN,
      TELEGRAM_CHAT_ID: String(CHAT),
      TELEGRAM_APPROVERS: String(ALICE),
      TELEGRAM_API_ROOT: tg.url,
      TELEGRAM_WEBHOOK_SECRET: SECRET,
    },
  });
  ({ serve, token } = cluster);
}, 60_000);

afterAll(async () => {
  await cluster?.close();
  await tg?.close();
});

const post = (path: string, body: unknown, headers: Record<string, string>) =>
  fetch(`${serve.url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json', connection: 'close', ...headers }, body: JSON.stringify(body) });

describe('JIT_HTTP_WORKERS=2 with Telegram in webhook mode', () => {
  it('refuses an update with a wrong or missing secret at any worker', async () => {
    for (let i = 0; i < 4; i++) {
      expect((await post('/telegram/webhook', { update_id: 100 + i }, { 'x-telegram-bot-api-secret-token': 'nope' })).status).toBe(401);
      expect((await post('/telegram/webhook', { update_id: 200 + i }, {})).status).toBe(401);
    }
  });

  it('posts a pending request and applies the approver\'s tap delivered through a worker', async () => {
    await until(() => tg.webhookInfo().url === `${serve.url}/telegram/webhook`, undefined, 'webhook registered by the primary', 50);
    const res = await post('/jit/request', { resource: 'vault', tier: 2, reason: 'rotate the web key', vault_paths: [{ path: 'homelab/data/apps/web', capabilities: ['update'] }] }, { authorization: `Bearer ${token}` });
    expect(res.status).toBe(202);
    const id = ((await res.json()) as { id: string }).id;
    const posted = await until(() => tg.botMessages(CHAT).find((m) => m.text?.includes(id)), undefined, 'approval message', 50);

    tg.tap(ALICE, posted.message_id, callbackData('approve', id));
    const status = async () => ((await (await fetch(`${serve.url}/jit/requests/${id}`, { headers: { authorization: `Bearer ${token}`, connection: 'close' } })).json()) as { status: string }).status;
    await until(async () => (await status()) === 'approved', undefined, 'the request approved', 100);
    await until(() => tg.botMessages(CHAT).find((m) => m.message_id === posted.message_id && tg.buttons(m).length === 0), undefined, 'edited message', 50);
  });
});
