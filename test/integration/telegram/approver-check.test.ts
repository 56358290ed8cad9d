import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { ApprovalBot } from '../../../src/telegram/index.ts';
import type { TgMessage } from '../../fakes/telegram-emulator/index.ts';
import { ALICE, CHAT_ID, MALLORY, auditEntries, buttonData, buttonsOf, startTelegramEnv, tapAndAnswer, type TelegramTestEnv } from './helpers.ts';
import { sqliteDatabase } from '../../../src/storage/sqlite/index.ts';

/**
 * The one approver check (src/telegram/approver-check.ts) in one place: a
 * user not in TELEGRAM_APPROVERS is refused at a decision button, at the
 * narrowing panel (opening it and tapping in it) and at every command that
 * acts on the broker, each attempt audited with who it was and what it
 * tried; nothing changes; an approver doing the same gets through.
 */
let t: TelegramTestEnv;
let bot: ApprovalBot;
beforeEach(async () => {
  t = await startTelegramEnv();
  bot = await t.bot();
});
afterEach(async () => {
  await t.close();
});

async function command(userId: number, text: string): Promise<TgMessage> {
  const sent = t.emu.sendText(userId, text, { chatId: CHAT_ID });
  return t.emu.waitFor(() => t.emu.botMessages(CHAT_ID).find((m) => m.reply_to_message?.message_id === sent.message_id), 5_000, `the reply to ${text}`);
}

const MALLORY_SEEN = { via: 'telegram', name: 'Mallory', username: 'mallory' };

describe('the approver check', () => {
  it("refuses and audits a non-approver's button, panel taps and commands; an approver passes", async () => {
    const id = await t.request();
    const m = await t.waitMessage(id);

    // Decision buttons.
    for (const [data, decision] of [[`a:${id}`, 'approve'], [`d:${id}`, 'deny']] as const) {
      const answer = await tapAndAnswer(t, bot, MALLORY, m.message_id, data);
      expect(answer).toMatchObject({ text: 'You are not an approver for this broker. This attempt has been recorded.', show_alert: true });
      expect(auditEntries(t.deps, 'vote.refused').at(-1)).toEqual({ actor: `telegram:${MALLORY}`, request_id: id, data: { decision, ...MALLORY_SEEN } });
    }

    // Opening the narrowing panel.
    expect((await tapAndAnswer(t, bot, MALLORY, m.message_id, `n:${id}`)).text).toMatch(/not an approver/);
    expect(auditEntries(t.deps, 'vote.refused').at(-1)).toEqual({ actor: `telegram:${MALLORY}`, request_id: id, data: { action: 'narrow', ...MALLORY_SEEN } });
    expect(buttonsOf(t.messageFor(id))).toEqual([`a:${id}`, `d:${id}`, `n:${id}`]);

    // A tap in a panel an approver opened: refused, audited against the panel's request.
    expect((await tapAndAnswer(t, bot, ALICE, m.message_id, `n:${id}`)).text).toMatch(/^Narrowing:/);
    const panel = await t.waitMessage(id, (x) => buttonsOf(x).some((b) => b?.startsWith('g:')), 'the narrowing panel');
    const approveShown = buttonData(panel, 'Approve as shown');
    expect((await tapAndAnswer(t, bot, MALLORY, m.message_id, approveShown)).text).toMatch(/not an approver/);
    expect(auditEntries(t.deps, 'vote.refused').at(-1)).toEqual({ actor: `telegram:${MALLORY}`, request_id: id, data: { action: 'narrow', ...MALLORY_SEEN } });

    // Commands that act on the broker.
    for (const name of ['pending', 'revoke', 'revokeall']) {
      expect((await command(MALLORY, `/${name} ${name === 'revoke' ? id : ''}`.trim())).text).toBe(`Only approvers can use /${name}. This attempt has been recorded.`);
      expect(auditEntries(t.deps, 'command.refused').at(-1)).toEqual({ actor: `telegram:${MALLORY}`, request_id: null, data: { command: name, ...MALLORY_SEEN } });
    }

    // Nothing changed, and every attempt left exactly one entry.
    expect((await t.deps.storage.requests.get(id))!.status).toBe('pending');
    expect(sqliteDatabase(t.deps.storage).prepare('SELECT COUNT(*) FROM votes').pluck().get()).toBe(0);
    expect(auditEntries(t.deps, 'vote.refused')).toHaveLength(4);
    expect(auditEntries(t.deps, 'command.refused')).toHaveLength(3);

    // Anyone may ask who they are; an approver gets through the same check.
    expect((await command(MALLORY, '/whoami')).text).toContain('You are not an approver');
    expect((await command(ALICE, '/pending')).text).toContain('Pending requests (1)');
    expect((await tapAndAnswer(t, bot, ALICE, m.message_id, approveShown)).text).toBe('Approved');
    expect((await t.deps.storage.requests.get(id))!.status).toBe('approved');
    expect(auditEntries(t.deps, 'vote.refused')).toHaveLength(4);
    expect(auditEntries(t.deps, 'command.refused')).toHaveLength(3);
  });
});
