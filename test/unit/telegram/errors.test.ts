import { Api, GrammyError, HttpError } from 'grammy';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { boundedRetry, callTimeout, classifyTelegramError, describeTelegramError, redactToken } from '../../../src/telegram/errors.ts';
import { answerFor } from '../../../src/telegram/handlers.ts';
import type { RequestRow } from '../../../src/broker/rows.ts';
import { startTelegramEmulator, type TelegramEmulator } from '../../fakes/telegram-emulator/index.ts';

const TOKEN = '7000000001:AAerrors-test-token_0123456789abcdefgh';
const CHAT = -100888;
let emu: TelegramEmulator;
beforeEach(async () => {
  emu = await startTelegramEmulator({ token: TOKEN, chats: [{ id: CHAT, type: 'group', title: 'g' }] });
});
afterEach(async () => {
  await emu.close();
});

const caught = async (p: Promise<unknown>) => {
  try {
    await p;
  } catch (err) {
    return err;
  }
  throw new Error('expected a failure');
};

describe('token hygiene', () => {
  it('redacts the token and anything shaped like one', () => {
    expect(redactToken(`GET https://api.telegram.org/bot${TOKEN}/getMe failed`, TOKEN)).toBe('GET https://api.telegram.org/bot[bot token]/getMe failed');
    expect(redactToken('x 123456789:AAbcdefghijklmnopqrstuvwxyz0123456789 y')).toBe('x [bot token] y');
  });

  it('a network failure is described without the URL node-fetch puts in its message', async () => {
    const api = new Api(TOKEN, { apiRoot: 'http://127.0.0.1:1' });
    const err = await caught(api.getMe());
    expect(err).toBeInstanceOf(HttpError);
    expect(String(((err as HttpError).error as Error).message)).toContain(TOKEN); // the raw cause does leak it
    const described = JSON.stringify(describeTelegramError(err, TOKEN));
    expect(described).not.toContain(TOKEN);
    expect(described).not.toContain(TOKEN.split(':')[1]);
    expect(described).toContain('ECONNREFUSED');
  });
});

describe('classifyTelegramError', () => {
  const api = () => new Api(TOKEN, { apiRoot: emu.url });
  it.each([
    [{ kind: 'retry_after', seconds: 3 } as const, { kind: 'rate_limited', retryAfterSeconds: 3 }],
    [{ kind: 'server_error' } as const, { kind: 'unavailable' }],
    [{ kind: 'drop' } as const, { kind: 'unavailable' }],
    [{ kind: 'error', code: 403, description: 'Forbidden: bot was kicked from the supergroup chat' } as const, { kind: 'refused', code: 403 }],
  ])('%j → %j', async (fault, expected) => {
    emu.failNext('sendMessage', fault);
    expect(classifyTelegramError(await caught(api().sendMessage(CHAT, 'x')))).toEqual(expected);
  });

  it('recognises not-modified, a vanished message, and a bad token', async () => {
    const m = await api().sendMessage(CHAT, 'x');
    expect(classifyTelegramError(await caught(api().editMessageText(CHAT, m.message_id, 'x')))).toEqual({ kind: 'not_modified' });
    expect(classifyTelegramError(await caught(api().editMessageText(CHAT, 77, 'y')))).toEqual({ kind: 'message_gone' });
    expect(classifyTelegramError(await caught(new Api('1:bad', { apiRoot: emu.url }).getMe()))).toEqual({ kind: 'unauthorized' });
  });
});

describe('boundedRetry', () => {
  const retrying = (o: Parameters<typeof boundedRetry>[0]) => {
    const api = new Api(TOKEN, { apiRoot: emu.url });
    api.config.use(callTimeout(2), boundedRetry(o));
    return api;
  };

  it('waits out a short retry_after and retries', async () => {
    emu.failNext('answerCallbackQuery', { kind: 'retry_after', seconds: 1 });
    emu.failNext('sendMessage', { kind: 'retry_after', seconds: 1 });
    const t0 = Date.now();
    await retrying({ maxRetryAfterSeconds: 2 }).sendMessage(CHAT, 'x');
    expect(Date.now() - t0).toBeGreaterThanOrEqual(950);
    expect(emu.calls('sendMessage').map((c) => c.status)).toEqual([429, 200]);
  });

  it('does not wait for a long retry_after, and gives up after maxAttempts', async () => {
    emu.failNext('sendMessage', { kind: 'retry_after', seconds: 60 });
    expect(await caught(retrying({ maxRetryAfterSeconds: 2 }).sendMessage(CHAT, 'x'))).toBeInstanceOf(GrammyError);
    emu.failNext('sendMessage', { kind: 'drop' }, 5);
    expect(await caught(retrying({ maxAttempts: 3, baseDelayMs: 10 }).sendMessage(CHAT, 'x'))).toBeInstanceOf(HttpError);
    expect(emu.calls('sendMessage').map((c) => c.status)).toEqual([429, 0, 0, 0]);
  });

  it('retries network errors and 5xx, not 4xx', async () => {
    emu.failNext('sendMessage', { kind: 'drop' });
    emu.failNext('sendMessage', { kind: 'server_error' });
    await retrying({ maxAttempts: 3, baseDelayMs: 10 }).sendMessage(CHAT, 'x');
    expect(await caught(retrying({ baseDelayMs: 10 }).sendMessage(CHAT, '<p>', { parse_mode: 'HTML' }))).toBeInstanceOf(GrammyError);
    expect(emu.calls('sendMessage').map((c) => c.status)).toEqual([0, 500, 200, 400]);
  });
});

describe('answerFor', () => {
  const request = { required_tier: 2 } as RequestRow;
  const names = new Map([['telegram:1', 'Alice']]);
  it.each([
    [{ outcome: 'approved', request }, 'Approved'],
    [{ outcome: 'approved', request: { required_tier: 3 } as RequestRow }, 'Approved (quorum reached, tier 3)'],
    [{ outcome: 'denied', request }, 'Denied'],
    [{ outcome: 'vote_recorded', request, approvals: 1, needed: 2 }, 'Approval recorded: 1 of 2 (tier 3)'],
    [{ outcome: 'already_voted', request, approvals: 1, needed: 2 }, 'You already voted (1 of 2 approvals so far)'],
    [{ outcome: 'already_decided', request, status: 'approved', decidedBy: 'telegram:1, telegram:2' }, 'Already approved by Alice (telegram:1), telegram:2'],
    [{ outcome: 'already_decided', request, status: 'issued', decidedBy: 'local-cli' }, 'Already approved by local-cli'],
    [{ outcome: 'already_decided', request, status: 'denied', decidedBy: 'telegram:1' }, 'Already denied by Alice (telegram:1)'],
    [{ outcome: 'already_decided', request, status: 'timed_out', decidedBy: 'timeout' }, 'Too late: the request timed out'],
    [{ outcome: 'already_decided', request, status: 'revoked', decidedBy: null }, 'Already decided: the request is revoked'],
  ] as const)('%j → %s', (outcome, text) => {
    expect(answerFor(outcome as Parameters<typeof answerFor>[0], names)).toBe(text);
  });

  it('stays within Telegram’s 200 characters', () => {
    const many = Array.from({ length: 10 }, (_, i) => `telegram:${1000000000 + i}`).join(', ');
    expect(answerFor({ outcome: 'already_decided', request, status: 'approved', decidedBy: many }).length).toBeLessThanOrEqual(200);
  });
});
