import { spawn } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../../src/config/config.ts';
import { readServiceSettings } from '../../../src/config/service-settings.ts';
import { createStorageDeps } from '../../../src/create-deps.ts';
import { startDevVault } from '../../../src/vault/dev/index.ts';
import { until } from '../../helpers/chaos-process.ts';
import { endsWithTest, JIT_BIN, runJit, startJitServe } from '../../helpers/cli.ts';
import { openSqliteStorage } from '../../../src/storage/sqlite/index.ts';

/**
 * How `jit serve` starts and fails to start, as systemd and Docker see it:
 * a real child process, its exit code and its output.
 */
const REPO = join(import.meta.dirname, '..', '..', '..');
let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'jit-serve-startup-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const servers: Server[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => new Promise((r) => s.close(r))));
});

/** A TCP server on 127.0.0.1 holding a port (0: any free one). */
function occupy(port = 0): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(port, '127.0.0.1', () => {
      servers.push(s);
      resolve((s.address() as { port: number }).port);
    });
  });
}

/** Whether 127.0.0.1:port can be bound now (nothing holds it). */
function canBind(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createServer();
    s.once('error', () => resolve(false));
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
  });
}

/**
 * Runs `jit serve` to its exit, with no timer of its own: a broker that
 * cannot start must exit by itself, so a hang here is the failure (the test
 * times out). SIGKILLed afterwards should the test end first.
 */
function serveToExit(env: Record<string, string>): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [JIT_BIN, 'serve'], { cwd: REPO, env: { PATH: process.env.PATH ?? '', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  endsWithTest(child);
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => (stdout += d));
  child.stderr.on('data', (d) => (stderr += d));
  return new Promise((resolve) => child.on('close', (code) => resolve({ code, stdout, stderr })));
}

let n = 0;
/** A fresh database path and the example policies; dev mode unless `env` says otherwise. */
function freshEnv(env: Record<string, string> = {}): Record<string, string> {
  return { JIT_DB: join(dir, `db-${++n}`, 'jit.db'), JIT_POLICIES: join(REPO, 'policies'), JIT_PORT: '0', JIT_DEV_VAULT_PORT: '0', LOG_LEVEL: 'info', ...env };
}

describe('jit serve that cannot listen', () => {
  it('port in use: exits 1 with one line, prints no dev-agent token, and leaves the development Vault port free', async () => {
    const port = await occupy();
    const env = freshEnv({ JIT_PORT: String(port) });
    const res = await serveToExit(env);

    expect(res.code, res.stdout + res.stderr).toBe(1);
    expect(res.stderr.trimEnd().split('\n')).toEqual([`jit serve: cannot listen on 127.0.0.1:${port}: the address is already in use (EADDRINUSE); set JIT_HOST/JIT_PORT`]);
    // The development Vault had started; nothing holds its port once the broker gave up.
    const devVaultPort = Number(/development Vault at http:\/\/127\.0\.0\.1:(\d+)/.exec(res.stdout)?.[1]);
    expect(devVaultPort).toBeGreaterThan(0);
    expect(await canBind(devVaultPort)).toBe(true);
    // A broker that never served hands out no token; a later start still creates agent "dev" and shows it.
    expect(res.stdout).not.toContain('Created agent');
    expect(res.stdout).not.toMatch(/jit_[A-Za-z0-9]+_/);
    const storage = openSqliteStorage(env.JIT_DB!);
    try {
      expect(await createStorageDeps({ config: loadConfig(env), storage }).agents.get('dev')).toBeUndefined();
      // Nor does it record its settings: a failed second `jit serve` must not replace a live service's for the CLI.
      expect(await readServiceSettings(storage)).toBeUndefined();
    } finally {
      await storage.close();
    }
  });

  it('address not available: exits 1 with one line naming it', async () => {
    // 192.0.2.1 (TEST-NET-1) is on no interface of this machine.
    const res = await serveToExit(freshEnv({ JIT_HOST: '192.0.2.1', JIT_PORT: '0' }));
    expect(res.code, res.stdout + res.stderr).toBe(1);
    expect(res.stderr.trimEnd().split('\n')).toEqual([
      'jit serve: cannot listen on 192.0.2.1:0: the address is not available on this machine (EADDRNOTAVAIL); set JIT_HOST/JIT_PORT',
    ]);
  });
});

describe('jit serve: the development Vault cannot listen', () => {
  it('exits 1 with one line naming JIT_DEV_VAULT_PORT', async () => {
    const port = await occupy();
    const res = await serveToExit(freshEnv({ JIT_DEV_VAULT_PORT: String(port) }));
    expect(res.code, res.stdout + res.stderr).toBe(1);
    expect(res.stderr.trimEnd().split('\n')).toEqual([
      `jit serve: the development Vault cannot listen on 127.0.0.1:${port}: the address is already in use (EADDRINUSE); set JIT_DEV_VAULT_PORT`,
    ]);
  });
});

describe('JIT_HTTP_WORKERS (removed)', () => {
  it('set: exits 2 with one line naming it and the way to scale instead, before starting anything', async () => {
    const env = freshEnv({ JIT_HTTP_WORKERS: '2' });
    const res = await serveToExit(env);
    expect(res.code, res.stdout + res.stderr).toBe(2);
    expect(res.stderr.trimEnd().split('\n')).toEqual([
      'jit: configuration error: JIT_HTTP_WORKERS: no longer supported (HTTP worker processes were removed): unset it, and to scale run several brokers on one database (docs/operations.md, "High availability")',
    ]);
    expect(res.stdout).not.toContain('DEVELOPMENT MODE');
    expect(() => statSync(join(env.JIT_DB!, '..'))).toThrow(/ENOENT/);
  });
});

describe('NODE_ENV=production', () => {
  it('without VAULT_ADDR: exits 2 naming VAULT_ADDR, before starting anything', async () => {
    const port = await occupy();
    const env = freshEnv({ NODE_ENV: 'production', JIT_DEV_VAULT_PORT: String(port) });
    const res = await serveToExit(env);
    expect(res.code, res.stdout + res.stderr).toBe(2);
    const lines = res.stderr.trimEnd().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^jit: configuration error: VAULT_ADDR: /);
    expect(res.stdout).not.toContain('DEVELOPMENT MODE');
    // Nothing was created: no database directory.
    expect(() => statSync(join(env.JIT_DB!, '..'))).toThrow(/ENOENT/);
  });

  it('with VAULT_ADDR: serves (production against a real Vault)', async () => {
    const vault = await startDevVault({ host: '127.0.0.1', port: 0, rootToken: 'hvs.serve-startup-root-token' });
    try {
      const serve = await startJitServe(freshEnv({ NODE_ENV: 'production', VAULT_ADDR: vault.url, VAULT_TOKEN: 'hvs.serve-startup-root-token' }));
      expect(serve.output()).not.toContain('DEVELOPMENT MODE');
      expect((await fetch(`${serve.url}/healthz`)).status).toBe(200);
      expect(await serve.stop()).toBe(0);
    } finally {
      await vault.close();
    }
  });

  it('without NODE_ENV and without VAULT_ADDR: dev mode, as `npm start` promises', async () => {
    const serve = await startJitServe(freshEnv());
    expect(serve.output()).toContain('DEVELOPMENT MODE');
    expect(await serve.stop()).toBe(0);
  });
});

describe('database file modes', () => {
  const mode = (p: string) => (statSync(p).mode & 0o777).toString(8);

  it('jit agent add on a fresh JIT_DB: directory 0700, database 0600', async () => {
    const env = freshEnv({ JIT_DB: join(dir, 'fresh-agent-add', 'nested', 'jit.db') });
    const res = await runJit(['agent', 'add', 'moltbot'], env);
    expect(res.code, res.stderr).toBe(0);
    expect(mode(join(dir, 'fresh-agent-add', 'nested'))).toBe('700');
    expect(mode(join(dir, 'fresh-agent-add'))).toBe('700');
    expect(mode(env.JIT_DB!)).toBe('600');
  });

  it('jit serve on a fresh JIT_DB: directory 0700; database, -wal and -shm 0600 while it runs', async () => {
    const env = freshEnv();
    const serve = await startJitServe(env);
    try {
      expect(mode(join(env.JIT_DB!, '..'))).toBe('700');
      for (const f of ['', '-wal', '-shm']) expect([f, mode(env.JIT_DB! + f)]).toEqual([f, '600']);
    } finally {
      expect(await serve.stop()).toBe(0);
    }
  });

  it('an existing directory open to others: left as it is, and jit serve warns naming it', async () => {
    const shared = join(dir, 'shared-dir');
    mkdirSync(shared);
    chmodSync(shared, 0o755);
    const env = freshEnv({ JIT_DB: join(shared, 'jit.db') });
    const serve = await startJitServe(env);
    try {
      expect(mode(shared)).toBe('755');
      expect(mode(env.JIT_DB!)).toBe('600');
      // Logged before "listening on", but pino writes asynchronously: wait for the line rather than assume it is there.
      const warning = await until(() => serve.output().split('\n').find((l) => l.includes('other local users can read or write the database')), 10_000, 'the warning');
      expect(JSON.parse(warning)).toMatchObject({ level: 40, loose: [`${shared} is 0755`] });
    } finally {
      expect(await serve.stop()).toBe(0);
    }
  });
});
