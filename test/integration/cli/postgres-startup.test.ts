import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openPostgresStorage } from '../../../src/storage/postgres/index.ts';
import { freePort } from '../../helpers/chaos-process.ts';
import { runJit, startJitServe } from '../../helpers/cli.ts';
import { freshPostgresDatabase } from '../../helpers/postgres.ts';

/**
 * `jit serve` and the CLI on PostgreSQL (JIT_DATABASE_URL), as an operator
 * runs them: real child processes against the run's real server. A start
 * that cannot open the database says so in one line naming the variable,
 * exit 2, never a stack trace, never the password.
 */
const REPO = join(import.meta.dirname, '..', '..', '..');
let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'jit-pg-startup-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** The signing keys are sealed under it in the database (src/keys/key-ring-db.ts). */
const KEK = randomBytes(32).toString('base64');

let n = 0;
function envWith(databaseUrl: string): Record<string, string> {
  return { JIT_DATABASE_URL: databaseUrl, JIT_KEY_ENCRYPTION_KEY: KEK, JIT_DB: join(dir, `db-${++n}`, 'jit.db'), JIT_POLICIES: join(REPO, 'policies'), JIT_PORT: '0', JIT_DEV_VAULT_PORT: '0', LOG_LEVEL: 'warn' };
}

/** A loopback port nothing listens on (bound, then closed). */
const closedPort = freePort;

const PASSWORD = 'Sup3rSecretPassw0rd';

function expectOneLineWithoutSecrets(res: { code: number | null; stdout: string; stderr: string }, line: RegExp): void {
  expect(res.code, res.stdout + res.stderr).toBe(2);
  const lines = res.stderr.trimEnd().split('\n');
  expect(lines).toHaveLength(1);
  expect(lines[0]).toMatch(line);
  expect(res.stdout + res.stderr).not.toContain(PASSWORD);
  expect(res.stdout + res.stderr).not.toMatch(/\n\s+at /);
}

describe('JIT_DATABASE_URL that cannot be used', () => {
  it('jit serve: a URL that is not postgres:// exits 2 with one line naming the variable, without repeating the value', async () => {
    const res = await runJit(['serve'], envWith(`mysql://jit:${PASSWORD}@127.0.0.1/jit`));
    expectOneLineWithoutSecrets(res, /^jit: configuration error: JIT_DATABASE_URL: must be a postgres:\/\/ or postgresql:\/\/ URL/);
  });

  it('jit serve: an unreachable database exits 2 with one line naming JIT_DATABASE_URL and where it is, no password', async () => {
    const port = await closedPort();
    const res = await runJit(['serve'], envWith(`postgres://jit:${PASSWORD}@127.0.0.1:${port}/jit`));
    expectOneLineWithoutSecrets(res, new RegExp(`^jit serve: JIT_DATABASE_URL: cannot open the database at postgres://127\\.0\\.0\\.1:${port}/jit: connection refused`));
  });

  it('jit serve: a refused password exits 2 the same way', async () => {
    const url = new URL(await freshPostgresDatabase());
    url.password = PASSWORD;
    const res = await runJit(['serve'], envWith(url.href));
    expectOneLineWithoutSecrets(res, /^jit serve: JIT_DATABASE_URL: cannot open the database at postgres:\/\/127\.0\.0\.1:\d+\/\w+: the password was refused$/);
  });

  it('a CLI command that opens the database exits 2 the same way', async () => {
    const port = await closedPort();
    const res = await runJit(['agent', 'list'], envWith(`postgresql://jit:${PASSWORD}@127.0.0.1:${port}/jit`));
    expectOneLineWithoutSecrets(res, /^jit agent: JIT_DATABASE_URL: cannot open the database at postgresql:\/\/127\.0\.0\.1:\d+\/jit: connection refused/);
  });
});

describe('jit serve on PostgreSQL', () => {
  it('creates the tables, serves, and the CLI shares the database; the log never shows the URL\'s password', async () => {
    const url = await freshPostgresDatabase();
    const env = { ...envWith(url), LOG_LEVEL: 'info' };
    const broker = await startJitServe(env);
    try {
      const health = await fetch(`${broker.url}/healthz`);
      expect(await health.json()).toMatchObject({ status: 'ok', db: 'ok' });
      // Dev mode created agent "dev" in PostgreSQL; the CLI, another process, sees it there.
      const listed = await runJit(['agent', 'list'], env);
      expect(listed.code, listed.stderr).toBe(0);
      expect(listed.stdout).toMatch(/\bdev\b/);
    } finally {
      expect(await broker.stop()).toBe(0);
    }
    const password = new URL(url).password;
    expect(password.length).toBeGreaterThan(8);
    expect(broker.output()).not.toContain(password);
    expect(broker.output()).toContain(`"db":"postgres://${new URL(url).host}${new URL(url).pathname}"`);
    // Nothing of it in the SQLite file's place: the database is PostgreSQL's.
    const storage = await openPostgresStorage(url);
    try {
      expect((await storage.agents.byName('dev'))?.name).toBe('dev');
    } finally {
      await storage.close();
    }
  }, 60_000);
});
