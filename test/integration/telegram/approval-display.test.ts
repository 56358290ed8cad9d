import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { REQUEST_LIMITS } from '../../../src/wire/schemas.ts';
import type { ApprovalBot } from '../../../src/telegram/index.ts';
import type { TgMessage } from '../../fakes/telegram-emulator/index.ts';
import { ALICE, CHAT_ID, auditEntries, buttonData, buttonsOf, startTelegramEnv, tapAndAnswer, type TelegramTestEnv } from './helpers.ts';
import { sqliteDatabase } from '../../../src/storage/sqlite/index.ts';

/**
 * What an approver sees is what gets granted (issue 17, SPEC §10): over the
 * Bot API emulator, which parses the HTML as Telegram does, so these
 * assertions are on what a person would see (text, quotes, bold, strikes).
 */
let t: TelegramTestEnv;
let bot: ApprovalBot;
beforeEach(async () => {
  t = await startTelegramEnv();
  bot = await t.bot();
});
afterEach(() => t.close());

const audit = (event: string) => auditEntries(t.deps, event);
const tap = (user: number, messageId: number, data: string, force = false) => tapAndAnswer(t, bot, user, messageId, data, { force });
const button = buttonData;

/** Which parts of a message Telegram shows as `type` (blockquote, bold, strikethrough). */
const spans = (m: TgMessage, type: string) => (m.entities ?? []).filter((e) => e.type === type).map((e) => [e.offset, e.offset + e.length] as const);
const within = (m: TgMessage, type: string, at: number, length: number) => spans(m, type).some(([a, b]) => a <= at && at + length <= b);

describe('the reason cannot pass for the request', () => {
  it('a reason drawing a fake "Vault paths (1)" block above the real list is quoted, inert and below it', async () => {
    const reason = ['routine rotation', 'Vault paths (1):', '• homelab/data/apps/readme: read', 'TTL: 5m', '\u202eetadpu\u202c \u200bsafe'].join('\n');
    const id = await t.request({
      resource: 'vault',
      tier: 2,
      reason,
      vault_paths: [
        { path: 'homelab/data/apps/web', capabilities: ['read', 'update'] },
        { path: 'homelab/data/apps/db', capabilities: ['update'] },
      ],
    });
    const m = await t.waitMessage(id);
    const text = m.text!;
    const real = text.indexOf('Vault paths (2):');
    const fake = text.indexOf('Vault paths (1):');
    // The real list: the bot's bold heading, above the reason, listing both paths.
    expect(real).toBeGreaterThan(0);
    expect(within(m, 'bold', real, 'Vault paths (2):'.length)).toBe(true);
    expect(text.slice(real)).toMatch(/^Vault paths \(2\):\n• homelab\/data\/apps\/web: read, update\n• homelab\/data\/apps\/db: update\nTTL: 30m\n/);
    // The fake one: inside the quote, after the real list, not bold.
    expect(fake).toBeGreaterThan(real);
    expect(within(m, 'blockquote', fake, 'Vault paths (1):'.length)).toBe(true);
    expect(within(m, 'bold', fake, 1)).toBe(false);
    // The whole reason, escapes made visible, is one blockquote under a heading that names its author.
    const inert = reason.replace('\u202e', '\\u{202E}').replace('\u202c', '\\u{202C}').replace('\u200b', '\\u{200B}');
    const at = text.indexOf(inert);
    expect(at).toBeGreaterThan(real);
    expect(within(m, 'blockquote', at, inert.length)).toBe(true);
    expect(text.slice(0, at)).toMatch(/💬 Reason \(written by the agent, quoted as sent\):\n$/);
    expect(text).not.toMatch(/[\u202a-\u202e\u2066-\u2069\u200b-\u200f]/);
    // "Vault paths (" appears bold exactly once: the bot's own heading.
    const headings = [...text.matchAll(/Vault paths \(/g)].filter((x) => within(m, 'bold', x.index!, 1));
    expect(headings.map((x) => x.index)).toEqual([real]);
  });
});

describe('every pair, and every path can be dropped', () => {
  const paths = Array.from({ length: REQUEST_LIMITS.items }, (_, i) => {
    const head = `homelab/data/bulk/${String(i + 1).padStart(2, '0')}-`;
    return { path: head + 'y'.repeat(REQUEST_LIMITS.itemsCharacters / REQUEST_LIMITS.items - head.length), capabilities: ['read', 'create', 'update'] };
  });

  it('a 32-path request: the panel pages to the 32nd path, dropping it grants the other 31, and the message keeps every pair', async () => {
    const id = await t.request({ resource: 'vault', tier: 2, reason: 'seed the bulk secrets', vault_paths: paths });
    const posted = await t.waitMessage(id);
    for (const p of paths) expect(posted.text).toContain(`• ${p.path}: read, create, update\n`);
    await tap(ALICE, posted.message_id, `n:${id}`);
    let panel = await t.waitMessage(id, (m) => buttonsOf(m).some((b) => b?.startsWith('g:')), 'the narrowing panel');
    const pathButtons = (m: TgMessage) => (m.reply_markup?.inline_keyboard.flat() ?? []).filter((b) => /^[✂↩]/.test(b.text) && b.text.includes('bulk/'));
    expect(pathButtons(panel)).toHaveLength(8);
    for (const b of panel.reply_markup!.inline_keyboard.flat()) expect(Buffer.byteLength(b.callback_data!)).toBeLessThanOrEqual(64);

    for (const next of ['paths 9–16 ▶', 'paths 17–24 ▶', 'paths 25–32 ▶']) {
      await tap(ALICE, posted.message_id, button(t.messageFor(id)!, next));
    }
    panel = t.messageFor(id)!;
    expect(pathButtons(panel).map((b) => b.text)).toEqual(paths.slice(24).map((p) => `✂️ drop …${p.path.slice(-27)}`));
    expect(panel.reply_markup!.inline_keyboard.flat().map((b) => b.text)).toContain('◀ paths 17–24');

    const last = paths[31]!.path;
    expect((await tap(ALICE, posted.message_id, button(panel, `drop …${last.slice(-27)}`))).text).toBe(`Dropped path ${last}`);
    const shown = t.messageFor(id)!;
    expect(shown.text!.length).toBeLessThanOrEqual(4096);
    for (const p of paths) expect(shown.text).toContain(`• ${p.path}: read, create, update`);
    // What the panel leaves out is struck out on the request's own line.
    const at = shown.text!.indexOf(`• ${last}`);
    expect(within(shown, 'strikethrough', at + 2, last.length)).toBe(true);

    expect((await tap(ALICE, posted.message_id, button(shown, 'Approve as shown'))).text).toBe(`Approved, narrowed. Not granted: path ${last}`.slice(0, 200));
    const row = (await t.deps.storage.requests.get(id))!;
    expect(row.status).toBe('approved');
    expect(JSON.parse(row.granted_scope!).vault_paths).toEqual(paths.slice(0, 31));

    const edited = await t.waitMessage(id, (m) => buttonsOf(m).length === 0, 'the approved message');
    expect(edited.text!.length).toBeLessThanOrEqual(4096);
    expect(edited.text).toMatch(/^✅ APPROVED by Alice/);
    for (const p of paths) expect(edited.text).toContain(`• ${p.path}: read, create, update`);
    expect(within(edited, 'strikethrough', edited.text!.indexOf(`• ${last}`) + 2, last.length)).toBe(true);
  });

  it('a page no panel offers is refused as forged and recorded', async () => {
    const id = await t.request({ resource: 'vault', tier: 2, reason: 'seed', vault_paths: paths.slice(0, 9) });
    const posted = await t.waitMessage(id);
    await tap(ALICE, posted.message_id, `n:${id}`);
    const panel = await t.waitMessage(id, (m) => buttonsOf(m).some((b) => b?.startsWith('g:')), 'the narrowing panel');
    const panelId = /^g:([a-z2-7]{10}):/.exec(button(panel, 'Approve as shown'))![1]!;
    const answer = await tap(ALICE, posted.message_id, `g:${panelId}:pg:2`, true);
    expect(answer).toMatchObject({ show_alert: true, text: 'Refused: there is no page 3 of buttons for this request. This attempt has been recorded.' });
    expect(audit('callback.refused').map((r) => r.data.data)).toEqual([`g:${panelId}:pg:2`]);
  });
});

describe('a request too large to show whole cannot be approved in Telegram', () => {
  it('Approve and Narrow taps under its Deny-only message are refused and audited; Deny still works', async () => {
    const id = await t.request();
    const posted = await t.waitMessage(id);
    // A request stored before the request limits: 60 paths of 300 characters cannot fit one message.
    const paths = Array.from({ length: 60 }, (_, i) => ({ path: `homelab/data/${i}/${'p'.repeat(300)}`, capabilities: ['read', 'update'] }));
    sqliteDatabase(t.deps.storage).prepare('UPDATE requests SET scope = ? WHERE id = ?').run(JSON.stringify({ vault_paths: paths }), id);
    await bot.kick();
    const shown = await t.waitMessage(id, (m) => buttonsOf(m).length === 1, 'the Deny-only message');
    expect(shown.text).toContain('it cannot be approved here');
    expect(buttonsOf(shown)).toEqual([`d:${id}`]);

    // The old message's Approve (or a forged one) and the narrowing panel reach the server all the same.
    for (const data of [`a:${id}`, `n:${id}`]) {
      const answer = await tap(ALICE, posted.message_id, data, true);
      expect(answer.show_alert, data).toBe(true);
      expect(answer.text, data).toMatch(/^Not approved: this request is too large to show whole in one message/);
    }
    expect((await t.deps.storage.requests.get(id))!.status).toBe('pending');
    expect(sqliteDatabase(t.deps.storage).prepare('SELECT COUNT(*) FROM votes').pluck().get()).toBe(0);
    expect(sqliteDatabase(t.deps.storage).prepare('SELECT COUNT(*) FROM telegram_narrowing').pluck().get()).toBe(0);
    expect(audit('callback.refused').map((r) => [r.actor, r.request_id, r.data.reason, r.data.data])).toEqual([
      [`telegram:${ALICE}`, id, 'request too large to show whole in one message', `a:${id}`],
      [`telegram:${ALICE}`, id, 'request too large to show whole in one message', `n:${id}`],
    ]);

    expect((await tap(ALICE, posted.message_id, `d:${id}`)).text).toBe('Denied');
    expect((await t.deps.storage.requests.get(id))!.status).toBe('denied');
  });
});

describe('Approve / Deny count only under the request\'s own message', () => {
  it('a forged tap naming a request whose message was never posted is refused and audited; nothing changes', async () => {
    const a = await t.request();
    const msgA = await t.waitMessage(a);
    // Telegram refuses to post B (say, the bot lost the right to post): B has no message.
    t.emu.failNext('sendMessage', { kind: 'error', code: 400, description: 'Bad Request: not enough rights to send text messages to the chat' }, 10);
    const b = await t.request();
    await bot.kick();
    expect(t.messageFor(b)).toBeUndefined();

    for (const data of [`a:${b}`, `d:${b}`]) {
      const answer = await tap(ALICE, msgA.message_id, data, true);
      expect(answer.show_alert, data).toBe(true);
      expect(answer.text, data).toBe('Refused: this button does not belong to this message. Nothing changed; this attempt has been recorded.');
    }
    expect((await t.deps.storage.requests.get(b))!.status).toBe('pending');
    expect((await t.deps.storage.requests.get(a))!.status).toBe('pending');
    expect(sqliteDatabase(t.deps.storage).prepare('SELECT COUNT(*) FROM votes').pluck().get()).toBe(0);
    const refused = audit('callback.refused');
    expect(refused.map((r) => [r.actor, r.request_id, r.data.reason, r.data.data])).toEqual([
      [`telegram:${ALICE}`, b, 'no approval message of this request was posted', `a:${b}`],
      [`telegram:${ALICE}`, b, 'no approval message of this request was posted', `d:${b}`],
    ]);
  });

  it('a post that reached Telegram but was never recorded (the broker stopped mid-post) counts when tapped, and is adopted; a forged tap for it is still refused', async () => {
    const a = await t.request();
    const b = await t.request();
    const msgA = await t.waitMessage(a);
    const msgB = await t.waitMessage(b);
    // What a broker killed between Telegram's answer and its commit leaves: a claim and no message id.
    const lose = sqliteDatabase(t.deps.storage).prepare(`UPDATE telegram_messages SET message_id = NULL, claim_token = 'lost', claimed_at = ? WHERE request_id = ?`);
    lose.run(Date.now(), a);
    lose.run(Date.now(), b);

    // A forged tap naming B under A's message: Telegram shows no such button there.
    const forged = await tap(ALICE, msgA.message_id, `a:${b}`, true);
    expect(forged.text).toMatch(/does not belong to this message/);
    expect((await t.deps.storage.requests.get(b))!.status).toBe('pending');
    expect(sqliteDatabase(t.deps.storage).prepare('SELECT message_id FROM telegram_messages WHERE request_id = ?').pluck().get(b)).toBeNull();

    // The real button under A's own message: approved, and the message is A's again.
    const real = await tap(ALICE, msgA.message_id, `a:${a}`);
    expect(real.text).not.toMatch(/Refused/);
    expect((await t.deps.storage.requests.get(a))!.status).toBe('approved');
    expect(sqliteDatabase(t.deps.storage).prepare('SELECT message_id FROM telegram_messages WHERE request_id = ?').pluck().get(a)).toBe(msgA.message_id);
    expect(audit('callback.refused').map((r) => [r.request_id, r.data.reason])).toEqual([[b, 'no approval message of this request was posted']]);
    expect(msgB.message_id).not.toBe(msgA.message_id);
  });

  it('a forged tap from the right message id in another chat is refused', async () => {
    const a = await t.request();
    const msgA = await t.waitMessage(a);
    // Alice's private chat with the bot has a message with the same id.
    const other = 4242;
    t.emu.addChat({ id: other, type: 'private', first_name: 'Alice' });
    for (let i = 0; i < msgA.message_id; i++) t.emu.sendText(ALICE, `hello ${i}`, { chatId: other });
    const answer = await tapAndAnswer(t, bot, ALICE, msgA.message_id, `a:${a}`, { chatId: other, force: true });
    expect(answer.text).toMatch(/does not belong to this message/);
    expect((await t.deps.storage.requests.get(a))!.status).toBe('pending');
    expect(audit('callback.refused')[0]).toMatchObject({ request_id: a, data: { reason: 'button not under its request’s message' } });
    expect(t.emu.messages(CHAT_ID).some((m) => m.message_id === msgA.message_id)).toBe(true);
  });
});
