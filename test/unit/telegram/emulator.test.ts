import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Api, Bot, GrammyError, HttpError } from 'grammy';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { startTelegramEmulator, type TelegramEmulator } from '../../fakes/telegram-emulator/index.ts';
import { parseTelegramHtml } from '../../fakes/telegram-emulator/parse-html.ts';

const TOKEN = '7000000001:AAemulator-fidelity-token_0123456789abc';
const CHAT = -100777;
let emu: TelegramEmulator;
let api: Api;

beforeEach(async () => {
  emu = await startTelegramEmulator({ token: TOKEN, chats: [{ id: CHAT, type: 'supergroup', title: 'Approvals' }], callbackQueryTtlMs: 300 });
  api = new Api(TOKEN, { apiRoot: emu.url });
});
afterEach(async () => {
  await emu.close();
});

const raw = async (method: string, body: unknown, token = TOKEN) => {
  const res = await fetch(`${emu.url}/bot${token}/${method}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
};

const apiError = async (p: Promise<unknown>): Promise<GrammyError> => {
  try {
    await p;
  } catch (err) {
    if (err instanceof GrammyError) return err;
    throw err;
  }
  throw new Error('expected a GrammyError');
};

describe('envelopes and auth', () => {
  it('answers a wrong token with 401 Unauthorized and an unknown method with 404', async () => {
    expect(await raw('getMe', {}, '1:wrong')).toEqual({ status: 401, body: { ok: false, error_code: 401, description: 'Unauthorized' } });
    expect(await raw('sendSticker2', {})).toEqual({ status: 404, body: { ok: false, error_code: 404, description: 'Not Found' } });
    const me = await raw('getMe', {});
    expect(me.status).toBe(200);
    expect(me.body).toMatchObject({ ok: true, result: { id: 7000000001, is_bot: true, username: 'jit_test_bot' } });
  });

  it('returns a real Message from sendMessage: seconds, chat, from = bot', async () => {
    const before = Math.floor(Date.now() / 1000);
    const m = await api.sendMessage(String(CHAT), 'hello <b>there</b>', { parse_mode: 'HTML' });
    expect(m).toMatchObject({ message_id: 1, chat: { id: CHAT, type: 'supergroup', title: 'Approvals' }, from: { is_bot: true, id: 7000000001 }, text: 'hello there', entities: [{ type: 'bold', offset: 6, length: 5 }] });
    expect(m.date).toBeGreaterThanOrEqual(before);
    expect(m.date).toBeLessThan(before + 5);
    expect((await api.sendMessage(CHAT, 'again')).message_id).toBe(2);
  });
});

describe('sendMessage validation', () => {
  it.each([
    ['<p>x</p>', `can't parse entities: Unsupported start tag "p" at byte offset 0`],
    ['é <foo@bar.com>', `can't parse entities: Unsupported start tag "foo@bar.com" at byte offset 3`],
    ['<b>x', `can't parse entities: Can't find end tag corresponding to start tag "b"`],
    ['<b>x</i>', `can't parse entities: Unmatched end tag at byte offset 4, expected "</b>", found "</i>"`],
    ['x</b>', `can't parse entities: Unexpected end tag at byte offset 1`],
    ['a < b', `can't parse entities: Unclosed start tag at byte offset 2`],
    ['a < b >', `can't parse entities: Unsupported start tag "" at byte offset 2`],
  ])('rejects bad HTML %j', async (text, description) => {
    const err = await apiError(api.sendMessage(CHAT, text, { parse_mode: 'HTML' }));
    expect(err.error_code).toBe(400);
    expect(err.description).toBe(`Bad Request: ${description}`);
  });

  it('counts length after entity parsing: 4096 shown characters pass, 4097 do not; empty is refused', async () => {
    await api.sendMessage(CHAT, '&amp;'.repeat(4096), { parse_mode: 'HTML' });
    expect((await apiError(api.sendMessage(CHAT, 'x'.repeat(4097)))).description).toBe('Bad Request: message is too long');
    expect((await apiError(api.sendMessage(CHAT, '  <b> </b> ', { parse_mode: 'HTML' }))).description).toBe('Bad Request: message text is empty');
  });

  it('checks callback_data is 1-64 bytes', async () => {
    const kb = (data: string) => ({ reply_markup: { inline_keyboard: [[{ text: 'Go', callback_data: data }]] } });
    await api.sendMessage(CHAT, 'ok', kb('é'.repeat(32)));
    expect((await apiError(api.sendMessage(CHAT, 'no', kb('é'.repeat(32) + 'x')))).description).toBe('Bad Request: BUTTON_DATA_INVALID');
    expect((await apiError(api.sendMessage(CHAT, 'no', kb('')))).description).toBe('Bad Request: BUTTON_DATA_INVALID');
  });

  it('refuses an unknown chat', async () => {
    expect((await apiError(api.sendMessage(42, 'x'))).description).toBe('Bad Request: chat not found');
  });

  it('decodes only the entities Telegram knows and keeps a bare &', () => {
    expect(parseTelegramHtml('&lt;&gt;&amp;&quot;&#65;&#x42; &nbsp; & x')).toEqual({ ok: true, text: '<>&"AB &nbsp; & x', entities: [] });
  });
});

describe('edits', () => {
  it('"message is not modified", and an edit without reply_markup removes the keyboard', async () => {
    const markup = { inline_keyboard: [[{ text: 'A', callback_data: 'a' }]] };
    const m = await api.sendMessage(CHAT, '<b>v1</b>', { parse_mode: 'HTML', reply_markup: markup });
    const same = await apiError(api.editMessageText(CHAT, m.message_id, '<b>v1</b>', { parse_mode: 'HTML', reply_markup: markup }));
    expect(same.description).toMatch(/^Bad Request: message is not modified: specified new message content and reply markup are exactly the same/);
    const edited = await api.editMessageText(CHAT, m.message_id, '<b>v1</b>', { parse_mode: 'HTML' });
    expect(edited).not.toHaveProperty('reply_markup');
    expect((edited as { edit_date?: number }).edit_date).toBeTypeOf('number');
    expect(emu.messages(CHAT)[0]!.reply_markup).toBeUndefined();
    expect((await apiError(api.editMessageReplyMarkup(CHAT, m.message_id))).description).toMatch(/message is not modified/);
    expect((await apiError(api.editMessageText(CHAT, 99, 'x'))).description).toBe('Bad Request: message to edit not found');
  });
});

describe('callback queries', () => {
  it('tap enqueues a CallbackQuery for the message as it is; answers are checked and recorded', async () => {
    const m = await api.sendMessage(CHAT, 'q', { reply_markup: { inline_keyboard: [[{ text: 'Yes', callback_data: 'y' }]] } });
    expect(() => emu.tap(5, m.message_id, 'n')).toThrow(/no button/);
    const update = emu.tap(5, m.message_id, 'y')!;
    expect(update.callback_query).toMatchObject({ from: { id: 5, is_bot: false }, data: 'y', message: { message_id: m.message_id, text: 'q' } });
    expect(update.callback_query!.chat_instance).toBeTypeOf('string');
    expect(await api.answerCallbackQuery(update.callback_query!.id, { text: 'done' })).toBe(true);
    expect(emu.callbackAnswers()).toMatchObject([{ from: 5, text: 'done', data: 'y' }]);
    const again = await apiError(api.answerCallbackQuery(update.callback_query!.id));
    expect(again.description).toBe('Bad Request: query is too old and response timeout expired or query ID is invalid');
    expect((await apiError(api.answerCallbackQuery('nope'))).error_code).toBe(400);

    const late = emu.tap(5, m.message_id, 'y')!;
    await new Promise((r) => setTimeout(r, 350));
    expect((await apiError(api.answerCallbackQuery(late.callback_query!.id))).description).toMatch(/query is too old/);
  });
});

describe('getUpdates', () => {
  it('long-polls: waits for the timeout when empty, returns as soon as an update arrives', async () => {
    let t0 = Date.now();
    expect(await api.getUpdates({ timeout: 1 })).toEqual([]);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(900);

    t0 = Date.now();
    setTimeout(() => emu.sendText(5, '/pending'), 100);
    const [u] = await api.getUpdates({ timeout: 5 });
    expect(Date.now() - t0).toBeLessThan(1000);
    expect(u!.message).toMatchObject({ text: '/pending', entities: [{ type: 'bot_command', offset: 0, length: 8 }] });
  });

  it('honours offset (confirming earlier updates) and limit', async () => {
    for (const s of ['a', 'b', 'c']) emu.sendText(5, s);
    const all = await api.getUpdates({ limit: 2 });
    expect(all.map((u) => u.message?.text)).toEqual(['a', 'b']);
    const next = await api.getUpdates({ offset: all[1]!.update_id + 1 });
    expect(next.map((u) => u.message?.text)).toEqual(['c']);
    expect(emu.pendingUpdates()).toHaveLength(1);
    expect(await api.getUpdates({ offset: next[0]!.update_id + 1 })).toEqual([]);
    expect(emu.pendingUpdates()).toHaveLength(0);
  });

  it('a second poller terminates the first with 409; polling while a webhook is set is 409', async () => {
    const first = api.getUpdates({ timeout: 5 });
    await new Promise((r) => setTimeout(r, 50));
    const second = api.getUpdates({ timeout: 0 });
    expect((await apiError(first)).description).toBe('Conflict: terminated by other getUpdates request; make sure that only one bot instance is running');
    await second;
    await api.setWebhook('http://127.0.0.1:9/hook');
    expect((await apiError(api.getUpdates())).description).toMatch(/^Conflict: can't use getUpdates method while webhook is active/);
  });

  it('grammY long polling works against it end to end', async () => {
    const bot = new Bot(TOKEN, { client: { apiRoot: emu.url } });
    const seen: string[] = [];
    bot.command('ping', async (ctx) => {
      seen.push(ctx.match);
      await ctx.reply('pong');
    });
    await new Promise<void>((resolve) => void bot.start({ timeout: 1, onStart: () => resolve() }));
    emu.sendText(5, '/ping hi');
    await emu.waitFor(() => emu.messages(CHAT).find((m) => m.text === 'pong'));
    await bot.stop();
    expect(seen).toEqual(['hi']);
    expect(emu.pendingUpdates()).toHaveLength(0);
  });
});

describe('webhooks', () => {
  let hook: Server;
  let received: { secret: string | undefined; body: unknown }[];
  let answer: number;
  beforeEach(async () => {
    received = [];
    answer = 200;
    hook = createServer((req, res) => {
      let body = '';
      req.on('data', (c) => (body += c));
      req.on('end', () => {
        received.push({ secret: req.headers['x-telegram-bot-api-secret-token'] as string | undefined, body: JSON.parse(body) });
        res.writeHead(answer).end();
      });
    });
    await new Promise<void>((r) => hook.listen(0, '127.0.0.1', r));
  });
  afterEach(async () => {
    await new Promise<void>((r) => {
      hook.close(() => r());
      hook.closeAllConnections();
    });
  });

  it('POSTs updates with the secret header, retries non-2xx, and reports errors in getWebhookInfo', async () => {
    const url = `http://127.0.0.1:${(hook.address() as AddressInfo).port}/telegram/webhook`;
    expect((await raw('setWebhook', { url, secret_token: 'bad secret!' })).body.description).toBe('Bad Request: secret token contains unallowed characters');
    expect(await raw('setWebhook', { url, secret_token: 's3cret_-' })).toEqual({ status: 200, body: { ok: true, result: true, description: 'Webhook was set' } });
    answer = 500;
    emu.sendText(5, 'hello');
    await emu.waitFor(() => received.length >= 2 || undefined);
    expect(received[0]).toMatchObject({ secret: 's3cret_-', body: { message: { text: 'hello' } } });
    const info = await api.getWebhookInfo();
    expect(info).toMatchObject({ url, pending_update_count: 1, last_error_message: 'Wrong response from the webhook: 500 Internal Server Error' });
    answer = 200;
    await emu.waitFor(() => emu.pendingUpdates().length === 0 || undefined);
    expect(new Set(received.map((r) => (r.body as { update_id: number }).update_id)).size).toBe(1);
    expect(await raw('deleteWebhook', {})).toMatchObject({ body: { ok: true, result: true, description: 'Webhook was deleted' } });
  });
});

describe('fault injection', () => {
  it('429 with retry_after, 500, and a dropped connection reach grammY as Telegram would produce them', async () => {
    emu.failNext('sendMessage', { kind: 'retry_after', seconds: 7 });
    emu.failNext('sendMessage', { kind: 'server_error' });
    emu.failNext('sendMessage', { kind: 'drop' });
    const limited = await apiError(api.sendMessage(CHAT, 'x'));
    expect(limited.error_code).toBe(429);
    expect(limited.description).toBe('Too Many Requests: retry after 7');
    expect(limited.parameters.retry_after).toBe(7);
    expect((await apiError(api.sendMessage(CHAT, 'x'))).error_code).toBe(500);
    await expect(api.sendMessage(CHAT, 'x')).rejects.toBeInstanceOf(HttpError);
    expect((await api.sendMessage(CHAT, 'x')).message_id).toBe(1);
    expect(emu.calls('sendMessage').map((c) => c.status)).toEqual([429, 500, 0, 200]);
  });
});
