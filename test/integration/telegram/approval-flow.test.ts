import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { decideRequest } from '../../../src/broker/decide.ts';
import { sweep } from '../../../src/broker/lifecycle.ts';
import { REQUEST_LIMITS } from '../../../src/wire/schemas.ts';
import { ALICE, BOB, CAROL, CHAT_ID, MALLORY, TIER3_BODY, buttonsOf, startTelegramEnv, waitAnswers, type TelegramTestEnv } from './helpers.ts';
import { sqliteDatabase } from '../../../src/storage/sqlite/index.ts';

let t: TelegramTestEnv;
beforeEach(async () => {
  t = await startTelegramEnv();
});
afterEach(async () => {
  await t.close();
});

const audit = (event: string) =>
  sqliteDatabase(t.deps.storage).prepare('SELECT actor, request_id, data FROM audit_log WHERE event = ? ORDER BY seq').all(event) as { actor: string; request_id: string; data: string }[];

describe('posting', () => {
  it('posts the whole request, HTML-escaped, with Approve and Deny', async () => {
    await t.bot();
    const id = await t.request({
      resource: 'vault',
      tier: 1,
      reason: 'fix <script>alert("x")</script> & rotate "keys" <b>now</b>',
      vault_paths: [
        { path: 'homelab/data/apps/a<b>&c', capabilities: ['read', 'update'] },
        { path: 'homelab/data/apps/web', capabilities: ['create'] },
      ],
      ttl: '20m',
      session_key: 'hook:jit:moltbot-<x>',
    });
    const m = await t.waitMessage(id);
    const text = m.text!;
    // Telegram shows the decoded text: the agent's markup appears literally, not as formatting.
    expect(text).toContain(`Request: ${id}`);
    expect(text).toContain('Agent: moltbot');
    expect(text).toContain('Session: hook:jit:moltbot-<x>');
    expect(text).toContain('Tier: 2 (agent asked for 1; policy requires 2)');
    expect(text).toContain('Reason (written by the agent, quoted as sent):\nfix <script>alert("x")</script> & rotate "keys" <b>now</b>');
    expect(text).toContain('Vault paths (2):');
    expect(text).toContain('• homelab/data/apps/a<b>&c: read, update');
    expect(text).toContain('• homelab/data/apps/web: create');
    expect(text).toContain('TTL: 20m');
    expect(text).toContain('Policy rules: homelab-write');
    const row = (await t.deps.storage.requests.get(id))!;
    expect(text).toContain(`Times out: ${new Date(row.approval_expires_at!).toISOString().slice(0, 19).replace('T', ' ')} UTC (10m after the request)`);
    // JIT_PUBLIC_URL is set (the helpers' http://127.0.0.1:1): the message links the request in the console.
    expect(text).toContain(`Console: http://127.0.0.1:1/console/requests/${id}`);
    expect((m.entities ?? []).filter((e) => e.type === 'text_link').map((e) => (e as { url?: string }).url)).toEqual([`http://127.0.0.1:1/console/requests/${id}`]);
    expect(text).not.toMatch(/&(lt|gt|amp|quot);/);
    // Only the bot's own formatting became entities.
    const bold = (m.entities ?? []).filter((e) => e.type === 'bold').map((e) => text.slice(e.offset, e.offset + e.length));
    expect(bold).not.toContain('now');
    expect(bold).toContain('Reason');
    expect(buttonsOf(m)).toEqual([`a:${id}`, `d:${id}`, `n:${id}`]);
    expect(Buffer.byteLength(`a:${id}`)).toBeLessThanOrEqual(64);
  });

  it('shows every pair of the largest request allowed (32 paths of 1280 characters), before and after a decision', async () => {
    await t.bot();
    const paths = Array.from({ length: REQUEST_LIMITS.items }, (_, i) => {
      const head = `homelab/data/bulk/${String(i).padStart(2, '0')}-`;
      return { path: head + 'x'.repeat(REQUEST_LIMITS.itemsCharacters / REQUEST_LIMITS.items - head.length), capabilities: ['read', 'create', 'update'] };
    });
    const id = await t.request({ resource: 'vault', tier: 2, reason: `<${'r'.repeat(1990)}>`, vault_paths: paths });
    const m = await t.waitMessage(id);
    const text = m.text!;
    expect(text.length).toBeLessThanOrEqual(4096);
    expect(text).toContain(`Request: ${id}`);
    expect(text).toContain('Vault paths (32):');
    for (const p of paths) expect(text).toContain(`• ${p.path}: read, create, update\n`);
    expect(text).not.toMatch(/… and \d+ more/);
    expect(text).toMatch(/Times out: .* UTC/);
    // The reason gives way, with a pointer to the whole of it.
    expect(text).toMatch(new RegExp(`\\n<r+… \\(reason shortened: 1992 characters in all; see jit requests show ${id}\\)`));
    expect(buttonsOf(m)).toEqual([`a:${id}`, `d:${id}`, `n:${id}`]);

    // The edit after a decision shows every pair too.
    t.emu.tap(ALICE, m.message_id, `d:${id}`);
    const denied = await t.waitMessage(id, (x) => x.text!.startsWith('❌ DENIED'));
    expect(denied.text!.length).toBeLessThanOrEqual(4096);
    for (const p of paths) expect(denied.text).toContain(`• ${p.path}: read, create, update\n`);
  });

  it('posts requests that became pending while no bot ran, once each, and skips tier 1', async () => {
    const a = await t.request();
    const b = await t.request(TIER3_BODY);
    const tier1 = await t.request({ resource: 'vault', tier: 1, reason: 'read', vault_paths: [{ path: 'homelab/data/docker/x', capabilities: ['read'] }] }).catch(() => undefined);
    const bot = await t.bot();
    await t.waitMessage(a);
    await t.waitMessage(b);
    await bot.kick();
    await bot.kick();
    expect(t.emu.botMessages(CHAT_ID)).toHaveLength(2);
    if (tier1) expect(t.messageFor(tier1)).toBeUndefined();
  });
});

describe('tier 2 decisions', () => {
  it('an approver approves: the request is approved and the message shows who above the request, without buttons', async () => {
    await t.bot();
    const id = await t.request();
    const posted = await t.waitMessage(id);
    t.emu.tap(ALICE, posted.message_id, `a:${id}`);
    const [answer] = await waitAnswers(t.emu, 1);
    expect(answer).toMatchObject({ from: ALICE, text: 'Approved' });
    const row = (await t.deps.storage.requests.get(id))!;
    expect(row.status).toBe('approved');
    expect(row.decided_by).toBe(`telegram:${ALICE}`);

    const m = await t.waitMessage(id, (x) => buttonsOf(x).length === 0, 'the edited message');
    const text = m.text!;
    expect(text.split('\n')[0]).toMatch(new RegExp(`^✅ APPROVED by Alice \\(telegram:${ALICE}\\) at \\d{4}-\\d\\d-\\d\\d \\d\\d:\\d\\d:\\d\\d UTC$`));
    expect(text.indexOf('APPROVED')).toBeLessThan(text.indexOf(`Request: ${id}`));
    expect(text).toContain('Reason (written by the agent, quoted as sent):\nrotate the web app key');
    expect(text).toContain('• homelab/data/apps/web: read, update');
    expect(text).toContain('Waiting for the agent to claim it');
    expect(audit('vote.cast').map((a) => a.actor)).toEqual([`telegram:${ALICE}`]);
  });

  it('an approver denies: denied, buttons removed', async () => {
    await t.bot();
    const id = await t.request();
    const posted = await t.waitMessage(id);
    t.emu.tap(BOB, posted.message_id, `d:${id}`);
    expect((await waitAnswers(t.emu, 1))[0]!.text).toBe('Denied');
    expect((await t.deps.storage.requests.get(id))!.status).toBe('denied');
    const m = await t.waitMessage(id, (x) => x.text!.startsWith('❌ DENIED'));
    expect(m.text).toContain(`DENIED by Bob (telegram:${BOB})`);
    expect(buttonsOf(m)).toEqual([]);
  });

  it('a non-approver is refused with an alert, audited, and changes nothing', async () => {
    await t.bot();
    const id = await t.request();
    const posted = await t.waitMessage(id);
    t.emu.tap(MALLORY, posted.message_id, `a:${id}`);
    const [answer] = await waitAnswers(t.emu, 1);
    expect(answer).toMatchObject({ from: MALLORY, show_alert: true });
    expect(answer!.text).toMatch(/not an approver/);
    expect((await t.deps.storage.requests.get(id))!.status).toBe('pending');
    const refused = audit('vote.refused');
    expect(refused).toHaveLength(1);
    expect(refused[0]).toMatchObject({ actor: `telegram:${MALLORY}`, request_id: id });
    expect(JSON.parse(refused[0]!.data)).toMatchObject({ decision: 'approve', username: 'mallory' });
    expect(sqliteDatabase(t.deps.storage).prepare('SELECT COUNT(*) FROM votes').pluck().get()).toBe(0);
    const after = t.messageFor(id)!;
    expect(after.text).toBe(posted.text);
    expect(buttonsOf(after)).toEqual([`a:${id}`, `d:${id}`, `n:${id}`]);
  });

  it('two approvers tapping at once: exactly one decision, the second is told who approved', async () => {
    const bot = await t.bot();
    const id = await t.request();
    const posted = await t.waitMessage(id);
    await bot.stop(); // queue both taps, then let a fresh bot take them in one getUpdates batch
    t.emu.tap(ALICE, posted.message_id, `a:${id}`);
    t.emu.tap(BOB, posted.message_id, `a:${id}`);
    await t.bot();
    const answers = await waitAnswers(t.emu, 2);
    const byUser = Object.fromEntries(answers.map((a) => [a.from, a.text]));
    expect(byUser[ALICE]).toBe('Approved');
    expect(byUser[BOB]).toBe(`Already approved by Alice (telegram:${ALICE})`);
    expect(audit('request.approved')).toHaveLength(1);
    expect(audit('vote.ignored')).toHaveLength(1);
    expect(sqliteDatabase(t.deps.storage).prepare('SELECT COUNT(*) FROM votes WHERE request_id = ?').pluck().get(id)).toBe(1);
  });

  it('a decision made elsewhere (jit approve) is shown too', async () => {
    const bot = await t.bot();
    const id = await t.request();
    await t.waitMessage(id);
    await decideRequest(t.deps, id, { approver: 'local-cli', decision: 'approve' });
    await bot.kick();
    const m = t.messageFor(id)!;
    expect(m.text).toMatch(/^✅ APPROVED by local-cli at /);
    expect(buttonsOf(m)).toEqual([]);
  });
});

describe('tier 3 quorum', () => {
  it('needs two distinct approvers; the same approver twice does not count; votes show on the message', async () => {
    await t.bot();
    const id = await t.request(TIER3_BODY);
    const posted = await t.waitMessage(id);
    expect(posted.text).toContain('Approval needed — tier 3, 2 distinct approvers');

    t.emu.tap(ALICE, posted.message_id, `a:${id}`);
    expect((await waitAnswers(t.emu, 1))[0]!.text).toBe('Approval recorded: 1 of 2 (tier 3)');
    const one = await t.waitMessage(id, (m) => m.text!.includes('Votes: 1 of 2 approvals'));
    expect(one.text).toContain(`Votes: 1 of 2 approvals — ✅ Alice (telegram:${ALICE})`);
    expect(buttonsOf(one)).toEqual([`a:${id}`, `d:${id}`, `n:${id}`]);

    t.emu.tap(ALICE, posted.message_id, `a:${id}`);
    expect((await waitAnswers(t.emu, 2))[1]!.text).toBe('You already voted (1 of 2 approvals so far)');
    expect((await t.deps.storage.requests.get(id))!.status).toBe('pending');

    t.emu.tap(CAROL, posted.message_id, `a:${id}`);
    expect((await waitAnswers(t.emu, 3))[2]!.text).toBe('Approved (quorum reached, tier 3)');
    expect((await t.deps.storage.requests.get(id))!.status).toBe('approved');
    const done = await t.waitMessage(id, (m) => buttonsOf(m).length === 0);
    expect(done.text!.split('\n')[0]).toContain(`APPROVED by Alice (telegram:${ALICE}), Carol (telegram:${CAROL})`);
    expect(done.text).toContain('Votes: 2 of 2 approvals');
  });

  it('any deny ends it', async () => {
    await t.bot();
    const id = await t.request(TIER3_BODY);
    const posted = await t.waitMessage(id);
    t.emu.tap(ALICE, posted.message_id, `a:${id}`);
    await waitAnswers(t.emu, 1);
    t.emu.tap(BOB, posted.message_id, `d:${id}`);
    expect((await waitAnswers(t.emu, 2))[1]!.text).toBe('Denied');
    expect((await t.deps.storage.requests.get(id))!.status).toBe('denied');
    const m = await t.waitMessage(id, (x) => buttonsOf(x).length === 0);
    expect(m.text).toMatch(/^❌ DENIED by Bob/);
    expect(m.text).toContain(`Votes: 1 of 2 approvals — ✅ Alice (telegram:${ALICE}), ❌ Bob (telegram:${BOB})`);
  });
});

describe('timeouts', () => {
  it('a request that times out gets its message edited and a late tap is told so', async () => {
    const bot = await t.bot();
    const id = await t.request();
    const posted = await t.waitMessage(id);
    t.clock.advance(t.config.approvalTimeoutSeconds * 1000 + 1);
    await sweep(t.deps);
    await bot.kick();
    const m = t.messageFor(id)!;
    expect(m.text).toMatch(/^⌛ TIMED OUT at .*: no decision before the approval deadline\./);
    expect(m.text).toContain(`Request: ${id}`);
    expect(buttonsOf(m)).toEqual([]);

    // A client still showing the old keyboard.
    t.emu.tap(ALICE, posted.message_id, `a:${id}`, { force: true });
    expect((await waitAnswers(t.emu, 1))[0]!.text).toBe('Too late: the request timed out');
    expect((await t.deps.storage.requests.get(id))!.status).toBe('timed_out');
  });

  it('a tap after the deadline but before the sweep times the request out instead of approving it', async () => {
    await t.bot();
    const id = await t.request();
    const posted = await t.waitMessage(id);
    t.clock.advance(t.config.approvalTimeoutSeconds * 1000 + 1);
    t.emu.tap(ALICE, posted.message_id, `a:${id}`);
    expect((await waitAnswers(t.emu, 1))[0]!.text).toBe('Too late: the request timed out');
    await t.waitMessage(id, (m) => m.text!.startsWith('⌛ TIMED OUT'));
  });
});
