import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { addApprover, removeApprover } from '../../../src/broker/approvers.ts';
import { decideRequest } from '../../../src/broker/decide.ts';
import { BrokerError } from '../../../src/broker/errors.ts';
import type { CliIo } from '../../../src/lib/cli-io.ts';
import { runCli } from '../../../src/cli/main.ts';
import { dirname, join } from 'node:path';
import type { ApprovalBot } from '../../../src/telegram/index.ts';
import type { TgMessage } from '../../fakes/telegram-emulator/index.ts';
import { sqliteDatabase } from '../../../src/storage/sqlite/index.ts';
import { ALICE, CAROL, CHAT_ID, MALLORY, TIER3_BODY, auditEntries, startTelegramEnv, tapAndAnswer, type TelegramTestEnv } from './helpers.ts';

/**
 * Approvers as people in Telegram (SPEC §12): a Telegram user id registered
 * with `jit approver add NAME --telegram-id ID` may decide even when
 * TELEGRAM_APPROVERS does not list it, and votes as the approver
 * (`approver:<id>`); removal takes the right away at once (unless
 * TELEGRAM_APPROVERS lists the id); one person has one vote per request
 * whichever identity they use.
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

const votes = (id: string) => sqliteDatabase(t.deps.storage).prepare('SELECT approver, decision FROM votes WHERE request_id = ? ORDER BY at, approver').all(id);

async function command(userId: number, text: string): Promise<TgMessage> {
  const sent = t.emu.sendText(userId, text, { chatId: CHAT_ID });
  return t.emu.waitFor(() => t.emu.botMessages(CHAT_ID).find((m) => m.reply_to_message?.message_id === sent.message_id), 5_000, `the reply to ${text}`);
}

describe('a registered approver in Telegram', () => {
  it('decides without being in TELEGRAM_APPROVERS, as the approver; after removal is refused at once', async () => {
    // Mallory is not in TELEGRAM_APPROVERS (the env lists Alice, Bob, Carol).
    const { approver } = await addApprover(t.deps, { name: 'mallory', telegramId: String(MALLORY) });
    expect((await command(MALLORY, '/whoami')).text).toContain('You are an approver.');

    const id = await t.request();
    const m = await t.waitMessage(id);
    expect((await tapAndAnswer(t, bot, MALLORY, m.message_id, `a:${id}`)).text).toBe('Approved');
    expect(votes(id)).toEqual([{ approver: `approver:${approver.id}`, decision: 'approve' }]);
    expect((await t.deps.storage.requests.get(id))!.decided_by).toBe(`approver:${approver.id}`);
    expect(auditEntries(t.deps, 'vote.cast').at(-1)).toMatchObject({ actor: `approver:${approver.id}`, request_id: id, data: { via: `telegram:${MALLORY}` } });
    // The message names the person by their approver name.
    const done = await t.waitMessage(id, (x) => x.text!.startsWith('✅ APPROVED'));
    expect(done.text!.split('\n')[0]).toContain('APPROVED by mallory (approver)');

    // Removed: the very next tap is refused and audited; nothing changes.
    expect(await removeApprover(t.deps, 'mallory')).toMatchObject({ approver: { id: approver.id }, sessionsEnded: 0, passkeysRemoved: 0 });
    const next = await t.request();
    const m2 = await t.waitMessage(next);
    expect((await tapAndAnswer(t, bot, MALLORY, m2.message_id, `a:${next}`)).text).toMatch(/not an approver/);
    expect((await t.deps.storage.requests.get(next))!.status).toBe('pending');
    expect(votes(next)).toEqual([]);
    expect(auditEntries(t.deps, 'vote.refused').at(-1)).toMatchObject({ actor: `telegram:${MALLORY}`, request_id: next });
    expect((await command(MALLORY, '/whoami')).text).toContain('You are not an approver');
    expect(auditEntries(t.deps, 'approver.removed').at(-1)).toMatchObject({ actor: 'operator', data: { approver: 'mallory', telegram_id: String(MALLORY) } });
  });

  it("withdraws a removed approver's approval of a pending tier-3 request: one more vote no longer reaches the quorum", async () => {
    await addApprover(t.deps, { name: 'mallory', telegramId: String(MALLORY) });
    const id = await t.request(TIER3_BODY);
    const m = await t.waitMessage(id);
    expect((await tapAndAnswer(t, bot, MALLORY, m.message_id, `a:${id}`)).text).toBe('Approval recorded: 1 of 2 (tier 3)');
    await removeApprover(t.deps, 'mallory');
    expect((await tapAndAnswer(t, bot, CAROL, m.message_id, `a:${id}`)).text).toBe('Approval recorded: 1 of 2 (tier 3)');
    expect((await t.deps.storage.requests.get(id))!.status).toBe('pending');
    expect((await tapAndAnswer(t, bot, ALICE, m.message_id, `a:${id}`)).text).toBe('Approved (quorum reached, tier 3)');
    expect((await t.deps.storage.requests.get(id))!.decided_by!.split(', ').sort()).toEqual([`telegram:${ALICE}`, `telegram:${CAROL}`].sort());
  });

  it('keeps the right of a removed approver whose id TELEGRAM_APPROVERS lists, still one vote per person', async () => {
    const { approver } = await addApprover(t.deps, { name: 'alice', telegramId: String(ALICE) });
    const id = await t.request(TIER3_BODY);
    const m = await t.waitMessage(id);
    expect((await tapAndAnswer(t, bot, ALICE, m.message_id, `a:${id}`)).text).toBe('Approval recorded: 1 of 2 (tier 3)');
    await removeApprover(t.deps, 'alice');
    // The removal withdrew her approval (it no longer counts); she is still a Telegram-only approver, so she
    // may vote again, as that identity, and it is still one vote of one person: a third tap is a duplicate.
    expect((await tapAndAnswer(t, bot, ALICE, m.message_id, `a:${id}`)).text).toBe('Approval recorded: 1 of 2 (tier 3)');
    expect(votes(id)).toEqual([
      { approver: `approver:${approver.id}`, decision: 'approve' },
      { approver: `telegram:${ALICE}`, decision: 'approve' },
    ]);
    expect((await tapAndAnswer(t, bot, ALICE, m.message_id, `a:${id}`)).text).toBe('You already voted (1 of 2 approvals so far)');
    expect(auditEntries(t.deps, 'vote.duplicate').at(-1)).toMatchObject({ actor: `telegram:${ALICE}` });
    // On a new request she votes as her Telegram identity.
    const other = await t.request();
    const m2 = await t.waitMessage(other);
    expect((await tapAndAnswer(t, bot, ALICE, m2.message_id, `a:${other}`)).text).toBe('Approved');
    expect(votes(other)).toEqual([{ approver: `telegram:${ALICE}`, decision: 'approve' }]);
  });
});

describe('one vote per person per request, whichever channel', () => {
  it('counts a Telegram tap and a console-style vote of the same approver once; the tier-3 quorum counts people', async () => {
    const { approver } = await addApprover(t.deps, { name: 'alice', telegramId: String(ALICE) });
    const id = await t.request(TIER3_BODY);
    const m = await t.waitMessage(id);
    expect((await tapAndAnswer(t, bot, ALICE, m.message_id, `a:${id}`)).text).toBe('Approval recorded: 1 of 2 (tier 3)');
    // The console decides through the same verb, as `approver:<id>`: the same person, no second vote.
    const again = await decideRequest({ ...t.deps, policies: t.deps.policies }, id, { approver: `approver:${approver.id}`, decision: 'approve' });
    expect(again).toMatchObject({ outcome: 'already_voted', approvals: 1, needed: 2 });
    // A second person reaches the quorum.
    expect((await tapAndAnswer(t, bot, CAROL, m.message_id, `a:${id}`)).text).toBe('Approved (quorum reached, tier 3)');
    expect((await t.deps.storage.requests.get(id))!.decided_by).toBe(`approver:${approver.id}, telegram:${CAROL}`);
    // `jit requests show` names the approver.
    const out: string[] = [];
    const io: CliIo = { env: { JIT_DB: t.dbPath, JIT_POLICIES: join(dirname(t.dbPath), 'policies') }, out: (l) => out.push(l), err: () => {} };
    expect(await runCli(['requests', 'show', id], io)).toBe(0);
    expect(out.join('\n')).toMatch(new RegExp(`^Votes:\\n\\s+approver:${approver.id} \\(alice\\)\\s+approve\\s.*\\n\\s+telegram:${CAROL}\\s+approve`, 'm'));
  });

  it('recognises a vote cast under the Telegram identity before the person was registered', async () => {
    const id = await t.request(TIER3_BODY);
    const m = await t.waitMessage(id);
    expect((await tapAndAnswer(t, bot, ALICE, m.message_id, `a:${id}`)).text).toBe('Approval recorded: 1 of 2 (tier 3)');
    const { approver } = await addApprover(t.deps, { name: 'alice', telegramId: String(ALICE) });
    expect(await decideRequest(t.deps, id, { approver: `approver:${approver.id}`, decision: 'approve' })).toMatchObject({ outcome: 'already_voted' });
    expect((await tapAndAnswer(t, bot, ALICE, m.message_id, `a:${id}`)).text).toBe('You already voted (1 of 2 approvals so far)');
    expect(votes(id)).toEqual([{ approver: `telegram:${ALICE}`, decision: 'approve' }]);
  });

  it('refuses, inside the decision, a Telegram tap whose approver was removed after the approver check', async () => {
    await addApprover(t.deps, { name: 'mallory', telegramId: String(MALLORY) });
    await removeApprover(t.deps, 'mallory');
    const id = await t.request();
    // What the button handler would do had the removal landed just after its check.
    const result = await decideRequest(t.deps, id, { approver: `telegram:${MALLORY}`, decision: 'deny' });
    expect(result).toMatchObject({ outcome: 'refused', code: 'FORBIDDEN' });
    expect((await t.deps.storage.requests.get(id))!.status).toBe('pending');
    expect(votes(id)).toEqual([]);
    expect(auditEntries(t.deps, 'vote.refused').at(-1)).toMatchObject({ actor: `telegram:${MALLORY}`, request_id: id, data: { decision: 'deny' } });
    // A TELEGRAM_APPROVERS member is unaffected.
    expect(await decideRequest(t.deps, id, { approver: `telegram:${CAROL}`, decision: 'deny' })).toMatchObject({ outcome: 'denied' });
  });

  it('refuses a removed approver deciding as themselves (the console path), nothing changed', async () => {
    const { approver } = await addApprover(t.deps, { name: 'dora' });
    await removeApprover(t.deps, 'dora');
    const id = await t.request();
    const err = await decideRequest(t.deps, id, { approver: `approver:${approver.id}`, decision: 'approve' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BrokerError);
    expect((err as BrokerError).code).toBe('FORBIDDEN');
    expect((await t.deps.storage.requests.get(id))!.status).toBe('pending');
    expect(votes(id)).toEqual([]);
  });
});
