import { serve } from '@hono/node-server';
import { Hono } from 'hono';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ConfigError } from '../../../src/config/config.ts';
import { createApprovalBot, type ApprovalBot } from '../../../src/telegram/index.ts';
import { ALICE, BOT_TOKEN, CHAT_ID, buttonsOf, startTelegramEnv, waitAnswers, type TelegramTestEnv } from './helpers.ts';
import { sqliteDatabase } from '../../../src/storage/sqlite/index.ts';

const SECRET = 'wh_secret-0123456789abcdefABCDEF';

let t: TelegramTestEnv;
let server: Server;
let publicUrl: string;
let bot: ApprovalBot;
let hits: number;

beforeEach(async () => {
  t = await startTelegramEnv();
  hits = 0;
  // The route as the broker's Hono app mounts it.
  const app = new Hono();
  app.post('/telegram/webhook', (c) => {
    hits++;
    return bot.handleWebhook(c.req.raw);
  });
  server = await new Promise<Server>((resolve) => {
    const s = serve({ fetch: app.fetch, hostname: '127.0.0.1', port: 0 }, () => resolve(s as Server)) as Server;
  });
  publicUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  bot = await t.bot({ config: { ...t.config.telegram!, webhookSecret: SECRET }, publicUrl });
});
afterEach(async () => {
  await t.close();
  await new Promise<void>((r) => {
    server.close(() => r());
    server.closeAllConnections();
  });
  expect(t.logs()).not.toContain(SECRET);
  expect(t.logs()).not.toContain(BOT_TOKEN);
});

/** A callback query posted straight to the webhook; with `messageId`, as if tapped under that message of the approval chat. */
const forgedTap = (requestId: string, messageId?: number) => ({
  update_id: 424242,
  callback_query: {
    id: '1',
    from: { id: ALICE, is_bot: false, first_name: 'Alice' },
    chat_instance: '1',
    data: `a:${requestId}`,
    ...(messageId === undefined ? {} : { message: { message_id: messageId, date: 0, chat: { id: CHAT_ID, type: 'supergroup', title: 'Homelab approvals' } } }),
  },
});

const post = (body: unknown, headers: Record<string, string> = {}) =>
  fetch(`${publicUrl}/telegram/webhook`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });

describe('webhook mode', () => {
  it('registers the webhook with the secret, and taps arrive through it', async () => {
    expect(bot.mode).toBe('webhook');
    expect(t.emu.webhookInfo()).toMatchObject({ url: `${publicUrl}/telegram/webhook`, allowed_updates: ['message', 'callback_query'], pending_update_count: 0 });
    const id = await t.request();
    await bot.kick();
    const m = await t.waitMessage(id);
    t.emu.tap(ALICE, m.message_id, `a:${id}`);
    expect((await waitAnswers(t.emu, 1))[0]!.text).toBe('Approved');
    expect((await t.deps.storage.requests.get(id))!.status).toBe('approved');
    await t.waitMessage(id, (x) => buttonsOf(x).length === 0);
    expect(hits).toBe(1);
    expect(t.emu.calls('getUpdates')).toHaveLength(0);
  });

  it.each([
    ['missing', {}],
    ['wrong', { 'X-Telegram-Bot-Api-Secret-Token': 'wh_secret-0123456789abcdefABCDEX' }],
    ['shorter', { 'X-Telegram-Bot-Api-Secret-Token': 'wh_secret' }],
    ['empty', { 'X-Telegram-Bot-Api-Secret-Token': '' }],
  ])('a %s secret header gets 401 and the update is not handled', async (_name, headers) => {
    const id = await t.request();
    const res = await post(forgedTap(id), headers);
    expect(res.status).toBe(401);
    expect(res.headers.get('content-type')).toBe('application/problem+json');
    expect(await res.json()).toMatchObject({ status: 401, title: 'Unauthorized' });
    expect((await t.deps.storage.requests.get(id))!.status).toBe('pending');
    expect(sqliteDatabase(t.deps.storage).prepare('SELECT COUNT(*) FROM votes').pluck().get()).toBe(0);
  });

  it('the right secret with a malformed body gets 400; a redelivered update is handled once', async () => {
    const h = { 'X-Telegram-Bot-Api-Secret-Token': SECRET };
    expect((await post('{not json', h)).status).toBe(400);
    expect((await post({ hello: 1 }, h)).status).toBe(400);

    const id = await t.request();
    await bot.kick();
    const m = await t.waitMessage(id);
    expect((await post(forgedTap(id, m.message_id), h)).status).toBe(200);
    expect((await post(forgedTap(id, m.message_id), h)).status).toBe(200);
    expect((await t.deps.storage.requests.get(id))!.status).toBe('approved');
    // The emulator never issued query id "1", so answering it fails; the decision stands regardless.
    expect(t.emu.calls('answerCallbackQuery')).toHaveLength(1);
    expect(sqliteDatabase(t.deps.storage).prepare(`SELECT COUNT(*) FROM audit_log WHERE event LIKE 'vote.%'`).pluck().get()).toBe(1);
  });

  it('when Telegram sends the wrong secret, deliveries fail visibly and succeed once it is fixed', async () => {
    await fetch(`${t.emu.url}/bot${BOT_TOKEN}/setWebhook`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ url: `${publicUrl}/telegram/webhook`, secret_token: 'someone-else' }),
    });
    const id = await t.request();
    await bot.kick();
    const m = await t.waitMessage(id);
    t.emu.tap(ALICE, m.message_id, `a:${id}`);
    const info = await t.emu.waitFor(() => (t.emu.webhookInfo().last_error_message ? t.emu.webhookInfo() : undefined), 5_000, 'a webhook error');
    expect(info.last_error_message).toBe('Wrong response from the webhook: 401 Unauthorized');
    expect(info.pending_update_count).toBe(1);
    expect((await t.deps.storage.requests.get(id))!.status).toBe('pending');

    // A restarted broker registers its own secret again; the queued tap is then delivered.
    // (The old one stops first: the new one then holds the leader lease from its start, not from its next renewal.)
    await bot.stop();
    bot = await t.bot({ config: { ...t.config.telegram!, webhookSecret: SECRET }, publicUrl });
    await t.emu.waitFor(async () => (await t.deps.storage.requests.get(id))!.status === 'approved' || undefined, 5_000, 'the approval');
  });

  it('answers Telegram within webhookReplyTimeoutMs while the update is still being handled', async () => {
    // The old bot stops first, releasing the Telegram leader lease, so the new one leads from its start (started the other
    // way round, the new bot would take the lease over only at its next renewal, racing the wait for the message below).
    await bot.stop();
    bot = await t.bot({ config: { ...t.config.telegram!, webhookSecret: SECRET }, publicUrl, webhookReplyTimeoutMs: 50, callTimeoutSeconds: 60 });
    const id = await t.request();
    await bot.kick();
    const m = await t.waitMessage(id);
    // The handler decides, then answers the tap: that answer is held open by "Telegram" until released
    // (callTimeoutSeconds keeps the bot from giving up on it meanwhile).
    const { release, held } = t.emu.holdNext('answerCallbackQuery');
    const res = await post(forgedTap(id, m.message_id), { 'X-Telegram-Bot-Api-Secret-Token': SECRET });
    expect(res.status).toBe(200);
    await held;
    expect((await t.deps.storage.requests.get(id))!.status).toBe('approved');
    expect(t.emu.calls('answerCallbackQuery')).toHaveLength(0);
    release();
    await t.emu.waitFor(() => t.emu.calls('answerCallbackQuery').length === 1 || undefined, 5_000, 'the held answer');
  });

  it('a bot in polling mode refuses webhook calls', async () => {
    const polling = await t.bot({ start: false });
    const res = await polling.handleWebhook(new Request('http://x/telegram/webhook', { method: 'POST', headers: { 'X-Telegram-Bot-Api-Secret-Token': SECRET }, body: '{}' }));
    expect(res.status).toBe(404);
  });
});

describe('configuration', () => {
  it('refuses a webhook secret Telegram would not accept, naming the variable', () => {
    const make = () => createApprovalBot({ deps: t.deps, config: { ...t.config.telegram!, webhookSecret: 'has spaces and !' } });
    expect(make).toThrow(ConfigError);
    expect(make).toThrow(/^TELEGRAM_WEBHOOK_SECRET: /);
  });
});
