import NodeVault from 'node-vault';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { claimCredential } from '../../../src/broker/claim.ts';
import type { ApprovalBot } from '../../../src/telegram/index.ts';
import type { TgMessage } from '../../fakes/telegram-emulator/index.ts';
import { ALICE, BOB, CAROL, MALLORY, buttonsOf, startTelegramEnv, waitAnswers, type TelegramTestEnv } from '../telegram/helpers.ts';
import { sqliteDatabase } from '../../../src/storage/sqlite/index.ts';

/**
 * Approve with narrowing from Telegram, over the Bot API emulator, with the
 * development Vault checking what the minted token can really do.
 */
let t: TelegramTestEnv;
let bot: ApprovalBot;
let answered = 0;
beforeEach(async () => {
  t = await startTelegramEnv();
  bot = await t.bot();
  answered = 0;
});
afterEach(async () => {
  await t.close();
});

const WEB = 'homelab/data/apps/web';
const DB = 'homelab/data/apps/db';
const TWO_PATHS = {
  resource: 'vault',
  tier: 2,
  reason: 'rotate the web and db keys',
  vault_paths: [
    { path: WEB, capabilities: ['read', 'update'] },
    { path: DB, capabilities: ['read', 'update'] },
  ],
  ttl: '30m',
};

const vaultAs = (token: string) => NodeVault({ endpoint: t.config.vault!.addr, token, noCustomHTTPVerbs: true });
const root = () => vaultAs((t.config.vault!.auth as { token: string }).token);
const audit = (event: string) =>
  (sqliteDatabase(t.deps.storage).prepare('SELECT actor, request_id, data FROM audit_log WHERE event = ? ORDER BY seq').all(event) as { actor: string; request_id: string; data: string }[]).map((r) => ({
    ...r,
    data: JSON.parse(r.data) as Record<string, unknown>,
  }));

/** Taps a button by its callback data, waits for the bot's answer and for the message to be redrawn. */
async function tap(user: number, id: string, data: string, o: { force?: boolean; messageId?: number } = {}) {
  const m = t.messageFor(id)!;
  t.emu.tap(user, o.messageId ?? m.message_id, data, { force: o.force ?? false });
  answered++;
  const answer = (await waitAnswers(t.emu, answered))[answered - 1]!;
  await bot.kick();
  return answer;
}

/** The callback data of the button whose text contains `label`. */
function button(id: string, label: string): string {
  const m = t.messageFor(id)!;
  const b = (m.reply_markup?.inline_keyboard.flat() ?? []).find((x) => x.text.includes(label));
  if (!b?.callback_data) throw new Error(`no button "${label}" in ${JSON.stringify(m.reply_markup?.inline_keyboard.flat().map((x) => x.text))}`);
  return b.callback_data;
}

async function openPanel(id: string, user = ALICE): Promise<TgMessage> {
  await t.waitMessage(id);
  await tap(user, id, `n:${id}`);
  return t.waitMessage(id, (m) => buttonsOf(m).some((b) => b?.startsWith('g:')), 'the narrowing panel');
}

async function claim(id: string): Promise<{ token: string; accessor: string }> {
  const body = await claimCredential(t.deps, (await t.deps.storage.requests.get(id))!);
  return body.credential as { token: string; accessor: string };
}

const status = async (p: Promise<unknown>) =>
  p.then(
    () => 200,
    (err: { response?: { statusCode?: number } }) => err.response?.statusCode ?? -1,
  );

describe('narrowing from Telegram', () => {
  it('a shorter TTL: the panel shows the grant, the token lives 5 minutes, the message shows asked and granted', async () => {
    const id = await t.request({ ...TWO_PATHS, vault_paths: [{ path: WEB, capabilities: ['read', 'update'] }] });
    const panel = await openPanel(id);
    expect(panel.text).toContain('✂️ Narrowing — last change by Alice (telegram:111)');
    expect(buttonsOf(panel)).toContain(`d:${id}`);
    // Every button fits Telegram's 64 bytes.
    for (const data of buttonsOf(panel)) expect(Buffer.byteLength(data!)).toBeLessThanOrEqual(64);

    expect((await tap(ALICE, id, button(id, '5m'))).text).toBe('TTL: 5m');
    const shown = t.messageFor(id)!;
    expect(shown.text).toMatch(/✅ Approve as shown grants exactly:\n• homelab\/data\/apps\/web: read, update\nTTL: 5m \(asked 30m\)\nNot granted: TTL 30m → 5m/);
    // Tapping the same TTL again changes nothing (idempotent buttons).
    expect((await tap(ALICE, id, button(id, '5m'))).text).toBe('TTL: 5m');

    const approved = await tap(ALICE, id, button(id, 'Approve as shown'));
    expect(approved.text).toMatch(/^Approved, narrowed\. Not granted: TTL 30m → 5m/);
    const row = (await t.deps.storage.requests.get(id))!;
    expect(row).toMatchObject({ status: 'approved', granted_ttl_seconds: 300, ttl_seconds: 1800 });

    const edited = await t.waitMessage(id, (m) => buttonsOf(m).length === 0, 'the approved message');
    expect(edited.text).toMatch(/^✅ APPROVED by Alice \(telegram:111\) at .*\n⏳ Waiting for the agent to claim it .*\n✂️ NARROWED — granted less than asked:\n• homelab\/data\/apps\/web: read, update\nTTL: 5m \(asked 30m\)/);
    // The original request stays below, as asked.
    expect(edited.text).toContain('Vault paths (1):\n• homelab/data/apps/web: read, update\nTTL: 30m');

    const { accessor } = await claim(id);
    const info = await t.vault.lookupAccessor(accessor);
    expect(info!.ttlSeconds).toBeGreaterThan(0);
    expect(info!.ttlSeconds).toBeLessThanOrEqual(300);
    const narrowed = audit('grant.narrowed');
    expect(narrowed).toHaveLength(1);
    expect(narrowed[0]).toMatchObject({ actor: `telegram:${ALICE}`, request_id: id, data: { dropped: { ttl_seconds: { requested: 1800, granted: 300 } } } });
  });

  it('dropping a capability: write becomes read-only, and Vault refuses the dropped capability with 403', async () => {
    await root().write(WEB, { data: { key: 'web-key' } });
    const id = await t.request({ ...TWO_PATHS, vault_paths: [{ path: WEB, capabilities: ['read', 'update'] }] });
    await openPanel(id);
    const drop = button(id, 'drop update');
    expect((await tap(ALICE, id, drop)).text).toBe('Dropped update');
    expect(t.messageFor(id)!.text).toMatch(/grants exactly:\n• homelab\/data\/apps\/web: read\nTTL: 30m\nNot granted: update on homelab\/data\/apps\/web/);
    // A second tap of the same button (a double tap, a client with the old keyboard) changes nothing.
    expect((await tap(ALICE, id, drop, { force: true })).text).toBe('update is not granted');
    await tap(ALICE, id, button(id, 'Approve as shown'));
    expect((await t.deps.storage.requests.get(id))!.status).toBe('approved');

    const { token } = await claim(id);
    const agent = vaultAs(token);
    expect((await agent.read(WEB)).data.data).toEqual({ key: 'web-key' });
    expect(await status(agent.write(WEB, { data: { key: 'stolen' } }))).toBe(403);
    expect((await root().read(WEB)).data.data).toEqual({ key: 'web-key' });
  });

  it('dropping a path: the token cannot read it (403), the other path works', async () => {
    await root().write(WEB, { data: { key: 'web-key' } });
    await root().write(DB, { data: { key: 'db-key' } });
    const id = await t.request(TWO_PATHS);
    await openPanel(id);
    expect((await tap(ALICE, id, button(id, 'drop homelab/data/apps/db'))).text).toBe(`Dropped path ${DB}`);
    // Changed her mind, then dropped it again: keep/drop are separate, idempotent buttons.
    await tap(ALICE, id, button(id, 'keep homelab/data/apps/db'));
    await tap(ALICE, id, button(id, 'drop homelab/data/apps/db'));
    const panel = t.messageFor(id)!;
    expect(panel.text).toContain(`Not granted: path ${DB}`);
    expect(panel.reply_markup!.inline_keyboard.flat().map((b) => b.text)).toEqual(expect.arrayContaining(['✂️ drop homelab/data/apps/web', '↩️ keep homelab/data/apps/db']));

    await tap(BOB, id, button(id, 'Approve as shown'));
    const row = (await t.deps.storage.requests.get(id))!;
    expect(row.decided_by).toBe(`telegram:${BOB}`);
    expect(JSON.parse(row.granted_scope!)).toEqual({ vault_paths: [{ path: WEB, capabilities: ['read', 'update'] }] });

    const { token } = await claim(id);
    const agent = vaultAs(token);
    expect((await agent.read(WEB)).data.data).toEqual({ key: 'web-key' });
    expect(await status(agent.read(DB))).toBe(403);
    const approvedAudit = audit('request.approved')[0]!;
    expect(approvedAudit.data).toMatchObject({ narrowed: true, dropped: { dropped_paths: [DB] }, granted: { vault_paths: [{ path: WEB, capabilities: ['read', 'update'] }], ttl_seconds: 1800 } });
  });

  it('narrowing to nothing is refused with a clear message', async () => {
    const id = await t.request({ ...TWO_PATHS, vault_paths: [{ path: WEB, capabilities: ['read', 'update'] }] });
    await openPanel(id);
    await tap(ALICE, id, button(id, 'drop read'));
    // Only `update` is left; dropping it would leave nothing.
    const refused = await tap(ALICE, id, button(id, 'drop update'));
    expect(refused).toMatchObject({ show_alert: true, text: 'That would leave nothing to grant. To refuse the request, tap ❌ Deny.' });
    expect(t.messageFor(id)!.text).toMatch(/grants exactly:\n• homelab\/data\/apps\/web: update\n/);
    expect((await t.deps.storage.requests.get(id))!.status).toBe('pending');
  });

  it('refuses forged callback data naming a wider grant, and records it', async () => {
    const id = await t.request({ ...TWO_PATHS, vault_paths: [{ path: WEB, capabilities: ['read', 'update'] }] });
    await openPanel(id);
    const panelId = /^g:([a-z2-7]{10}):/.exec(button(id, 'Approve as shown'))![1]!;
    const forged = [
      `g:${panelId}:t:86400`, // a TTL longer than asked
      `g:${panelId}:t:1799`, // a TTL no panel offers
      `g:${panelId}:+c:delete`, // a capability never asked for
      `g:${panelId}:+c:sudo`,
      `g:${panelId}:+p:5`, // a path that does not exist
      `g:${panelId}:-r:0`, // refs on a Vault request
    ];
    for (const data of forged) {
      const a = await tap(ALICE, id, data, { force: true });
      expect(a.show_alert, data).toBe(true);
      expect(a.text, data).toMatch(/^Refused: .*This attempt has been recorded\.$/);
    }
    expect(audit('callback.refused').map((r) => (r.data as { data: string }).data)).toEqual(forged);
    // Nothing changed: approving now grants exactly what was asked.
    await tap(ALICE, id, button(id, 'Approve as shown'));
    const row = (await t.deps.storage.requests.get(id))!;
    expect(row.status).toBe('approved');
    expect(row.granted_ttl_seconds).toBe(1800);
    expect(JSON.parse(row.granted_scope!)).toEqual({ vault_paths: [{ path: WEB, capabilities: ['read', 'update'] }] });
  });

  it('binds every button to its own request: buttons of request B under request A\'s message are refused', async () => {
    const a = await t.request();
    const b = await t.request();
    const msgA = await t.waitMessage(a);
    await openPanel(b);
    const panelB = button(b, '5m');
    for (const data of [`a:${b}`, `d:${b}`, `n:${b}`, panelB]) {
      const answer = await tap(ALICE, a, data, { force: true, messageId: msgA.message_id });
      expect(answer.show_alert, data).toBe(true);
      expect(answer.text, data).toMatch(/does not belong to this message/);
    }
    expect((await t.deps.storage.requests.get(a))!.status).toBe('pending');
    expect((await t.deps.storage.requests.get(b))!.status).toBe('pending');
    expect(t.messageFor(b)!.text).not.toContain('TTL: 5m');
    expect(audit('callback.refused')).toHaveLength(4);
    expect(sqliteDatabase(t.deps.storage).prepare('SELECT COUNT(*) FROM votes').pluck().get()).toBe(0);
  });

  it('"Approve as shown" approves only the grant that screen showed: a stale keyboard is refused', async () => {
    const id = await t.request(TWO_PATHS);
    await openPanel(id);
    const aliceSees = button(id, 'Approve as shown');
    // Bob narrows, then restores the path: the grant is the same but the panel moved on.
    await tap(BOB, id, button(id, 'drop homelab/data/apps/db'));
    await tap(BOB, id, button(id, 'keep homelab/data/apps/db'));
    const stale = await tap(ALICE, id, aliceSees, { force: true });
    expect(stale).toMatchObject({ show_alert: true, text: 'The narrowing changed since your screen was drawn; nothing was approved. Check the message and tap again.' });
    expect((await t.deps.storage.requests.get(id))!.status).toBe('pending');
    expect((await tap(ALICE, id, button(id, 'Approve as shown'))).text).toBe('Approved');
  });

  it('Back closes the panel; its old buttons stop working', async () => {
    const id = await t.request(TWO_PATHS);
    await openPanel(id);
    const old = button(id, 'drop homelab/data/apps/db');
    await tap(ALICE, id, button(id, 'Back'));
    expect(buttonsOf(t.messageFor(id))).toEqual([`a:${id}`, `d:${id}`, `n:${id}`]);
    expect((await tap(ALICE, id, old, { force: true })).text).toMatch(/narrowing panel is closed/);
    expect((await t.deps.storage.requests.get(id))!.status).toBe('pending');
  });

  it('the policy in force re-checks the grant: a path denied since the request must be narrowed away', async () => {
    const id = await t.request(TWO_PATHS);
    await t.waitMessage(id);
    const file = join(t.config.policiesDir, 'test.yaml');
    writeFileSync(file, readFileSync(file, 'utf8').replace('deny:\n', `deny:\n  - paths: ["${DB}"]\n`));
    expect(t.deps.policies.reload(t.config.policiesDir).ok).toBe(true);

    const plain = await tap(ALICE, id, `a:${id}`);
    expect(plain.show_alert).toBe(true);
    expect(plain.text).toMatch(/^Not approved: the policy in force no longer allows this grant: "homelab\/data\/apps\/db" is denied by policy/);
    expect((await t.deps.storage.requests.get(id))!.status).toBe('pending');

    await openPanel(id);
    await tap(ALICE, id, button(id, 'drop homelab/data/apps/db'));
    expect((await tap(ALICE, id, button(id, 'Approve as shown'))).text).toBe(`Approved, narrowed. Not granted: path ${DB}`);
    expect(audit('approval.refused')).toHaveLength(1);
  });

  it('only approvers can narrow', async () => {
    const id = await t.request();
    await t.waitMessage(id);
    const refused = await tap(MALLORY, id, `n:${id}`);
    expect(refused).toMatchObject({ show_alert: true });
    expect(refused.text).toMatch(/not an approver/);
    expect(buttonsOf(t.messageFor(id))).toEqual([`a:${id}`, `d:${id}`, `n:${id}`]);
    await openPanel(id);
    expect((await tap(MALLORY, id, button(id, '5m'))).text).toMatch(/not an approver/);
    expect(audit('vote.refused').map((r) => r.actor)).toEqual([`telegram:${MALLORY}`, `telegram:${MALLORY}`]);
  });
});

describe('tier 3: quorum votes and narrowing', () => {
  const PROD = {
    resource: 'vault',
    tier: 3,
    reason: 'delete two retired prod secrets',
    vault_paths: [
      { path: 'homelab/data/prod/db', capabilities: ['delete'] },
      { path: 'homelab/data/prod/cache', capabilities: ['delete'] },
    ],
  };

  it('every approver sees the current grant; a later approver narrows further but cannot widen; earlier votes still count', async () => {
    const id = await t.request(PROD);
    await openPanel(id, ALICE);
    await tap(ALICE, id, button(id, 'drop homelab/data/prod/cache'));
    expect((await tap(ALICE, id, button(id, 'Approve as shown'))).text).toBe('Approval recorded: 1 of 2 (tier 3); the grant is narrowed (see the message)');
    expect((await t.deps.storage.requests.get(id))!.status).toBe('pending');

    // Everyone now sees what the next approval would grant; the panel is closed.
    const after = t.messageFor(id)!;
    expect(after.text).toMatch(/✂️ Narrowed by an earlier approval — ✅ Approve grants exactly:\n• homelab\/data\/prod\/db: delete\nTTL: 10m\nNot granted: path homelab\/data\/prod\/cache/);
    expect(after.text).toContain(`Votes: 1 of 2 approvals — ✅ Alice (telegram:${ALICE}) ✂️`);
    expect(buttonsOf(after)).toEqual([`a:${id}`, `d:${id}`, `n:${id}`]);

    // Bob's panel has no way back to the dropped path; a forged one is refused.
    await openPanel(id, BOB);
    const panelId = /^g:([a-z2-7]{10}):/.exec(button(id, 'Approve as shown'))![1]!;
    expect(buttonsOf(t.messageFor(id)).some((b) => b?.includes(':+p:') || b?.includes(':-p:'))).toBe(false);
    const widen = await tap(BOB, id, `g:${panelId}:+p:1`, { force: true });
    expect(widen.text).toMatch(/dropped by an earlier approval; it cannot be added back/);
    await tap(BOB, id, button(id, '5m'));
    expect((await tap(BOB, id, button(id, 'Approve as shown'))).text).toMatch(/^Approved \(quorum reached, tier 3\), narrowed\. Not granted: path homelab\/data\/prod\/cache; TTL 10m → 5m/);

    const row = (await t.deps.storage.requests.get(id))!;
    expect(row.status).toBe('approved');
    expect(row.decided_by).toBe(`telegram:${ALICE}, telegram:${BOB}`);
    expect(JSON.parse(row.granted_scope!)).toEqual({ vault_paths: [{ path: 'homelab/data/prod/db', capabilities: ['delete'] }] });
    expect(row.granted_ttl_seconds).toBe(300);
    const done = await t.waitMessage(id, (m) => buttonsOf(m).length === 0);
    expect(done.text).toContain('✂️ NARROWED — granted less than asked:\n• homelab/data/prod/db: delete\nTTL: 5m (asked 10m)');
    expect(audit('grant.narrowed').map((r) => r.actor)).toEqual([`telegram:${ALICE}`, `telegram:${BOB}`]);
  });

  it('a plain Approve after a narrowing vote approves the narrowed grant, never the original', async () => {
    const id = await t.request(PROD);
    await openPanel(id, ALICE);
    await tap(ALICE, id, button(id, 'drop homelab/data/prod/cache'));
    await tap(ALICE, id, button(id, 'Approve as shown'));
    expect((await tap(CAROL, id, `a:${id}`)).text).toBe('Approved (quorum reached, tier 3), narrowed. Not granted: path homelab/data/prod/cache');
    expect(JSON.parse((await t.deps.storage.requests.get(id))!.granted_scope!)).toEqual({ vault_paths: [{ path: 'homelab/data/prod/db', capabilities: ['delete'] }] });
  });
});
