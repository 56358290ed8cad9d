import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { claimCredential } from '../../../src/broker/claim.ts';
import { decideRequest } from '../../../src/broker/decide.ts';
import type { TgMessage } from '../../fakes/telegram-emulator/index.ts';
import { ALICE, CHAT_ID, MALLORY, TIER3_BODY, buttonsOf, startTelegramEnv, type TelegramTestEnv } from './helpers.ts';
import { sqliteDatabase } from '../../../src/storage/sqlite/index.ts';

let t: TelegramTestEnv;
beforeEach(async () => {
  t = await startTelegramEnv();
  await t.bot();
});
afterEach(async () => {
  await t.close();
});

/** Sends a command and waits for the bot's reply to it. */
async function command(userId: number, text: string, chatId = CHAT_ID): Promise<TgMessage> {
  const sent = t.emu.sendText(userId, text, { chatId });
  return t.emu.waitFor(
    () => t.emu.botMessages(chatId).find((m) => m.reply_to_message?.message_id === sent.message_id),
    5_000,
    `the reply to ${text}`,
  );
}

/** A tier-2 request approved and claimed: a live Vault token. */
async function issued(o: { posted?: boolean } = {}): Promise<{ id: string; accessor: string }> {
  const id = await t.request();
  if (o.posted) await t.waitMessage(id);
  await decideRequest(t.deps, id, { approver: 'local-cli', decision: 'approve' });
  const claimed = await claimCredential(t.deps, (await t.deps.storage.requests.get(id))!);
  return { id, accessor: (claimed.credential as { accessor: string }).accessor };
}

describe('/pending', () => {
  it('lists pending requests with id, agent, tier and age', async () => {
    const a = await t.request();
    t.clock.advance(3 * 60_000);
    const b = await t.request({ ...TIER3_BODY, reason: 'drop <old> & stale rows' });
    const reply = await command(ALICE, '/pending');
    expect(reply.text).toContain('Pending requests (2)');
    expect(reply.text).toMatch(new RegExp(`• ${a} — moltbot, tier 2, 3m old, times out in 7m`));
    expect(reply.text).toMatch(new RegExp(`• ${b} — moltbot, tier 3, 0s old, times out in 10m`));
    expect(reply.text).toContain('drop <old> & stale rows');
  });

  it('a reason cannot draw lines of its own in the list: it stays on its line, inert', async () => {
    const a = await t.request({ ...TIER3_BODY, reason: 'tidy up\n• req_00000000000000000000000000 — moltbot, tier 1\u202e' });
    const reply = await command(ALICE, '/pending');
    expect(reply.text).toMatch(new RegExp(`• ${a} — moltbot, tier 3, .*\\n  tidy up ⏎ • req_0{26} — moltbot, tier 1\\\\u\\{202E\\}$`));
    expect(reply.text!.split('\n').filter((l) => l.startsWith('• '))).toHaveLength(1);
  });

  it('works with the bot-name suffix used in groups', async () => {
    const reply = await command(ALICE, `/pending@${t.emu.botUser.username}`);
    expect(reply.text).toBe('No pending requests.');
  });

  it('is refused (and audited) for a non-approver', async () => {
    await t.request();
    const reply = await command(MALLORY, '/pending');
    expect(reply.text).toMatch(/Only approvers can use \/pending/);
    const row = sqliteDatabase(t.deps.storage).prepare(`SELECT actor, data FROM audit_log WHERE event = 'command.refused'`).get() as { actor: string; data: string };
    expect(row.actor).toBe(`telegram:${MALLORY}`);
    expect(JSON.parse(row.data)).toMatchObject({ command: 'pending' });
  });
});

describe('/revoke and /revokeall', () => {
  it('/revoke ends a live credential in Vault and the message shows who revoked it', async () => {
    const { id, accessor } = await issued({ posted: true });
    expect(await t.vault.lookupAccessor(accessor)).not.toBeNull();
    const reply = await command(ALICE, `/revoke ${id} leaked in a log`);
    expect(reply.text).toBe(`🚫 Revoked ${id} (was issued).`);
    const row = (await t.deps.storage.requests.get(id))!;
    expect(row.status).toBe('revoked');
    expect(row.decision_reason).toBe('leaked in a log');
    expect(await t.vault.lookupAccessor(accessor)).toBeNull();
    const m = await t.waitMessage(id, (x) => x.text!.includes('REVOKED'));
    expect(m.text).toMatch(new RegExp(`🚫 REVOKED by Alice \\(telegram:${ALICE}\\) at .* UTC\\nWhy: leaked in a log`));
    expect(m.text!.split('\n')[0]).toMatch(/^✅ APPROVED by local-cli/);
    expect(buttonsOf(m)).toEqual([]);
    const audit = sqliteDatabase(t.deps.storage).prepare(`SELECT actor FROM audit_log WHERE event = 'request.revoked'`).pluck().all();
    expect(audit).toEqual([`telegram:${ALICE}`]);
  });

  it('/revoke answers clearly for a bad id, an unknown id, and a request with nothing to revoke', async () => {
    expect((await command(ALICE, '/revoke')).text).toMatch(/^Usage: \/revoke req_…/);
    expect((await command(ALICE, '/revoke <b>x</b>')).text).toBe('<b>x</b> is not a request id (they look like req_…).');
    expect((await command(ALICE, '/revoke req_00000000000000000000000000')).text).toBe('No request req_00000000000000000000000000.');
    const id = await t.request();
    await decideRequest(t.deps, id, { approver: 'local-cli', decision: 'deny' });
    expect((await command(ALICE, `/revoke ${id}`)).text).toMatch(/^Could not revoke: request .* is denied; there is nothing to revoke$/);
  });

  it('/revoke of a pending request cancels it', async () => {
    const id = await t.request();
    await t.waitMessage(id);
    expect((await command(ALICE, `/revoke ${id}`)).text).toBe(`🚫 Revoked ${id} (was pending).`);
    const m = await t.waitMessage(id, (x) => buttonsOf(x).length === 0);
    expect(m.text).toMatch(/^🚫 REVOKED by Alice/);
  });

  it('/revokeall revokes every live credential and cancels unclaimed approvals', async () => {
    const one = await issued();
    const two = await issued();
    const approved = await t.request();
    await decideRequest(t.deps, approved, { approver: 'local-cli', decision: 'approve' });
    const pending = await t.request();

    const reply = await command(ALICE, '/revokeall');
    expect(reply.text).toBe('🚫 Revoke all: revoked 2 live credentials.\nCancelled 1 approved request not yet claimed.');
    for (const id of [one.id, two.id, approved]) expect((await t.deps.storage.requests.get(id))!.status).toBe('revoked');
    expect((await t.deps.storage.requests.get(pending))!.status).toBe('pending');
    expect(await t.vault.lookupAccessor(one.accessor)).toBeNull();
    expect(await t.vault.lookupAccessor(two.accessor)).toBeNull();

    expect((await command(ALICE, '/revokeall')).text).toBe('🚫 Revoke all: revoked 0 live credentials.');
  });

  it('/revokeall is refused for a non-approver and revokes nothing', async () => {
    const { id } = await issued();
    expect((await command(MALLORY, '/revokeall')).text).toMatch(/Only approvers can use \/revokeall/);
    expect((await t.deps.storage.requests.get(id))!.status).toBe('issued');
  });
});

describe('/whoami', () => {
  it('tells anyone their user id and the chat id, for setting up TELEGRAM_APPROVERS and TELEGRAM_CHAT_ID', async () => {
    const reply = await command(MALLORY, '/whoami');
    expect(reply.text).toContain(`Your Telegram user id: ${MALLORY}`);
    expect(reply.text).toContain(`This chat id: ${CHAT_ID}`);
    expect(reply.text).toContain('You are not an approver');
    const mine = await command(ALICE, '/start', ALICE);
    expect(mine.text).toContain('You are an approver.');
  });
});
