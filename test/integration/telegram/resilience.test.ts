import { serve } from '@hono/node-server';
import { Hono } from 'hono';
import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { decideRequest } from '../../../src/broker/decide.ts';
import { createApprovalBot, type ApprovalBot } from '../../../src/telegram/index.ts';
import { ALICE, BOB, BOT_TOKEN, CHAT_ID, FAST, buttonsOf, startTelegramEnv, waitAnswers, type TelegramTestEnv } from './helpers.ts';
import { sqliteDatabase } from '../../../src/storage/sqlite/index.ts';

let t: TelegramTestEnv;
beforeEach(async () => {
  t = await startTelegramEnv();
});
afterEach(async () => {
  await t.close();
  // Whatever failed on the way, the token never reached a log line.
  expect(t.logs()).not.toContain(BOT_TOKEN);
  expect(t.logs()).not.toContain(BOT_TOKEN.split(':')[1]);
});

describe('Telegram failures defer, never lose', () => {
  it('429 with retry_after on sendMessage: the request stays pending and is posted after the wait', async () => {
    const bot = await t.bot({ syncIntervalMs: 60_000 });
    t.emu.failNext('sendMessage', { kind: 'retry_after', seconds: 1 });
    const id = await t.request();
    const started = Date.now();
    await bot.kick();
    expect(t.messageFor(id)).toBeUndefined();
    expect((await t.deps.storage.requests.get(id))!.status).toBe('pending');
    expect(bot.status().lastError).toMatchObject({ telegram: { method: 'sendMessage', error_code: 429, retry_after: 1 } });
    // Kicks during the pause do not call Telegram.
    await bot.kick();
    expect(t.emu.calls('sendMessage')).toHaveLength(1);

    const m = await t.waitMessage(id);
    expect(Date.now() - started).toBeGreaterThanOrEqual(950);
    expect(buttonsOf(m)).toEqual([`a:${id}`, `d:${id}`, `n:${id}`]);
    expect(t.emu.calls('sendMessage').map((c) => c.status)).toEqual([429, 200]);
    expect(t.emu.botMessages(CHAT_ID)).toHaveLength(1);
    await bot.kick();
    expect(bot.status().lastError).toBeNull();
    expect(t.logs()).toMatch(/Bot API unavailable; approval messages are deferred/);
  });

  it('a dropped connection and a 500 are retried on later passes', async () => {
    const bot = await t.bot();
    t.emu.failNext('sendMessage', { kind: 'drop' });
    t.emu.failNext('sendMessage', { kind: 'server_error' });
    const id = await t.request();
    await bot.kick();
    const m = await t.waitMessage(id);
    expect(t.emu.calls('sendMessage').map((c) => c.status)).toEqual([0, 500, 200]);

    t.emu.failNext('editMessageText', { kind: 'drop' });
    await decideRequest(t.deps, id, { approver: 'local-cli', decision: 'deny', reason: 'not now' });
    await bot.kick();
    expect(t.messageFor(id)!.text).toBe(m.text);
    const edited = await t.waitMessage(id, (x) => x.text!.startsWith('❌ DENIED'));
    expect(edited.text).toContain('Why: not now');
  });

  it('Telegram unreachable at start: start() returns, polling begins once it answers', async () => {
    t.emu.failNext('getMe', { kind: 'server_error' }, 3);
    const bot = await t.bot({ start: false });
    await bot.start();
    expect(bot.status().ready).toBe(false);
    await bot.ready;
    expect(t.emu.calls('getMe').map((c) => c.status)).toEqual([500, 500, 500, 200]);
  });

  it('a wrong token is reported without the token and does not throw', async () => {
    const wrong = '7000000001:AAwrong-token-that-is-long-enough-12345';
    const bot = await t.bot({ start: false, config: { ...t.config.telegram!, botToken: wrong } });
    await bot.start();
    await t.emu.waitFor(() => t.emu.calls('getMe').length >= 2 || undefined, 5_000, 'getMe retries');
    await bot.stop();
    expect(t.emu.calls('getMe').every((c) => c.status === 401)).toBe(true);
    expect(bot.status().ready).toBe(false);
    expect(t.logs()).toMatch(/rejected TELEGRAM_BOT_TOKEN/);
    expect(t.logs()).not.toContain(wrong);
    expect(t.logs()).not.toContain(wrong.split(':')[1]);
  });

  it('an error inside a handler is logged and polling carries on', async () => {
    await t.bot();
    const id = await t.request();
    const m = await t.waitMessage(id);
    sqliteDatabase(t.deps.storage).exec('ALTER TABLE votes RENAME TO votes_away');
    t.emu.tap(ALICE, m.message_id, `a:${id}`);
    await t.emu.waitFor(() => /error while handling an update/.test(t.logs()) || undefined, 5_000, 'the handler error');
    sqliteDatabase(t.deps.storage).exec('ALTER TABLE votes_away RENAME TO votes');
    t.emu.tap(BOB, m.message_id, `a:${id}`);
    const answers = await waitAnswers(t.emu, 2);
    expect(answers[0]).toMatchObject({ from: ALICE, show_alert: true });
    expect(answers[0]!.text).toMatch(/Something went wrong/);
    expect(answers[1]).toMatchObject({ from: BOB, text: 'Approved' });
    expect((await t.deps.storage.requests.get(id))!.status).toBe('approved');
  });

  it('a deleted approval message is given up on, not retried forever', async () => {
    const bot = await t.bot();
    const id = await t.request();
    const m = await t.waitMessage(id);
    // Delete it as a chat admin would.
    await fetch(`${t.emu.url}/bot${BOT_TOKEN}/deleteMessage`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ chat_id: CHAT_ID, message_id: m.message_id }) });
    await decideRequest(t.deps, id, { approver: 'local-cli', decision: 'approve' });
    await bot.kick();
    await bot.kick();
    expect(t.emu.calls('editMessageText').map((c) => c.description)).toEqual(['Bad Request: message to edit not found']);
    expect(t.logs()).toMatch(/approval message was deleted/);
  });
});

describe('restarts and several bots on one database', () => {
  it('a new bot on the same database does not repost, and edits what changed while it was down', async () => {
    const first = await t.bot();
    const id = await t.request();
    const posted = await t.waitMessage(id);
    await first.stop();

    await decideRequest(t.deps, id, { approver: 'local-cli', decision: 'approve' });
    const later = await t.request();
    const second = await t.bot({ deps: t.secondDeps() });
    await second.kick();
    await t.waitMessage(later);
    await second.kick();
    const edited = t.messageFor(id)!;
    expect(edited.message_id).toBe(posted.message_id);
    expect(edited.text).toMatch(/^✅ APPROVED by local-cli/);
    expect(t.emu.botMessages(CHAT_ID)).toHaveLength(2);
    expect(t.emu.calls('sendMessage')).toHaveLength(2);
  });

  it('two bots syncing the same database post each request once', async () => {
    const ids = [await t.request(), await t.request(), await t.request()];
    const a = await t.bot({ start: false, syncIntervalMs: 60_000 });
    const b = await t.bot({ start: false, syncIntervalMs: 60_000, deps: t.secondDeps() });
    await Promise.all([a.start(), b.start()]);
    await Promise.all([a.kick(), b.kick(), a.kick(), b.kick()]);
    for (const id of ids) await t.waitMessage(id);
    await Promise.all([a.kick(), b.kick()]);
    expect(t.emu.botMessages(CHAT_ID)).toHaveLength(3);
    expect(t.emu.calls('sendMessage')).toHaveLength(3);
  });

  it('two broker instances (webhook mode, each on its own connection) receiving racing taps: one decision', async () => {
    const secret = 'webhook-secret_0123456789';
    const config = { ...t.config.telegram!, webhookSecret: secret };
    // A load balancer in front of two brokers: updates alternate between them.
    const bots: ApprovalBot[] = [];
    let turn = 0;
    const app = new Hono();
    app.post('/telegram/webhook', (c) => bots[turn++ % 2]!.handleWebhook(c.req.raw));
    const server = await new Promise<Server>((resolve) => {
      const s = serve({ fetch: app.fetch, hostname: '127.0.0.1', port: 0 }, () => resolve(s as Server)) as Server;
    });
    const publicUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    try {
      for (const deps of [t.deps, t.secondDeps()]) bots.push(createApprovalBot({ deps, config, publicUrl, ...FAST }));
      for (const b of bots) await b.start();
      await Promise.all(bots.map((b) => b.ready));
      expect(t.emu.webhookInfo().url).toBe(`${publicUrl}/telegram/webhook`);

      const id = await t.request();
      await bots[0]!.kick();
      const m = await t.waitMessage(id);
      t.emu.tap(ALICE, m.message_id, `a:${id}`);
      t.emu.tap(BOB, m.message_id, `a:${id}`);
      const answers = await waitAnswers(t.emu, 2);
      const texts = answers.map((a) => a.text!);
      expect(texts.filter((x) => x === 'Approved')).toHaveLength(1);
      const winner = answers.find((a) => a.text === 'Approved')!.from === ALICE ? `Alice (telegram:${ALICE})` : `Bob (telegram:${BOB})`;
      expect(texts).toContain(`Already approved by ${winner}`);
      expect(turn).toBe(2); // one update went to each instance
      expect(sqliteDatabase(t.deps.storage).prepare(`SELECT COUNT(*) FROM audit_log WHERE event = 'request.approved'`).pluck().get()).toBe(1);
      await t.waitMessage(id, (x) => buttonsOf(x).length === 0);
    } finally {
      for (const b of bots) await b.stop();
      await new Promise<void>((r) => {
        server.close(() => r());
        server.closeAllConnections();
      });
    }
  });
});
