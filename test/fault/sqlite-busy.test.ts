import Database from 'better-sqlite3';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDevVault, type DevVault } from '../../src/vault/dev/index.ts';
import { externalWriter, freePort, killAllServe, sleep, spawnServe, type ServeProcess } from '../helpers/chaos-process.ts';
import { figureLog } from '../helpers/chaos-report.ts';
import { runJit } from '../helpers/cli.ts';

/**
 * SQLite busy: another connection (here: the test process, or a separate
 * writer process) holds the write lock, or writes relentlessly, while the
 * broker (`jit serve`, a child process) serves. The broker opens the file
 * with busy_timeout = 5000 ms and better-sqlite3 waits synchronously.
 *
 * What must hold: the broker answers every call — within busy_timeout when
 * the lock goes away in time — never crashes, and never puts a stack trace
 * in a body. What it answers when the wait runs out is recorded (and is a
 * bug when it is a 500; see the it.fails below).
 */
const ROOT = 'hvs.sqlite-busy-root-token';
const POLICY = `
agents:
  moltbot:
    sessions: ["hook:jit:moltbot*"]
rules:
  - name: docker-read
    agents: [moltbot]
    resource: vault
    paths: ["homelab/data/docker/*"]
    capabilities: [read]
    tier: 1
    max_ttl: 1h
`;
const tier1 = { resource: 'vault', tier: 1, reason: 'busy test', vault_paths: [{ path: 'homelab/data/docker/registry', capabilities: ['read'] }] };

interface Timed {
  what: string;
  status: number;
  ms: number;
  body: string;
}

describe('fault: SQLite busy', () => {
  let dir: string;
  let dbPath: string;
  let vault: DevVault;
  let broker: ServeProcess;
  let env: Record<string, string>;
  let token: string;
  /** The answers to writes during the lock longer than busy_timeout, and during the writer loop. */
  const longLock: Timed[] = [];
  const loop: Timed[] = [];

  const call = async (what: string, method: string, path: string, body?: unknown): Promise<Timed> => {
    const t0 = Date.now();
    try {
      const res = await fetch(`${broker.url}${path}`, {
        method,
        headers: { authorization: `Bearer ${token}`, ...(body ? { 'content-type': 'application/json' } : {}) },
        ...(body ? { body: JSON.stringify(body) } : {}),
        signal: AbortSignal.timeout(30_000),
      });
      return { what, status: res.status, ms: Date.now() - t0, body: await res.text() };
    } catch (err) {
      return { what, status: 0, ms: Date.now() - t0, body: String(err) };
    }
  };
  /** Holds the write lock from this process's own connection for `ms`, then commits. */
  const holdWriteLock = (ms: number) => {
    const db = new Database(dbPath);
    db.exec('BEGIN IMMEDIATE');
    db.prepare(`INSERT INTO settings (key, value) VALUES ('chaos-lock', ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value`).run(String(Date.now()));
    return new Promise<void>((resolve) =>
      setTimeout(() => {
        db.exec('COMMIT');
        db.close();
        resolve();
      }, ms),
    );
  };
  const noStack = (t: Timed) => !/\n\s+at .+:\d+:\d+/.test(t.body) && !t.body.includes('SqliteError');
  const alive = () => broker.child.exitCode === null && broker.child.signalCode === null;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'jit-busy-'));
    dbPath = join(dir, 'jit.db');
    mkdirSync(join(dir, 'policies'));
    writeFileSync(join(dir, 'policies', 'p.yaml'), POLICY);
    vault = await startDevVault({ host: '127.0.0.1', port: 0, rootToken: ROOT });
    env = { JIT_HOST: '127.0.0.1', JIT_PORT: String(await freePort()), JIT_DB: dbPath, JIT_POLICIES: join(dir, 'policies'), VAULT_ADDR: vault.url, VAULT_TOKEN: ROOT, LOG_LEVEL: 'warn', JIT_RATE_PER_MINUTE: '100000' };
    const add = await runJit(['agent', 'add', 'moltbot'], env);
    token = add.stdout.trim().split('\n').at(-1)!;
    broker = await spawnServe(env);
  }, 60_000);

  afterAll(async () => {
    await killAllServe();
    await vault?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('waits out a short lock, stays up through a long one, never shows a stack', async () => {
    const f = figureLog('fault: sqlite busy (lock held by another connection)');
    const first = await call('tier-1 request', 'POST', '/jit/request', tier1);
    expect(first.status).toBe(201);
    const id = JSON.parse(first.body).id as string;

    // A lock shorter than busy_timeout: writes wait for it, then succeed.
    const short = holdWriteLock(1_500);
    await sleep(50);
    const a = await Promise.all([call('tier-1 request', 'POST', '/jit/request', tier1), call('GET own request', 'GET', `/jit/requests/${id}`), call('healthz', 'GET', '/healthz')]);
    await short;
    for (const t of a) f.line(`lock 1.5 s: ${t.what} → ${t.status} in ${t.ms} ms`);
    expect(a.map((t) => t.status)).toEqual([201, 200, 200]);
    expect(Math.max(...a.map((t) => t.ms))).toBeLessThan(5_000 + 1_500);

    // A lock longer than busy_timeout (6 s against 5 s).
    const long = holdWriteLock(6_000);
    await sleep(50);
    const b = await Promise.all([
      call('tier-1 request', 'POST', '/jit/request', tier1),
      call('tier-1 request', 'POST', '/jit/request', tier1),
      call('GET own request', 'GET', `/jit/requests/${id}`),
      call('healthz', 'GET', '/healthz'),
    ]);
    await long;
    longLock.push(...b.filter((t) => t.what.startsWith('tier-1')));
    for (const t of b) f.line(`lock 6 s: ${t.what} → ${t.status} in ${t.ms} ms${t.status >= 400 ? ` ${t.body.slice(0, 160)}` : ''}`);
    expect(b.every((t) => t.status > 0)).toBe(true); // every call answered
    expect(b.every(noStack)).toBe(true);
    expect(b.every((t) => [200, 201, 500, 503].includes(t.status))).toBe(true); // answered, and nothing odd (502, 504, …)
    expect(Math.max(...b.map((t) => t.ms))).toBeLessThan(6_000 + 5_000 + 2_000);
    expect(alive()).toBe(true);
    const after = await call('healthz after', 'GET', '/healthz');
    expect(after.status).toBe(200);
    const again = await call('tier-1 after', 'POST', '/jit/request', tier1);
    expect(again.status).toBe(201);
    f.line(`after the lock: healthz ${after.status}, tier-1 ${again.status} in ${again.ms} ms, broker alive=${alive()}`);
    f.set('lock_short_ok', a.every((t) => t.status < 400));
    f.set('lock_long_statuses', b.map((t) => t.status).join('/'));
    f.set('crash', !alive());
    f.print();
  }, 60_000);

  /*
   * BUG: a write that waits out busy_timeout answers 500 "internal error"
   * (SqliteError "database is locked" reaches app.onError in
   * src/http/app.ts, which maps every non-BrokerError to INTERNAL). The
   * database being busy is a temporary unavailability: it should be a 503
   * with Retry-After, like Vault being down. Repro: the test above (hold
   * `BEGIN IMMEDIATE` on the database file from another connection for more
   * than 5 s and POST a tier-1 request). Remove `.fails` once mapped.
   */
  it('a write that waits out busy_timeout answers 503 with Retry-After, not 500', () => {
    expect(longLock.length).toBeGreaterThan(0);
    expect(longLock.filter((t) => t.status >= 500).map((t) => t.status)).toEqual(longLock.filter((t) => t.status >= 500).map(() => 503));
  });

  it('keeps serving while another process commits in a tight loop', async () => {
    const f = figureLog('fault: sqlite busy (another process writing in a loop)');
    const writer = externalWriter(dbPath, 3_000);
    await sleep(100);
    const deadline = Date.now() + 2_600;
    let cycles = 0;
    while (Date.now() < deadline) {
      const issued = await call('tier-1 request', 'POST', '/jit/request', tier1);
      loop.push(issued);
      if (issued.status === 201) loop.push(await call('revoke', 'POST', `/jit/requests/${JSON.parse(issued.body).id}/revoke`));
      cycles++;
    }
    const commits = await writer.done;
    const byWhat = new Map<string, Map<number, number>>();
    for (const r of loop) {
      const m = byWhat.get(r.what) ?? new Map<number, number>();
      m.set(r.status, (m.get(r.status) ?? 0) + 1);
      byWhat.set(r.what, m);
    }
    f.line(`external writer: ${commits} commits in 3 s; agent: ${cycles} issue(+revoke) cycles, ${loop.length} calls`);
    for (const [what, m] of byWhat) f.line(`${what}: ${[...m].map(([s, n]) => `${n}× ${s}`).join(', ')}`);
    const fiveHundreds = loop.filter((r) => r.status === 500);
    if (fiveHundreds.length) f.line(`500s: ${fiveHundreds.length}, answered after ${Math.min(...fiveHundreds.map((r) => r.ms))}-${Math.max(...fiveHundreds.map((r) => r.ms))} ms (busy_timeout is 5000 ms): ${fiveHundreds[0]!.body.slice(0, 120)}`);
    const causes = new Map<string, number>();
    for (const l of broker.output().split('\n')) {
      if (!l.startsWith('{')) continue;
      const j = JSON.parse(l) as { msg?: string; err?: { message?: string } };
      const k = `${j.msg}${j.err?.message ? ` (${j.err.message})` : ''}`;
      causes.set(k, (causes.get(k) ?? 0) + 1);
    }
    for (const [k, n] of causes) f.line(`broker log: ${n}× ${k.slice(0, 200)}`);
    f.set('calls', loop.length);
    f.set('http_500', fiveHundreds.length);
    f.set('crash', !alive());
    f.print();
    expect(alive()).toBe(true);
    expect(loop.every((t) => t.status > 0)).toBe(true);
    expect(loop.every(noStack)).toBe(true);
    expect((await call('healthz after', 'GET', '/healthz')).status).toBe(200);
  }, 30_000);

  /*
   * BUG: transactions that read before they write are opened DEFERRED
   * (better-sqlite3's default `db.transaction(fn)()`), e.g. revokeRequest
   * (src/broker/revoke.ts, the transaction at the top), the credential
   * reservation in issueCredential (src/broker/credential-issue.ts) and
   * the sweep (src/broker/lifecycle.ts). When another process commits
   * between the read and the write (WAL), SQLite answers SQLITE_BUSY at once
   * — the busy handler cannot help a stale snapshot — so the agent gets a
   * 500 "database is locked" after a few ms although busy_timeout is 5 s.
   * decide.ts already uses `.immediate()`; the others should too (or retry).
   * Seen in the crash test while `jit approve` ran beside the broker.
   * Repro: the test above. Remove `.fails` once fixed.
   */
  it('another process writing never turns an agent call into a 500', () => {
    expect(loop.length).toBeGreaterThan(0);
    expect(loop.filter((r) => r.status === 500).length).toBe(0);
  });
});
