import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { callbackData } from '../../../src/telegram/index.ts';
import { RequestStreamEventData } from '../../../src/wire/events.ts';
import { startTelegramEmulator, type TelegramEmulator } from '../../fakes/telegram-emulator/index.ts';
import { startHarness, type Harness } from '../../helpers/broker-harness.ts';
import { openSse } from '../../helpers/sse.ts';

/**
 * The decision stream fed by the broker's own deciders: an approver's tap in
 * Telegram (the emulator, through grammY's apiRoot) and the sweep's timeout
 * (the injected clock moved past the approval deadline). Both commit in the
 * broker's process, whose audit commit hook wakes the stream hub at once:
 * the hub's poll is set to an hour here, so only that wake can deliver them.
 */

const CHAT = -100778;
const ALICE = 111;
const BOT_TOKEN = '7000000003:AAH-stream-token_abcdefghijklmnopqrstu';
const write = { resource: 'vault', tier: 2, reason: 'rotate the web key', vault_paths: [{ path: 'homelab/data/apps/web', capabilities: ['read', 'update'] }] };

let h: Harness;
let tg: TelegramEmulator;
let token: string;

beforeAll(async () => {
  tg = await startTelegramEmulator({ token: BOT_TOKEN, chats: [{ id: CHAT, type: 'supergroup', title: 'approvals' }], maxLongPollSeconds: 1 });
  h = await startHarness({
    env: { TELEGRAM_BOT_TOKEN: BOT_TOKEN, TELEGRAM_CHAT_ID: String(CHAT), TELEGRAM_APPROVERS: String(ALICE), TELEGRAM_API_ROOT: tg.url },
    start: { sweepIntervalMs: 50, streams: { pollMs: 3_600_000 }, telegram: { syncIntervalMs: 200, pollTimeoutSeconds: 1, callTimeoutSeconds: 5, errorBackoffMs: 50, restartDelayMs: 100 } },
  });
  token = await h.addAgent('moltbot');
});
afterAll(async () => {
  await h?.close();
  await tg?.close();
});

async function follow(id: string, status = 'pending') {
  const s = await openSse(`${h.broker.url}/jit/requests/${id}/events`, { authorization: `Bearer ${token}` });
  expect(s.status).toBe(200);
  expect(RequestStreamEventData.parse((await s.next()).json).status).toBe(status);
  return s;
}

describe('decision stream, decided in the broker process', () => {
  it('an approval tapped in Telegram reaches the stream', async () => {
    const id: string = (await h.call('POST', '/jit/request', { token, body: write })).body.id;
    const s = await follow(id);
    const posted = await tg.waitFor(() => tg.botMessages(CHAT).find((m) => m.text?.includes(id)), 10_000, 'approval message');
    const tapped = performance.now();
    tg.tap(ALICE, posted.message_id, callbackData('approve', id));
    const event = await s.next();
    const latency = Math.round(event.perf - tapped);
    console.log(`decision stream: a Telegram tap reached the stream in ${latency} ms (the bot's long poll of the emulator included)`);
    expect(latency).toBeLessThan(1000);
    expect(RequestStreamEventData.parse(event.json)).toMatchObject({ status: 'approved', decision: { approver: `telegram:${ALICE}`, narrowed: false } });
    s.close();
  });

  it("the sweep's timeout reaches the stream, which then ends", async () => {
    const id: string = (await h.call('POST', '/jit/request', { token, body: write })).body.id;
    const s = await follow(id);
    const view = (await h.call('GET', `/jit/requests/${id}`, { token })).body;
    const moved = performance.now();
    h.clock.set(Date.parse(view.approval_expires_at) + 1);
    const event = await s.next();
    const latency = Math.round(event.perf - moved);
    console.log(`decision stream: the sweep's timeout reached the stream in ${latency} ms (sweep interval 50 ms included)`);
    expect(latency).toBeLessThan(1000);
    expect(RequestStreamEventData.parse(event.json)).toMatchObject({ status: 'timed_out', decision: { approver: 'timeout', reason: 'no decision before the approval deadline', granted: null } });
    await s.ended;
    expect(s.events).toHaveLength(2);
  });

  it("an issued credential's expiry (the sweep) reaches the stream as expired, which then ends", async () => {
    const res = await h.call('POST', '/jit/request', { token, body: { resource: 'vault', tier: 1, reason: 'read', vault_paths: [{ path: 'homelab/data/docker/registry', capabilities: ['read'] }], ttl: '5m' } });
    expect(res.status).toBe(201);
    const s = await follow(res.body.id, 'issued');
    h.clock.set(Date.parse(res.body.expires_at) + 1);
    const event = RequestStreamEventData.parse((await s.next()).json);
    expect(event).toMatchObject({ status: 'expired', credential: { state: expect.stringMatching(/^(revoking|ended)$/) } });
    await s.ended;
  });
});
