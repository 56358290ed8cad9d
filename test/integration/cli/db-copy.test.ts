import Database from 'better-sqlite3';
import { randomBytes } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Jwks } from '../../../src/keys/key-ring.ts';
import { startDevVault, type DevVault } from '../../../src/vault/dev/index.ts';
import { startTelegramEmulator, type TelegramEmulator } from '../../fakes/telegram-emulator/index.ts';
import { startWebhookReceiver, type WebhookReceiver } from '../../fakes/webhook-receiver.ts';
import { freePort, until } from '../../helpers/chaos-process.ts';
import { runJit, startJitServe } from '../../helpers/cli.ts';
import { freshPostgresDatabase } from '../../helpers/postgres.ts';

/**
 * `jit db copy --to postgres://…` as an operator runs it (child processes):
 * a broker on SQLite does real work (agents, requests of each tier, CLI
 * decisions, Vault tokens from a development Vault over HTTP, a gate
 * credential, decision webhooks to a real receiver, a Telegram approval
 * message and vote on the Telegram emulator, audit entries), is
 * stopped, and its database is copied into a fresh PostgreSQL database on
 * the run's real server. Then a broker started on the copy serves the same
 * data (and takes the tier-3 quorum on from the copied vote and message),
 * and the refusals hold: a broker still running, a non-empty target,
 * bad and unreachable URLs, JIT_DATABASE_URL set; never the URL's password.
 */
const REPO = join(import.meta.dirname, '..', '..', '..');
const ROOT_TOKEN = 'hvs.db-copy-test-root-token-0123456789';
const HOOKS_TOKEN = 'openclaw-hooks-token-for-db-copy-tests-0123456789';
const SCENARIO = { timeout: 180_000 };
const BOT_TOKEN = '7000000009:AAH-db-copy-token_abcdefghijklmnopqrs';
const CHAT = -1001234567890;
const ALICE = 111;
const BOB = 222;

let dir: string;
let vault: DevVault;
let receiver: WebhookReceiver;
let tg: TelegramEmulator;
let jwks: Jwks = { keys: [] };
let env: Record<string, string>;
let target: string;
let password: string;
let token: string;
const ids: Record<string, string> = {};
let gateCredential: string;
let sourceBroker: Awaited<ReturnType<typeof startJitServe>>;

const jit = (e: Record<string, string>, ...args: string[]) => runJit(args, e);

async function api(url: string, method: string, path: string, body?: unknown): Promise<{ status: number; body: any }> {
  const res = await fetch(`${url}${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, ...(body ? { 'content-type': 'application/json' } : {}) },
    ...(body ? { body: JSON.stringify(body) } : {}),
  });
  return { status: res.status, body: (await res.json()) as any };
}

const TIER1 = { resource: 'vault', tier: 1, reason: 'read the registry login', vault_paths: [{ path: 'homelab/data/docker/registry', capabilities: ['read'] }] };
const tier2 = (path: string) => ({ resource: 'vault', tier: 2, reason: `write ${path}`, vault_paths: [{ path, capabilities: ['update'] }] });

async function rowCount(url: string, table: string): Promise<number> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    return (await c.query(`SELECT COUNT(*)::int AS n FROM ${table}`)).rows[0].n as number;
  } finally {
    await c.end();
  }
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'jit-db-copy-'));
  vault = await startDevVault({ host: '127.0.0.1', port: 0, rootToken: ROOT_TOKEN });
  receiver = await startWebhookReceiver({ jwks: () => jwks, bearer: HOOKS_TOKEN });
  tg = await startTelegramEmulator({ token: BOT_TOKEN, chats: [{ id: CHAT, type: 'supergroup', title: 'approvals' }], maxLongPollSeconds: 1 });
  env = {
    JIT_DB: join(dir, 'data', 'jit.db'),
    JIT_POLICIES: join(REPO, 'policies'),
    JIT_PORT: '0',
    VAULT_ADDR: vault.url,
    VAULT_TOKEN: ROOT_TOKEN,
    OPENCLAW_HOOKS_URL: `${receiver.url}/hooks`,
    OPENCLAW_HOOKS_TOKEN: HOOKS_TOKEN,
    TELEGRAM_BOT_TOKEN: BOT_TOKEN,
    TELEGRAM_CHAT_ID: String(CHAT),
    TELEGRAM_APPROVERS: `${ALICE},${BOB}`,
    TELEGRAM_API_ROOT: tg.url,
    LOG_LEVEL: 'warn',
    // The copy seals the key file into the target's key ring; the brokers on the copy open it with the same key.
    JIT_KEY_ENCRYPTION_KEY: randomBytes(32).toString('base64'),
  };
  target = await freshPostgresDatabase('jitdbcopy');
  password = new URL(target).password;
  expect(password.length).toBeGreaterThan(8);

  // The install to move: real work through the broker and the operator commands.
  token = (await jit(env, 'agent', 'add', 'dev')).stdout.trim().split('\n').at(-1)!;
  await jit(env, 'agent', 'add', 'moltbot');
  sourceBroker = await startJitServe(env);
  const url = sourceBroker.url;
  jwks = (await (await fetch(`${url}/.well-known/jwks.json`)).json()) as Jwks;

  const t1 = await api(url, 'POST', '/jit/request', TIER1);
  // Tier 1 is issued at once: the Vault token comes with the answer.
  expect(t1.body.status).toBe('issued');
  expect(t1.body.credential.accessor).toBeTruthy();
  ids.tier1 = t1.body.id;

  ids.approved = (await api(url, 'POST', '/jit/request', tier2('homelab/data/apps/a'))).body.id;
  ids.denied = (await api(url, 'POST', '/jit/request', tier2('homelab/data/apps/b'))).body.id;
  ids.revoked = (await api(url, 'POST', '/jit/request', tier2('homelab/data/apps/c'))).body.id;
  ids.tier3 = (await api(url, 'POST', '/jit/request', { resource: 'vault', tier: 3, reason: 'drop prod', vault_paths: [{ path: 'homelab/data/prod/old', capabilities: ['delete'] }] })).body.id;
  ids.gate = (await api(url, 'POST', '/jit/request', { resource: 'gate', tier: 2, reason: 'push a fix', repo: 'homelab/app', refs: ['refs/heads/agent/fix-1'] })).body.id;
  for (const id of [ids.approved, ids.revoked, ids.gate]) expect((await jit(env, 'approve', id!)).code).toBe(0);
  // Tier 3: one of the two votes, from Alice in Telegram, on the approval message the broker posted.
  const posted = await until(() => tg.botMessages(CHAT).find((m) => m.text?.includes(ids.tier3!)), 60_000, 'the tier-3 approval message');
  tg.tap(ALICE, posted.message_id, `a:${ids.tier3}`);
  await until(() => tg.callbackAnswers().find((a) => a.from === ALICE), 60_000, "Alice's vote answered");
  expect((await jit(env, 'deny', ids.denied!, '--reason', 'not now')).code).toBe(0);
  expect((await api(url, 'POST', `/jit/requests/${ids.approved}/claim`)).status).toBe(201);
  expect((await api(url, 'POST', `/jit/requests/${ids.revoked}/claim`)).status).toBe(201);
  const gate = await api(url, 'POST', `/jit/requests/${ids.gate}/claim`);
  expect(gate.status).toBe(201);
  gateCredential = gate.body.credential.credential;
  expect((await jit(env, 'requests', 'revoke', ids.revoked!, '--reason', 'done')).code).toBe(0);
  // Decision webhooks (approved ×3, denied, revoked; tier 1 sends none) delivered: outbox rows in the state "delivered".
  await until(() => receiver.requests.filter((r) => r.answer === 200).length >= 5 || undefined, 60_000, 'five decision webhooks delivered');
}, 180_000);

afterAll(async () => {
  await sourceBroker?.stop();
  await receiver?.close();
  await tg?.close();
  await vault?.close();
  rmSync(dir, { recursive: true, force: true });
});

function expectNoPassword(res: { stdout: string; stderr: string }): void {
  expect(res.stdout + res.stderr).not.toContain(password);
  expect(res.stdout + res.stderr).not.toMatch(/\n\s+at /);
}

describe('jit db copy', () => {
  it('refuses while the broker that last started on the source is running, and leaves the target empty', SCENARIO, async () => {
    const res = await jit(env, 'db', 'copy', '--to', target);
    expect(res.code, res.stdout + res.stderr).toBe(1);
    expect(res.stderr).toMatch(/a broker seems to be running on .*jit\.db \(pid \d+/);
    expectNoPassword(res);
  });

  it('refuses bad and unreachable URLs in one line, exit 2, without the password', SCENARIO, async () => {
    const bad = await jit(env, 'db', 'copy', '--to', `mysql://jit:${password}@127.0.0.1/jit`);
    expect(bad.code).toBe(2);
    expect(bad.stderr.trimEnd().split('\n')).toEqual(['jit db: --to must be a postgres:// or postgresql:// URL with a host, such as postgres://jit:PASSWORD@db.internal:5432/jit']);
    expectNoPassword(bad);
    const missing = await jit(env, 'db', 'copy');
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/--to is required/);
    const { JIT_KEY_ENCRYPTION_KEY: _kek, ...noKek } = env;
    const kekMissing = await jit(noKek, 'db', 'copy', '--to', target);
    expect(kekMissing.code).toBe(2);
    expect(kekMissing.stderr.trimEnd().split('\n')).toHaveLength(1);
    expect(kekMissing.stderr).toMatch(/^jit db: set JIT_KEY_ENCRYPTION_KEY \(or JIT_KEY_ENCRYPTION_KEY_FILE\) for the copy/);

    // Stop the source broker now: every later copy needs it stopped.
    expect(await sourceBroker.stop()).toBe(0);
    const port = await freePort();
    const down = await jit(env, 'db', 'copy', '--to', `postgres://jit:${password}@127.0.0.1:${port}/jit`);
    expect(down.code, down.stdout + down.stderr).toBe(2);
    expect(down.stderr.trimEnd().split('\n')).toEqual([`jit db: cannot open the target database at postgres://127.0.0.1:${port}/jit: connection refused (is PostgreSQL running and listening there?)`]);
    expectNoPassword(down);
    // The safety net: the password masked wherever it would show, even as the database's name.
    const named = await jit(env, 'db', 'copy', '--to', `postgres://jit:${password}@127.0.0.1:${port}/${password}`);
    expect(named.code).toBe(2);
    expect(named.stderr.trimEnd()).toBe(`jit db: cannot open the target database at postgres://127.0.0.1:${port}/***: connection refused (is PostgreSQL running and listening there?)`);
    const noSource = await jit({ ...env, JIT_DB: join(dir, 'nothing', 'jit.db') }, 'db', 'copy', '--to', target);
    expect(noSource.code).toBe(2);
    expect(noSource.stderr).toMatch(/the source database .*nothing\/jit\.db \(JIT_DB\) does not exist/);
    const pgEnv = await jit({ ...env, JIT_DATABASE_URL: target }, 'db', 'copy', '--to', target);
    expect(pgEnv.code).toBe(2);
    expect(pgEnv.stderr).toMatch(/JIT_DATABASE_URL is set \(postgres:\/\/127\.0\.0\.1:\d+\/\w+\), so this environment's broker reads PostgreSQL, not JIT_DB/);
    expectNoPassword(pgEnv);
    expect(await rowCount(target, 'agents').catch(() => 0)).toBe(0);
  });

  it('copies, prints one line per table and the verification, never the password; a broker on the copy serves the same data', SCENARIO, async () => {
    const before = {
      requests: await jit(env, 'requests', '--json'),
      credentials: await jit(env, 'credentials', '--json'),
      webhooks: await jit(env, 'webhooks', 'list'),
      agents: await jit(env, 'agent', 'list'),
    };
    expect(before.requests.stdout.trim().split('\n')).toHaveLength(6);

    const res = await jit(env, 'db', 'copy', '--to', target);
    expect(res.code, res.stdout + res.stderr).toBe(0);
    expectNoPassword(res);
    const host = new URL(target).host;
    expect(res.stdout).toContain(`to postgres://${host}${new URL(target).pathname}`);
    expect(res.stdout).toMatch(/^requests\s+6 rows \(source 6\)$/m);
    expect(res.stdout).toMatch(/^agents\s+2 rows \(source 2\)$/m);
    expect(res.stdout).toMatch(/^credentials\s+4 rows \(source 4\)$/m);
    expect(res.stdout).toMatch(/^webhook_outbox\s+5 rows \(source 5\)$/m);
    expect(res.stdout).toMatch(/^votes\s+5 rows \(source 5\)$/m);
    expect(res.stdout).toMatch(/^telegram_messages\s+[1-9]\d* rows? \(source [1-9]\d*\)$/m);
    expect(res.stdout).toMatch(/^settings\s+1 row \(source 1\)$/m);
    expect(res.stdout).toMatch(/^schema_migrations\s+skipped/m);
    expect(res.stdout).toMatch(/^verify: row counts match the source in all 18 tables$/m);
    expect(res.stdout).toMatch(/^verify: audit chain intact on the target: \d+ entries, [1-9]\d* signed heads? checked$/m);
    expect(res.stdout).toMatch(/^signing keys: [1-9]\d* sealed into the target's key ring under JIT_KEY_ENCRYPTION_KEY$/m);
    expect(res.stdout).toMatch(/^signing_keys\s+/m);

    // A second copy into it: refused, naming a table with rows.
    const again = await jit(env, 'db', 'copy', '--to', target);
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/is not empty: table agents has rows/);
    expectNoPassword(again);

    // The operator commands on the copy show what they showed on SQLite.
    const pgEnv = { ...env, JIT_DATABASE_URL: target };
    expect((await jit(pgEnv, 'requests', '--json')).stdout).toBe(before.requests.stdout);
    expect((await jit(pgEnv, 'credentials', '--json')).stdout).toBe(before.credentials.stdout);
    expect((await jit(pgEnv, 'webhooks', 'list')).stdout).toBe(before.webhooks.stdout);
    expect((await jit(pgEnv, 'agent', 'list')).stdout).toBe(before.agents.stdout);
    const verify = await jit(pgEnv, 'audit', 'verify');
    expect(verify.code, verify.stderr).toBe(0);
    expect(verify.stdout).toMatch(/audit log intact: \d+ entries/);
    expect(verify.stdout).toMatch(/newest signed head: entry \d+/);

    // A broker on the copy: same agents (tokens), same requests and credentials, the gate credential still verifies.
    const broker = await startJitServe(pgEnv);
    try {
      const shown = await api(broker.url, 'GET', `/jit/requests/${ids.approved}`);
      expect(shown.body).toMatchObject({ id: ids.approved, status: 'issued' });
      expect((await api(broker.url, 'GET', `/jit/requests/${ids.denied}`)).body.status).toBe('denied');
      expect((await api(broker.url, 'GET', `/jit/requests/${ids.tier3}`)).body.status).toBe('pending');
      // Telegram goes on where it was: Bob's vote on the message posted before the move completes the quorum with Alice's copied one; nothing is posted again.
      const messages = tg.botMessages(CHAT).length;
      const message = tg.botMessages(CHAT).find((m) => m.text?.includes(ids.tier3!))!;
      tg.tap(BOB, message.message_id, `a:${ids.tier3}`);
      await until(async () => (await api(broker.url, 'GET', `/jit/requests/${ids.tier3}`)).body.status === 'approved' || undefined, 60_000, 'tier 3 approved on the copy');
      await until(() => tg.botMessages(CHAT).find((m) => m.message_id === message.message_id && /APPROVED/.test(m.text ?? '')), 60_000, 'the same message edited');
      expect(tg.botMessages(CHAT)).toHaveLength(messages);
      const show = await jit(pgEnv, 'requests', 'show', ids.revoked!, '--json');
      expect(JSON.parse(show.stdout)).toMatchObject({ id: ids.revoked, status: 'revoked' });
      const gate = await fetch(`${broker.url}/gate/verify`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ credential: gateCredential, repo: 'homelab/app', ref: 'refs/heads/agent/fix-1' }),
      });
      expect(gate.status).toBe(200);
      // New work goes on: the audit chain and identities continue past the copied rows.
      const t1 = await api(broker.url, 'POST', '/jit/request', TIER1);
      expect(t1.body.status).toBe('issued');
      expect(vault.listTokens().map((t) => t.accessor)).toContain(t1.body.credential.accessor);
    } finally {
      expect(await broker.stop()).toBe(0);
    }
    const after = await jit(pgEnv, 'audit', 'verify');
    expect(after.code, after.stderr).toBe(0);
  });

  it('a copy whose audit chain does not verify exits 1 and says whether the source was already broken', SCENARIO, async () => {
    // The install's database, copied aside and tampered with (an entry's actor rewritten).
    const tampered = join(dir, 'tampered', 'jit.db');
    mkdirSync(join(dir, 'tampered'));
    const original = new Database(env.JIT_DB!, { readonly: true });
    await original.backup(tampered);
    original.close();
    if (existsSync(join(dir, 'data', 'signing-keys.json'))) copyFileSync(join(dir, 'data', 'signing-keys.json'), join(dir, 'tampered', 'signing-keys.json'));
    const db = new Database(tampered);
    db.exec("DROP TRIGGER audit_log_no_update; UPDATE audit_log SET actor = 'someone-else' WHERE seq = 3");
    db.close();
    const res = await jit({ ...env, JIT_DB: tampered }, 'db', 'copy', '--to', await freshPostgresDatabase('jitdbcopy'));
    expect(res.code, res.stdout + res.stderr).toBe(1);
    expect(res.stdout).toMatch(/^verify: row counts match the source/m);
    expect(res.stderr).toMatch(/^verify: audit chain on the target FAILED at entry 3: hash does not match the entry content/m);
    expect(res.stderr).toMatch(/^verify: the source's chain fails too, at entry 3 .*the copy is faithful/m);
    expect(res.stderr).toMatch(/did not verify; do not start brokers on it/);
    expectNoPassword(res);
  });

  it('takes the password from PGPASSWORD, so that it need not be on the command line', SCENARIO, async () => {
    const url = new URL(await freshPostgresDatabase('jitdbcopy'));
    const pass = decodeURIComponent(url.password);
    url.password = '';
    const without = await jit(env, 'db', 'copy', '--to', url.toString());
    expect(without.code).toBe(2);
    expect(without.stderr.trimEnd().split('\n')).toHaveLength(1);
    const res = await jit({ ...env, PGPASSWORD: pass }, 'db', 'copy', '--to', url.toString());
    expect(res.code).toBe(0);
    expect(res.stdout).toMatch(/^verify: audit chain intact on the target/m);
    expect(`${res.stdout}${res.stderr}`).not.toContain(pass);
  });
});
