import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it, onTestFailed } from 'vitest';
import { callbackData } from '../../../src/telegram/index.ts';
import { startDevVault, type DevVault } from '../../../src/vault/dev/index.ts';
import { startTelegramEmulator, type TelegramEmulator } from '../../fakes/telegram-emulator/index.ts';
import { ROOT_TOKEN, TEST_POLICY } from '../../helpers/broker-harness.ts';
import { freePort, killAllServe, sleep, spawnServe, until, type ServeProcess } from '../../helpers/chaos-process.ts';
import { startChaosProxy, type ChaosProxy } from '../../helpers/chaos-proxy.ts';
import { figureLog } from '../../helpers/chaos-report.ts';
import { runJit } from '../../helpers/cli.ts';
import { freshPostgresDatabase } from '../../helpers/postgres.ts';

/*
 * Two `jit serve` processes on one PostgreSQL database, one bot token, long
 * polling: only the leader (lease `telegram:leader`) calls getUpdates and
 * posts; when it dies (SIGKILL) or stops, the other takes over. Each broker
 * reaches the Telegram emulator through a proxy of its own, which counts its
 * getUpdates calls. Every request gets exactly one message, edited once for
 * its decision, whichever broker decided it.
 */
const CHAT = -100888;
const ALICE = 111;
const BOT_TOKEN = '7000000003:AAH-leader-token_abcdefghijklmnopqrstu';
const LEASE_SECONDS = 2;
const body = (n: number) => ({ resource: 'vault', tier: 2, reason: `leader ${n}`, vault_paths: [{ path: `homelab/data/apps/leader-${n}`, capabilities: ['read', 'update'] }] });

describe('Telegram with several brokers: one leader polls and posts', () => {
  let dir: string;
  let vault: DevVault;
  let tg: TelegramEmulator;
  let common: Record<string, string>;
  let token: string;
  let url: string;
  const proxies: ChaosProxy[] = [];
  const polls = [0, 0];
  const nodes: (ServeProcess | undefined)[] = [undefined, undefined];

  const start = async (i: number) => {
    nodes[i] = await spawnServe({ ...common, JIT_PORT: String(await freePort()), TELEGRAM_API_ROOT: proxies[i]!.url });
    return nodes[i]!;
  };
  const isLeader = (p: ServeProcess) => p.output().includes('this broker is the leader');
  const standsBy = (p: ServeProcess) => p.output().includes('standing by');
  const request = async (p: ServeProcess, n: number) => {
    const res = await fetch(`${p.url}/jit/request`, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: JSON.stringify(body(n)) });
    expect(res.status).toBe(202);
    return ((await res.json()) as { id: string }).id;
  };
  const query = async <T,>(sql: string, args: unknown[]) => {
    const c = new pg.Client({ connectionString: url });
    await c.connect();
    try {
      return (await c.query(sql, args)).rows[0] as T | undefined;
    } finally {
      await c.end();
    }
  };
  const status = async (id: string) => (await query<{ status: string }>('SELECT status FROM requests WHERE id = $1', [id]))!.status;
  /** The approval message, once posted and recorded (a tap on a message the broker has not recorded yet is refused). */
  const messageOf = async (id: string) => {
    const m = await tg.waitFor(() => tg.botMessages(CHAT).find((x) => x.text?.includes(id)), 30_000, `the approval message of ${id}`);
    await until(async () => (await query<{ message_id: unknown }>('SELECT message_id FROM telegram_messages WHERE request_id = $1', [id]))?.message_id != null, undefined, 'the post to be recorded');
    return m;
  };
  /** The message is edited to its decision (no buttons left). */
  const decided = (messageId: number) => tg.waitFor(() => tg.botMessages(CHAT).find((m) => m.message_id === messageId && tg.buttons(m).length === 0), 30_000, 'the edited message');
  const sent = (id: string) => tg.calls('sendMessage').filter((c) => String((c.params as { text?: string }).text ?? '').includes(id)).length;
  const edits = (messageId: number) => tg.calls('editMessageText').filter((c) => Number((c.params as { message_id?: unknown }).message_id) === messageId && c.status === 200).length;
  const conflicts = () => tg.calls('getUpdates').filter((c) => c.status === 409).length;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'jit-tg-leader-'));
    mkdirSync(join(dir, 'policies'));
    writeFileSync(join(dir, 'policies', 'p.yaml'), TEST_POLICY);
    vault = await startDevVault({ host: '127.0.0.1', port: 0, rootToken: ROOT_TOKEN });
    tg = await startTelegramEmulator({ token: BOT_TOKEN, chats: [{ id: CHAT, type: 'supergroup', title: 'approvals' }], maxLongPollSeconds: 1 });
    for (const i of [0, 1]) {
      const proxy = await startChaosProxy(tg.url);
      proxy.setAction((_m, path) => {
        if (/\/getUpdates$/i.test(path.split('?')[0]!)) polls[i]!++;
        return 'forward';
      });
      proxies.push(proxy);
    }
    url = await freshPostgresDatabase('jit_tg_leader');
    const kek = randomBytes(32).toString('base64'); // the brokers' shared key ring lives in the database, sealed under it
    common = {
      JIT_HOST: '127.0.0.1',
      JIT_POLICIES: join(dir, 'policies'),
      JIT_DATABASE_URL: url,
      JIT_KEY_ENCRYPTION_KEY: kek,
      VAULT_ADDR: vault.url,
      VAULT_TOKEN: ROOT_TOKEN,
      LOG_LEVEL: 'info',
      JIT_NODE_LEASE: `${LEASE_SECONDS}s`,
      TELEGRAM_BOT_TOKEN: BOT_TOKEN,
      TELEGRAM_CHAT_ID: String(CHAT),
      TELEGRAM_APPROVERS: String(ALICE),
    };
    token = (await runJit(['agent', 'add', 'moltbot'], common)).stdout.trim().split('\n').at(-1)!;
  }, 60_000);
  afterAll(async () => {
    await killAllServe();
    for (const p of proxies) await p.close();
    await tg?.close();
    await vault?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('only the leader polls; each request gets one message edited once, whoever decided; the other takes over when the leader dies or stops', async () => {
    onTestFailed(() => {
      for (const [i, p] of nodes.entries()) console.log(`---- node ${i}\n${p?.output().split('\n').filter((l) => !l.includes('audit_head')).slice(-40).join('\n')}`);
    });
    const f = figureLog('telegram: one leader among two brokers');
    const a = await start(0);
    await until(() => isLeader(a), undefined, 'A to lead');
    const b = await start(1);
    await until(() => standsBy(b), undefined, 'B to stand by');
    // Several of A's long polls (capped at 1 s by the emulator) and lease renewals.
    await sleep(5_000);
    expect(polls[0]).toBeGreaterThan(0);
    expect(polls[1]).toBe(0);
    f.line(`A leads: getUpdates by A ${polls[0]}, by B ${polls[1]}`);

    // Requested on B, posted by A (the leader), tapped (A polls the tap and decides).
    const r1 = await request(b, 1);
    const m1 = await messageOf(r1);
    tg.tap(ALICE, m1.message_id, callbackData('approve', r1));
    await decided(m1.message_id);
    expect(await status(r1)).toBe('approved');
    // Decided off the leader (the CLI, on the database): the leader's pass edits it.
    const r2 = await request(a, 2);
    const m2 = await messageOf(r2);
    expect((await runJit(['approve', r2], common)).code).toBe(0);
    await decided(m2.message_id);

    // The leader dies: B takes over within the lease (and a renewal period).
    const before = polls[1]!;
    await a.kill('SIGKILL');
    const killedAt = Date.now();
    await until(() => polls[1]! > before, undefined, 'B to poll');
    const takeover = (Date.now() - killedAt) / 1000;
    expect(isLeader(b)).toBe(true);
    f.line(`A SIGKILLed: B polls ${takeover.toFixed(1)} s later (lease ${LEASE_SECONDS} s)`);
    expect(takeover).toBeLessThan(30);

    // Requested and decided on B, the new leader.
    const r3 = await request(b, 3);
    const m3 = await messageOf(r3);
    tg.tap(ALICE, m3.message_id, callbackData('deny', r3));
    await decided(m3.message_id);
    expect(await status(r3)).toBe('denied');

    // A comes back and stands by; B stops cleanly (releasing the lease): A takes over at its next try.
    const a2 = await start(0);
    await until(() => standsBy(a2), undefined, 'A to stand by');
    const aPolls = polls[0]!;
    await sleep(3_000);
    expect(polls[0]).toBe(aPolls);
    await b.kill('SIGTERM');
    const stoppedAt = Date.now();
    await until(() => isLeader(a2) && polls[0]! > aPolls, undefined, 'A to lead again');
    f.line(`B stopped: A polls ${((Date.now() - stoppedAt) / 1000).toFixed(1)} s later`);
    const r4 = await request(a2, 4);
    const m4 = await messageOf(r4);
    tg.tap(ALICE, m4.message_id, callbackData('approve', r4));
    await decided(m4.message_id);

    // A few more passes of the leader: nothing is posted or edited again.
    await sleep(7_000);
    const tally = [[r1, m1], [r2, m2], [r3, m3], [r4, m4]].map(([id, m]) => ({ sent: sent(id as string), edits: edits((m as { message_id: number }).message_id) }));
    f.line(`per request (messages sent, edits): ${tally.map((t) => `${t.sent}/${t.edits}`).join(', ')}; getUpdates conflicts (409): ${conflicts()}`);
    f.print();
    expect(tally).toEqual(tally.map(() => ({ sent: 1, edits: 1 })));
    expect(conflicts()).toBe(0);
  }, 180_000);
});
