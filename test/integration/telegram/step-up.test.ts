import { dirname, join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { runCli } from '../../../src/cli/main.ts';
import type { CliIo } from '../../../src/lib/cli-io.ts';
import { sqliteDatabase } from '../../../src/storage/sqlite/index.ts';
import type { ApprovalBot } from '../../../src/telegram/index.ts';
import { ALICE, BOB, TIER3_BODY, auditEntries, startTelegramEnv, tapAndAnswer, type TelegramTestEnv } from './helpers.ts';

/**
 * Step-up from the Telegram and CLI side (SPEC §12): with JIT_PASSKEY_TIER
 * set, an Approve tap or `jit approve` on a request at or above it is
 * answered with the request's console link and not counted; Deny counts
 * from any channel. Messages link to the console when JIT_PUBLIC_URL is set.
 */
const PUBLIC_URL = 'http://localhost:8787';
let t: TelegramTestEnv | undefined;
afterEach(async () => {
  await t?.close();
  t = undefined;
});

async function start(env: Record<string, string>): Promise<{ t: TelegramTestEnv; bot: ApprovalBot }> {
  t = await startTelegramEnv({ env: { JIT_PUBLIC_URL: PUBLIC_URL, ...env } });
  return { t, bot: await t.bot() };
}

const votes = (t: TelegramTestEnv, id: string) => sqliteDatabase(t.deps.storage).prepare('SELECT approver, decision FROM votes WHERE request_id = ?').all(id);

describe('step-up in Telegram and the CLI (JIT_PASSKEY_TIER=2)', () => {
  it('answers an Approve tap with the console link, uncounted; the message says so and links the console; Deny counts', async () => {
    const { t, bot } = await start({ JIT_PASSKEY_TIER: '2' });
    const id = await t.request();
    const m = await t.waitMessage(id);
    const link = `${PUBLIC_URL}/console/requests/${id}`;
    expect(m.text).toContain(`Console: ${link}`);
    expect(m.text).toContain('🔑 Approving needs a passkey');
    const answer = await tapAndAnswer(t, bot, ALICE, m.message_id, `a:${id}`);
    expect(answer.text).toBe(`Not counted: a tier-2 approval needs your passkey. Approve it in the console: ${link}`);
    expect(votes(t, id)).toEqual([]);
    expect((await t.deps.storage.requests.get(id))!.status).toBe('pending');
    expect(auditEntries(t.deps, 'approval.refused').at(-1)).toMatchObject({ actor: `telegram:${ALICE}`, request_id: id, data: { code: 'FORBIDDEN', step_up_required: true } });
    expect((await tapAndAnswer(t, bot, BOB, m.message_id, `d:${id}`)).text).toBe('Denied');
    expect((await t.deps.storage.requests.get(id))!.status).toBe('denied');
  });

  it('refuses `jit approve` with the console link on its own line, exit 1, nothing counted', async () => {
    const { t } = await start({ JIT_PASSKEY_TIER: '2' });
    const id = await t.request(TIER3_BODY);
    await t.waitMessage(id);
    const out: string[] = [];
    const err: string[] = [];
    const io: CliIo = { env: { JIT_DB: t.dbPath, JIT_POLICIES: join(dirname(t.dbPath), 'policies'), JIT_PASSKEY_TIER: '2', JIT_PUBLIC_URL: PUBLIC_URL }, out: (l) => out.push(l), err: (l) => err.push(l) };
    expect(await runCli(['approve', id], io)).toBe(1);
    expect(err).toContain(`${PUBLIC_URL}/console/requests/${id}`);
    expect(err.join('\n')).toMatch(/not counted: a tier-3 approval needs a passkey step-up/);
    expect(votes(t, id)).toEqual([]);
    expect(await runCli(['deny', id, '--reason', 'no'], io)).toBe(0);
    expect((await t.deps.storage.requests.get(id))!.status).toBe('denied');
  });
});

describe('without JIT_PASSKEY_TIER', () => {
  it('approves from Telegram as before; the message still links the console', async () => {
    const { t, bot } = await start({});
    const id = await t.request();
    const m = await t.waitMessage(id);
    expect(m.text).toContain(`Console: ${PUBLIC_URL}/console/requests/${id}`);
    expect(m.text).not.toContain('passkey');
    expect((await tapAndAnswer(t, bot, ALICE, m.message_id, `a:${id}`)).text).toBe('Approved');
  });
});
