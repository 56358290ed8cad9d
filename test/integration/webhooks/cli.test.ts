import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { CliIo } from '../../../src/lib/cli-io.ts';
import { keysCommand } from '../../../src/cli/commands/keys.ts';
import { webhooksCommand } from '../../../src/cli/commands/webhooks.ts';
import { UsageError } from '../../../src/lib/cli-args.ts';
import { createKeyRing, KEY_FILE_RECHECK_MS } from '../../../src/keys/key-ring.ts';
import { DEFAULT_RETRY_SCHEDULE_MS } from '../../../src/webhooks/retry.ts';
import { loadConfig } from '../../../src/config/config.ts';
import { recordServiceSettings } from '../../../src/config/service-settings.ts';
import { HOOKS_TOKEN, databaseBytes, makeWorld, type World } from './setup.ts';

let w: World;
beforeEach(async () => {
  w = await makeWorld();
});
afterEach(async () => {
  await w.close();
});

async function run(command: typeof keysCommand, args: string[], env: Record<string, string | undefined> = w.env) {
  const out: string[] = [];
  const err: string[] = [];
  const io: CliIo = { env, out: (l) => out.push(l), err: (l) => err.push(l) };
  const code = await command(args, io);
  return { code, out: out.join('\n'), err: err.join('\n') };
}

describe('jit webhooks', () => {
  it('lists events, --dead filters, and retry re-queues a dead event which then delivers', async () => {
    w.openclaw.script(...Array.from({ length: 8 }, () => ({ status: 500 })));
    const dead = await w.record('moltbot');
    const fine = await w.record('ci');
    const d = w.dispatcher();
    for (const delay of DEFAULT_RETRY_SCHEDULE_MS) {
      await d.drainOnce();
      w.clock.advance(delay);
    }
    await d.drainOnce();
    expect((await w.row(dead.id)).state).toBe('dead');

    const all = await run(webhooksCommand, ['list']);
    expect(all.code).toBe(0);
    expect(all.out).toContain(dead.id);
    expect(all.out).toContain(fine.id);
    const deadOnly = await run(webhooksCommand, ['list', '--dead']);
    expect(deadOnly.out).toContain(dead.id);
    expect(deadOnly.out).not.toContain(fine.id);
    expect(deadOnly.out).toMatch(/gave up after 8 attempts/);

    const retry = await run(webhooksCommand, ['retry', dead.id]);
    expect(retry).toMatchObject({ code: 0 });
    expect(retry.out).toContain(`Re-queued ${dead.id}`);
    expect(await w.row(dead.id)).toMatchObject({ state: 'pending', attempts: 0, last_error: null });
    expect(w.audit('webhook.requeued')[0]!.data).toMatchObject({ event_id: dead.id, previous_attempts: 8 });

    // The CLI used the wall clock; make the row due for the manual one.
    w.db.prepare('UPDATE webhook_outbox SET next_attempt_at = ? WHERE id = ?').run(w.clock.now(), dead.id);
    expect(await d.drainOnce()).toEqual({ delivered: 1, retried: 0, dead: 0 });
    expect(await w.row(dead.id)).toMatchObject({ state: 'delivered', attempts: 1 });
    expect(new Set(w.openclaw.requests.map((r) => r.headers['webhook-id']))).toEqual(new Set([dead.id]));
  });

  it('retry goes by the service\'s OPENCLAW_HOOKS_URL (as it recorded at start), not the shell\'s', async () => {
    await w.close();
    w = await makeWorld({ OPENCLAW_HOOKS_URL: undefined });
    const row = await w.record('moltbot');
    await w.dispatcher().drainOnce();
    expect(await w.row(row.id)).toMatchObject({ state: 'dead', url: null });
    expect((await run(webhooksCommand, ['list'])).out).toContain(`\tOPENCLAW_HOOKS_URL\tOPENCLAW_HOOKS_URL is not set in the service's environment`);

    // The service runs without it: setting it in the shell changes nothing.
    await recordServiceSettings(w.storage, w.config, w.clock.now());
    const refused = await run(webhooksCommand, ['retry', row.id], { ...w.env, OPENCLAW_HOOKS_URL: `${w.openclaw.url}/hooks` });
    expect(refused.code).toBe(1);
    expect(refused.err).toMatch(/the service has no OPENCLAW_HOOKS_URL/);

    // The service restarted with it: a shell without it re-queues, and that service's dispatcher sends it there.
    const fixed = loadConfig({ ...w.env, OPENCLAW_HOOKS_URL: `${w.openclaw.url}/hooks`, OPENCLAW_HOOKS_TOKEN: HOOKS_TOKEN });
    await recordServiceSettings(w.storage, fixed, w.clock.now());
    const ok = await run(webhooksCommand, ['retry', row.id]);
    expect(ok.code).toBe(0);
    expect(ok.out).toContain("to the service's OPENCLAW_HOOKS_URL");
    w.db.prepare('UPDATE webhook_outbox SET next_attempt_at = ? WHERE id = ?').run(w.clock.now(), row.id);
    expect(await w.dispatcher({ config: fixed }).drainOnce()).toEqual({ delivered: 1, retried: 0, dead: 0 });
    expect(w.openclaw.requests.map((r) => [r.path, r.headers['webhook-id']])).toEqual([['/hooks/agent', row.id]]);
  });

  it('retry --all-dead re-queues every dead event; retry refuses unknown and non-dead events', async () => {
    w.openclaw.script({ status: 401 }, { status: 400 });
    const a = await w.record('moltbot');
    const b = await w.record('moltbot', 'denied');
    const live = await w.record('ci');
    await w.dispatcher().drainOnce();
    expect([(await w.row(a.id)).state, (await w.row(b.id)).state]).toEqual(['dead', 'dead']);

    expect((await run(webhooksCommand, ['retry', 'evt_nope'])).code).toBe(1);
    const notDead = await run(webhooksCommand, ['retry', live.id]);
    expect(notDead.code).toBe(1);
    expect(notDead.err).toMatch(/delivered, not dead/);

    const all = await run(webhooksCommand, ['retry', '--all-dead']);
    expect(all.code).toBe(0);
    expect([(await w.row(a.id)).state, (await w.row(b.id)).state]).toEqual(['pending', 'pending']);
  });

  it('rejects bad usage', async () => {
    await expect(run(webhooksCommand, ['retry'])).rejects.toBeInstanceOf(UsageError);
    await expect(run(webhooksCommand, ['list', '--limit', '0'])).rejects.toBeInstanceOf(UsageError);
    await expect(run(webhooksCommand, ['frobnicate'])).rejects.toBeInstanceOf(UsageError);
  });
});

describe('jit keys', () => {
  it('rotate makes a new current key; list shows both kids and ages; the key file stays 0600 and out of the database', async () => {
    const before = w.keyRing.current().kid;
    const rotated = await run(keysCommand, ['rotate']);
    expect(rotated.code).toBe(0);
    // The service's ring looks at the key file at most once per KEY_FILE_RECHECK_MS.
    w.clock.advance(KEY_FILE_RECHECK_MS);
    const after = w.keyRing.current().kid;
    expect(after).not.toBe(before);
    expect(rotated.out).toContain(after);
    expect(rotated.out).toContain(before);
    expect(w.keyRing.jwks().keys.map((k) => k.kid)).toEqual([after, before]);

    const listed = await run(keysCommand, ['list']);
    expect(listed.code).toBe(0);
    expect(listed.out).toMatch(new RegExp(`${after}\\tcurrent\\tgenerated`));
    expect(listed.out).toMatch(new RegExp(`${before}\\tprevious\\tgenerated`));

    const keyFile = join(w.dir, 'signing-keys.json');
    expect(statSync(keyFile).mode & 0o777).toBe(0o600);
    const seed = (JSON.parse(readFileSync(keyFile, 'utf8')).keys as { d?: string }[]).find((k) => k.d)!.d!;
    expect(listed.out).not.toContain(seed);
    w.db.pragma('wal_checkpoint(TRUNCATE)');
    expect(databaseBytes(w.dbPath)).not.toContain(seed);
    expect(w.audit('key.rotated')[0]!.data).toEqual({ kid: after, retired_kid: before });
  });

  it('rotate refuses when the key comes from JIT_SIGNING_KEY, and neither rotate nor list touches the key file', async () => {
    const keyFile = join(w.dir, 'signing-keys.json');
    const before = readFileSync(keyFile, 'utf8');
    const env = { ...w.env, JIT_SIGNING_KEY: Buffer.alloc(32, 9).toString('base64') };
    const refused = await run(keysCommand, ['rotate'], env);
    expect(refused.code).toBe(1);
    expect(refused.err).toMatch(/JIT_SIGNING_KEY/);
    const listed = await run(keysCommand, ['list'], env);
    const envKid = createKeyRing({ config: { dbPath: ':memory:', signingKey: env.JIT_SIGNING_KEY } }).current().kid;
    expect(listed.out).toMatch(new RegExp(`${envKid}\\tcurrent\\tenv`));
    expect(listed.out).toMatch(new RegExp(`${w.keyRing.current().kid}\\tprevious`));
    expect(readFileSync(keyFile, 'utf8')).toBe(before);
  });

  it('list before the service ever started shows no key and creates none', async () => {
    const env = { ...w.env, JIT_DB: join(w.dir, 'fresh', 'jit.db') };
    const listed = await run(keysCommand, ['list'], env);
    expect(listed).toMatchObject({ code: 0 });
    expect(listed.out).toMatch(/No signing key yet/);
    expect(() => statSync(join(w.dir, 'fresh', 'signing-keys.json'))).toThrow();
  });
});
