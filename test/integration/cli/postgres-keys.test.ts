import { randomBytes } from 'node:crypto';
import { decodeProtectedHeader } from 'jose';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { open as unseal } from '../../../src/keys/key-seal.ts';
import { openPostgresStorage, postgresPool } from '../../../src/storage/postgres/index.ts';
import { runJit, startJitServe } from '../../helpers/cli.ts';
import { freshPostgresDatabase } from '../../helpers/postgres.ts';

/**
 * One key ring for every broker on PostgreSQL, as an operator runs it: two
 * `jit serve` processes (as on two hosts: each its own port, its own
 * directory, no shared file) on one real database, and `jit keys` run
 * against JIT_DATABASE_URL. Waits are bounded polls of what the brokers
 * serve, never a fixed sleep.
 */
const KEK = randomBytes(32).toString('base64');
let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'jit-pg-keys-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Agent "dev" may have gate credentials at tier 1 (issued at once, signed with the broker's current key). */
const POLICY = `agents:
  dev:
    sessions: ["hook:jit:dev:*"]
    default_session: "hook:jit:dev:main"
rules:
  - name: gate-now
    agents: [dev]
    resource: gate
    repos: ["homelab/*"]
    refs: ["refs/heads/agent/*"]
    tier: 1
    max_ttl: 1h
`;

let n = 0;
function envWith(databaseUrl: string, extra: Record<string, string> = {}): Record<string, string> {
  // Each node its own directory: nothing on disk is shared, as on separate hosts.
  const home = join(dir, `node-${++n}`);
  mkdirSync(join(home, 'policies'), { recursive: true });
  writeFileSync(join(home, 'policies', 'gate.yaml'), POLICY);
  return { JIT_DATABASE_URL: databaseUrl, JIT_KEY_ENCRYPTION_KEY: KEK, JIT_DB: join(home, 'jit.db'), JIT_POLICIES: join(home, 'policies'), JIT_PORT: '0', JIT_DEV_VAULT_PORT: '0', LOG_LEVEL: 'info', ...extra };
}

/** A gate credential issued by the broker at `url`: the kid it was signed with. */
async function gateCredentialKid(url: string, token: string): Promise<{ kid: string; jwt: string }> {
  const res = await fetch(`${url}/jit/request`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: JSON.stringify({ resource: 'gate', tier: 1, reason: 'push the fix', repo: 'homelab/app', refs: ['refs/heads/agent/fix'] }),
  });
  const body = (await res.json()) as { status: string; credential: { credential: string } };
  expect(res.status, JSON.stringify(body)).toBe(201);
  const jwt = body.credential.credential;
  return { kid: decodeProtectedHeader(jwt).kid!, jwt };
}

async function jwksKids(url: string): Promise<string[]> {
  const res = await fetch(`${url}/.well-known/jwks.json`);
  expect(res.status).toBe(200);
  return ((await res.json()) as { keys: { kid: string }[] }).keys.map((k) => k.kid);
}

/** Polls until `check` holds, for at most `ms`; answers how long it took. */
async function within(ms: number, check: () => Promise<boolean>): Promise<number> {
  const start = Date.now();
  while (!(await check())) {
    if (Date.now() - start > ms) throw new Error(`not within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
  return Date.now() - start;
}

function expectOneLine(res: { code: number | null; stdout: string; stderr: string }, line: RegExp): void {
  expect(res.code, res.stdout + res.stderr).toBe(2);
  const lines = res.stderr.trimEnd().split('\n');
  expect(lines).toHaveLength(1);
  expect(lines[0]).toMatch(line);
  expect(res.stdout + res.stderr).not.toMatch(/\n\s+at /);
}

describe('the key-encryption key', () => {
  it('jit serve on PostgreSQL without one exits 2 with one line naming JIT_KEY_ENCRYPTION_KEY', async () => {
    const env = envWith(await freshPostgresDatabase());
    delete (env as Record<string, string | undefined>).JIT_KEY_ENCRYPTION_KEY;
    expectOneLine(await runJit(['serve'], env), /^jit: configuration error: JIT_KEY_ENCRYPTION_KEY: required with JIT_DATABASE_URL/);
  });

  it('a malformed one exits 2 with one line that does not repeat it; so does a malformed JIT_KEY_ENCRYPTION_KEY_FILE', async () => {
    const url = await freshPostgresDatabase();
    const bad = randomBytes(16).toString('base64');
    const res = await runJit(['serve'], envWith(url, { JIT_KEY_ENCRYPTION_KEY: bad }));
    expectOneLine(res, /^jit: configuration error: JIT_KEY_ENCRYPTION_KEY: must be base64 of exactly 32 random bytes/);
    expect(res.stderr).not.toContain(bad);
    const file = join(dir, 'kek.txt');
    writeFileSync(file, 'not-a-key\n', { mode: 0o600 });
    const env = envWith(url, { JIT_KEY_ENCRYPTION_KEY_FILE: file });
    delete (env as Record<string, string | undefined>).JIT_KEY_ENCRYPTION_KEY;
    expectOneLine(await runJit(['serve'], env), /^jit: configuration error: JIT_KEY_ENCRYPTION_KEY_FILE: .*kek\.txt: must be base64 of exactly 32/);
  });
});

describe('two brokers on one PostgreSQL share one key ring', () => {
  it('same JWKS; a CLI rotation and revocation are in force on both within seconds; another KEK cannot start; no seed in the clear', async () => {
    const url = await freshPostgresDatabase();
    // Started one after the other: each dev-mode broker also creates the "dev" agent if it is missing.
    const a = await startJitServe(envWith(url));
    const b = await startJitServe(envWithFile(url));
    try {
      const first = await jwksKids(a.url);
      expect(first).toHaveLength(1);
      expect(await jwksKids(b.url)).toEqual(first);
      const token = /^(jit_\S+)$/m.exec(a.output())![1]!;
      expect((await gateCredentialKid(b.url, token)).kid).toBe(first[0]);

      // jit keys rotate, run by the CLI against the database (a third process, its own directory).
      const rotated = await runJit(['keys', 'rotate'], envWith(url));
      expect(rotated.code, rotated.stderr).toBe(0);
      const newKid = /New signing key (\S+) is current/.exec(rotated.stdout)![1]!;
      const tookA = await within(10_000, async () => (await jwksKids(a.url))[0] === newKid);
      const tookB = await within(10_000, async () => (await jwksKids(b.url))[0] === newKid);
      expect(await jwksKids(a.url)).toEqual([newKid, first[0]]);
      expect(await jwksKids(b.url)).toEqual(await jwksKids(a.url));
      console.log(`rotation in force on both brokers within ${Math.max(tookA, tookB)} ms`);
      // Both sign with it: gate credentials issued by either carry the new kid.
      const signedB = await gateCredentialKid(b.url, token);
      expect(signedB.kid).toBe(newKid);
      expect((await gateCredentialKid(a.url, token)).kid).toBe(newKid);

      // jit keys list needs no KEK: public halves only.
      const listEnv = envWith(url);
      delete (listEnv as Record<string, string | undefined>).JIT_KEY_ENCRYPTION_KEY;
      const listed = await runJit(['keys', 'list'], listEnv);
      expect(listed.code, listed.stderr).toBe(0);
      expect(listed.stdout).toMatch(new RegExp(`${newKid}\\tcurrent`));
      expect(listed.stdout).toContain('keys kept in: database');

      // Revoking the current key: a new one is made current in the same write; both brokers drop the revoked one.
      const revoked = await runJit(['keys', 'revoke', newKid], envWith(url));
      expect(revoked.code, revoked.stderr).toBe(0);
      const replacement = /New signing key (\S+) is current/.exec(revoked.stdout)![1]!;
      await within(10_000, async () => !(await jwksKids(a.url)).includes(newKid) && !(await jwksKids(b.url)).includes(newKid));
      expect((await jwksKids(a.url))[0]).toBe(replacement);
      expect(await jwksKids(b.url)).toEqual(await jwksKids(a.url));
      expect((await gateCredentialKid(b.url, token)).kid).toBe(replacement);
      // What the revoked key signed on B is refused by A.
      const verdict = await fetch(`${a.url}/gate/verify`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ credential: signedB.jwt, repo: 'homelab/app', ref: 'refs/heads/agent/fix' }) });
      expect(JSON.stringify(await verdict.json())).toContain(`revoked key ${newKid}`);

      // A broker with another KEK refuses to start: one line, exit 2.
      const wrong = await runJit(['serve'], envWith(url, { JIT_KEY_ENCRYPTION_KEY: randomBytes(32).toString('base64') }));
      expectOneLine(wrong, /^jit: configuration error: JIT_KEY_ENCRYPTION_KEY: does not open the signing keys stored in the database/);

      // The seed is in no column in the clear, and in no log line.
      const storage = await openPostgresStorage(url);
      try {
        const rows = (await postgresPool(storage).query<{ kid: string; sealed_seed: string | null }>('SELECT kid, sealed_seed FROM signing_keys')).rows;
        const sealed = rows.find((r) => r.sealed_seed !== null)!;
        expect(sealed.kid).toBe(replacement);
        const seed = unseal(Buffer.from(KEK, 'base64'), { kind: 'signing-key', kid: sealed.kid }, sealed.sealed_seed!);
        const dump = JSON.stringify(rows);
        const logs = a.output() + b.output() + rotated.stdout + rotated.stderr + revoked.stdout + revoked.stderr;
        for (const form of [seed.toString('base64url'), seed.toString('base64'), seed.toString('hex')]) {
          expect(dump).not.toContain(form);
          expect(logs).not.toContain(form);
        }
        expect(logs).not.toContain(KEK);
      } finally {
        await storage.close();
      }
    } finally {
      expect(await a.stop()).toBe(0);
      expect(await b.stop()).toBe(0);
    }
  }, 120_000);
});

/** Node B reads the same KEK from a file (JIT_KEY_ENCRYPTION_KEY_FILE), as a systemd credential would give it. */
function envWithFile(url: string): Record<string, string> {
  const file = join(dir, 'kek-b.txt');
  writeFileSync(file, `${KEK}\n`, { mode: 0o600 });
  const env = envWith(url, { JIT_KEY_ENCRYPTION_KEY_FILE: file });
  delete (env as Record<string, string | undefined>).JIT_KEY_ENCRYPTION_KEY;
  return env;
}
