import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { consumeEnrolmentIn, enrolmentApprover, ENROLMENT_TTL_MS } from '../../../src/broker/approvers.ts';
import type { CliIo } from '../../../src/lib/cli-io.ts';
import { runCli } from '../../../src/cli/main.ts';
import { ManualClock } from '../../../src/lib/clock.ts';
import { hashSecret } from '../../../src/lib/secrets.ts';
import { openSqliteStorage, sqliteDatabase } from '../../../src/storage/sqlite/index.ts';
import type { Storage } from '../../../src/storage/storage.ts';
import { runJit } from '../../helpers/cli.ts';

/**
 * `jit approver add|list|remove` (SPEC §12), in-process against a SQLite
 * database, plus one run through bin/jit.mjs: the enrolment link is the
 * last line of stdout, works once and for 15 minutes, and only its hash is
 * ever stored; duplicates and unknown names are refused with exit 1,
 * wrong use with exit 2.
 */
const PUBLIC_URL = 'https://jit.example.test';
let dir: string;
let env: Record<string, string>;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'jit-approver-'));
  env = { JIT_DB: join(dir, 'jit.db'), JIT_POLICIES: join(import.meta.dirname, '..', '..', '..', 'policies'), JIT_PUBLIC_URL: PUBLIC_URL };
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

async function jit(...args: string[]) {
  const out: string[] = [];
  const err: string[] = [];
  const io: CliIo = { env, out: (l) => out.push(l), err: (l) => err.push(l) };
  const code = await runCli(args, io);
  return { code, stdout: out.join('\n'), stderr: err.join('\n') };
}

async function withStorage<T>(fn: (s: Storage) => Promise<T>): Promise<T> {
  const storage = openSqliteStorage(env.JIT_DB!);
  try {
    return await fn(storage);
  } finally {
    await storage.close();
  }
}

const LINK = new RegExp(`^${PUBLIC_URL.replace(/\./g, '\\.')}/console/enrol/([A-Za-z0-9_-]{16,})$`);

describe('jit approver', () => {
  it('adds with the enrolment link as the last stdout line, lists, refuses duplicates, removes', async () => {
    const add = await jit('approver', 'add', 'alice', '--telegram-id', '111');
    expect(add.code, add.stderr).toBe(0);
    const lines = add.stdout.split('\n');
    expect(lines[0]).toBe('Approver "alice" registered (Telegram user id 111).');
    expect(add.stdout).toContain('single use, valid 15 minutes');
    const token = LINK.exec(lines.at(-1)!)?.[1];
    expect(token, lines.at(-1)).toBeDefined();
    expect(add.stderr).toBe('');

    expect((await jit('approver', 'add', 'bob')).code).toBe(0);
    expect(await jit('approver', 'add', 'alice')).toMatchObject({ code: 1, stdout: '', stderr: 'jit approver: approver "alice" already exists' });
    expect(await jit('approver', 'add', 'carol', '--telegram-id', '111')).toMatchObject({ code: 1, stdout: '', stderr: 'jit approver: Telegram id 111 is already registered to approver "alice"' });
    expect((await jit('approver', 'add', 'Not A Name')).code).toBe(2);

    const list = await jit('approver', 'list');
    expect(list.code).toBe(0);
    const rows = list.stdout.split('\n').map((l) => l.split('\t'));
    expect(rows[0]).toEqual(['NAME', 'TELEGRAM ID', 'PASSKEYS', 'SESSIONS', 'CREATED']);
    expect(rows.slice(1).map((r) => r.slice(0, 4))).toEqual([
      ['alice', '111', '0', '0'],
      ['bob', '-', '0', '0'],
    ]);

    // The token is nowhere in the database or the audit log: only its hash.
    await withStorage(async (s) => {
      const db = sqliteDatabase(s);
      expect(db.prepare('SELECT token_hash FROM enrolment_tokens').pluck().all()).toContain(hashSecret(token!));
      const audit = db.prepare("SELECT actor, data FROM audit_log WHERE event = 'approver.added'").all() as { actor: string; data: string }[];
      expect(audit).toHaveLength(2);
      expect(audit[0]).toMatchObject({ actor: 'local-cli' });
      expect(JSON.parse(audit[0]!.data)).toMatchObject({ approver: 'alice', telegram_id: '111' });
    });
    for (const file of [env.JIT_DB!, `${env.JIT_DB!}-wal`]) if (existsSync(file)) expect(readFileSync(file).includes(Buffer.from(token!))).toBe(false);

    const removed = await jit('approver', 'remove', 'alice');
    expect(removed.code).toBe(0);
    expect(removed.stdout).toContain('Approver "alice" removed: 0 console sessions ended, 0 passkeys deleted.');
    expect(removed.stdout).toContain('Telegram user id 111 can no longer approve in Telegram.');
    expect(await jit('approver', 'remove', 'alice')).toMatchObject({ code: 1, stderr: 'jit approver: no approver named "alice" ("jit approver list" shows them)' });
    expect((await jit('approver', 'list')).stdout.split('\n').slice(1).map((l) => l.split('\t')[0])).toEqual(['bob']);
    // The name and the Telegram id may be registered again.
    expect((await jit('approver', 'add', 'alice', '--telegram-id', '111')).code).toBe(0);
  });

  it('makes a link that works once, for 15 minutes, and not after its approver is removed', async () => {
    const first = await jit('approver', 'add', 'ann');
    const token = LINK.exec(first.stdout.split('\n').at(-1)!)![1]!;
    const second = await jit('approver', 'add', 'ben');
    const other = LINK.exec(second.stdout.split('\n').at(-1)!)![1]!;
    await withStorage(async (storage) => {
      const clock = new ManualClock(Date.now());
      expect((await enrolmentApprover({ storage, clock }, token))?.name).toBe('ann');
      expect(await enrolmentApprover({ storage, clock }, 'x'.repeat(32))).toBeUndefined();
      // Two racers with one link: exactly one gets the approver.
      const raced = await Promise.all([1, 2].map(() => storage.transaction((tx) => consumeEnrolmentIn(tx, clock.now(), token))));
      expect(raced.filter(Boolean).map((a) => a!.name)).toEqual(['ann']);
      expect(await enrolmentApprover({ storage, clock }, token)).toBeUndefined();
      // Ben's link expires 15 minutes after it was made.
      clock.advance(ENROLMENT_TTL_MS + 1000);
      expect(await enrolmentApprover({ storage, clock }, other)).toBeUndefined();
      expect(await storage.transaction((tx) => consumeEnrolmentIn(tx, clock.now(), other))).toBeUndefined();
    });
    const third = await jit('approver', 'add', 'cat');
    const removedLink = LINK.exec(third.stdout.split('\n').at(-1)!)![1]!;
    expect((await jit('approver', 'remove', 'cat')).code).toBe(0);
    await withStorage(async (storage) => {
      expect(await enrolmentApprover({ storage, clock: new ManualClock(Date.now()) }, removedLink)).toBeUndefined();
    });
  });

  it('says so when TELEGRAM_APPROVERS still lists a removed approver\'s Telegram id', async () => {
    env = { ...env, TELEGRAM_BOT_TOKEN: '7000000001:AAH-telegram-test-token_0123456789abcdefXYZ', TELEGRAM_CHAT_ID: '-100123', TELEGRAM_APPROVERS: '111,222' };
    expect((await jit('approver', 'add', 'alice', '--telegram-id', '222')).code).toBe(0);
    const removed = await jit('approver', 'remove', 'alice');
    expect(removed.stdout).toContain('Telegram user id 222 is also in TELEGRAM_APPROVERS, so it may still approve in Telegram');
  });

  it('runs through bin/jit.mjs: the last line of stdout is the link', async () => {
    const res = await runJit(['approver', 'add', 'dana'], env, 60_000);
    expect(res.code, res.stderr).toBe(0);
    expect(res.stdout.endsWith('\n')).toBe(true);
    expect(res.stdout.trimEnd().split('\n').at(-1)).toMatch(LINK);
    expect(res.stderr).not.toContain('not part of this version');
  });
});
