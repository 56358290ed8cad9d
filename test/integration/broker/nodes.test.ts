import { randomBytes } from 'node:crypto';
import Database from 'better-sqlite3';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDevVault, type DevVault } from '../../../src/vault/dev/index.ts';
import { ROOT_TOKEN, TEST_POLICY } from '../../helpers/broker-harness.ts';
import { freePort, killAllServe, sleep, spawnServe, until, type ServeProcess } from '../../helpers/chaos-process.ts';
import { startChaosProxy, type ChaosProxy } from '../../helpers/chaos-proxy.ts';
import { figureLog } from '../../helpers/chaos-report.ts';
import { createLogger } from '../../../src/lib/logger.ts';
import { startBroker, type RunningBroker } from '../../../src/main.ts';
import { runJit } from '../../helpers/cli.ts';
import { freshPostgresDatabase } from '../../helpers/postgres.ts';

/*
 * Several `jit serve` processes on one database and one Vault (issue 19):
 * a broker that starts, reconciles and sweeps while another is mid-issue
 * leaves that issue alone; the mint of a broker that died (its node lease
 * lapsed) is settled by another's sweep, its policy deleted; another
 * installation's policies on the shared Vault are never touched. Node A
 * talks to Vault through a proxy that holds its token-create call: a mint
 * stopped at an exact point, for as long as the test needs.
 *
 * PostgreSQL (the engine for several brokers) and one SQLite file shared by
 * two processes on one host.
 */
const CREATE = '/v1/auth/token/create-orphan';
const LEASE = '2s';

interface Db {
  one<T>(sql: string, ...args: unknown[]): Promise<T | undefined>;
  close(): Promise<void>;
}

async function postgresDb(url: string): Promise<Db> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  return {
    async one<T>(sql: string, ...args: unknown[]) {
      let i = 0;
      return (await client.query(sql.replace(/\?/g, () => `$${++i}`), args)).rows[0] as T | undefined;
    },
    close: () => client.end(),
  };
}

function sqliteDb(path: string): Db {
  return {
    async one<T>(sql: string, ...args: unknown[]) {
      const d = new Database(path, { readonly: true });
      try {
        return d.prepare(sql).get(...args) as T | undefined;
      } finally {
        d.close();
      }
    },
    async close() {},
  };
}

const engines = [
  { name: 'PostgreSQL', database: async (_dir: string) => ({ JIT_DATABASE_URL: await freshPostgresDatabase('jit_nodes'), JIT_KEY_ENCRYPTION_KEY: randomBytes(32).toString('base64') }) },
  { name: 'one SQLite file, two processes', database: async (dir: string) => ({ JIT_DB: join(dir, 'jit.db') }) },
];

describe.each(engines)('several brokers on one database: $name', ({ database }) => {
  let dir: string;
  let vault: DevVault;
  let proxy: ChaosProxy;
  let db: Db;
  let common: Record<string, string>;
  let token: string;
  let a: ServeProcess | undefined;
  let b: ServeProcess | undefined;
  /** Releases the token-create call the proxy holds (the socket is then dropped: A's Vault call fails). */
  let releaseHeld: (() => void) | undefined;

  /** The node id a broker logged (its logger may flush after the listening line). */
  const nodeIdOf = (p: ServeProcess) => until(() => /"node_id":"(node_[0-9a-f]+)"/.exec(p.output())?.[1], undefined, 'the broker to log its node id');
  const tier1 = (path: string) => ({ resource: 'vault', tier: 1, reason: 'two nodes', vault_paths: [{ path, capabilities: ['read'] }] });
  const request = (p: ServeProcess, body: unknown) =>
    fetch(`${p.url}/jit/request`, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });
  const writePolicy = (name: string) =>
    fetch(`${vault.url}/v1/sys/policies/acl/${name}`, { method: 'PUT', headers: { 'X-Vault-Token': ROOT_TOKEN }, body: JSON.stringify({ policy: 'path "homelab/data/x" { capabilities = ["read"] }' }) });
  const start = async (vaultAddr: string, port: number) =>
    spawnServe({ ...common, JIT_PORT: String(port), VAULT_ADDR: vaultAddr, VAULT_TOKEN: ROOT_TOKEN });
  /** Holds A's next token create: resolves once it is held (its policy is written, its row minting). */
  const holdNextCreate = () =>
    new Promise<void>((reached) => {
      proxy.onHeld = () => {
        reached();
        return new Promise<void>((release) => (releaseHeld = release));
      };
      proxy.setAction((_m, path) => (path.startsWith(CREATE) ? 'hold-request' : 'forward'));
    });
  /** Makes the in-process broker's next Vault `method` call wait until released (a mint held mid-issue). */
  const holdVault = (broker: RunningBroker, method: 'createOrphanToken') => {
    const v = broker.deps.vault as unknown as Record<string, (...args: unknown[]) => Promise<unknown>>;
    const original = v[method]!;
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let entered!: () => void;
    const reached = new Promise<void>((r) => (entered = r));
    v[method] = async (...args: unknown[]) => {
      entered();
      await gate;
      return original(...args);
    };
    return {
      reached,
      release() {
        v[method] = original;
        release();
      },
    };
  };
  const minting = (nodeId: string) =>
    db.one<{ id: string; request_id: string; vault_policy: string; state: string }>(`SELECT id, request_id, vault_policy, state FROM credentials WHERE node_id = ? AND state = 'minting'`, nodeId);

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'jit-nodes-'));
    mkdirSync(join(dir, 'policies'));
    writeFileSync(join(dir, 'policies', 'p.yaml'), TEST_POLICY);
    vault = await startDevVault({ host: '127.0.0.1', port: 0, rootToken: ROOT_TOKEN });
    await fetch(`${vault.url}/v1/homelab/data/docker/registry`, { method: 'POST', headers: { 'X-Vault-Token': ROOT_TOKEN }, body: JSON.stringify({ data: { k: 1 } }) });
    proxy = await startChaosProxy(vault.url);
    const engine = await database(dir);
    common = { JIT_HOST: '127.0.0.1', JIT_POLICIES: join(dir, 'policies'), LOG_LEVEL: 'info', JIT_NODE_LEASE: LEASE, ...engine };
    db = 'JIT_DATABASE_URL' in engine ? await postgresDb(engine.JIT_DATABASE_URL) : sqliteDb(engine.JIT_DB);
    token = (await runJit(['agent', 'add', 'moltbot'], { ...common, VAULT_ADDR: vault.url, VAULT_TOKEN: ROOT_TOKEN })).stdout.trim().split('\n').at(-1)!;
  }, 60_000);
  afterAll(async () => {
    releaseHeld?.();
    await killAllServe();
    await db?.close();
    await proxy?.close();
    await vault?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('a broker starting (reconciling, sweeping) while another is mid-issue leaves that mint alone, and another installation\'s policies too', async () => {
    const f = figureLog('nodes: B starts while A is mid-issue');
    // Node A in this process, so that its mint can be held for as long as the test needs (a Vault call
    // through a proxy would time out after 5 s): its token create waits until released.
    const inProcess = await startBroker({ ...common, JIT_PORT: '0', VAULT_ADDR: vault.url, VAULT_TOKEN: ROOT_TOKEN, LOG_LEVEL: 'silent' }, { log: createLogger('silent') });
    try {
      const nodeA = inProcess.deps.nodeId!;
      expect(nodeA).toMatch(/^node_[0-9a-f]{16}$/);
      const hold = holdVault(inProcess, 'createOrphanToken');
      const answer = fetch(`${inProcess.url}/jit/request`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body: JSON.stringify(tier1('homelab/data/docker/registry')),
      });
      await hold.reached;
      const row = (await minting(nodeA))!;
      expect(row).toBeDefined();

      // On the shared Vault: another installation's ephemeral policy, and a stray of this one no row claims.
      const installation = (await db.one<{ value: string }>(`SELECT value FROM settings WHERE key = 'installation_id'`))!.value;
      const foreign = 'jit-0123456789abcdef-cred_01foreign';
      const stray = `jit-${installation}-cred_01stray`;
      expect(installation).not.toBe('0123456789abcdef');
      await writePolicy(foreign);
      await writePolicy(stray);

      b = await start(vault.url, await freePort());
      const nodeB = await nodeIdOf(b);
      expect(nodeB).not.toBe(nodeA);
      await until(() => b!.output().includes('startup reconciliation done'), undefined, 'B to reconcile');
      const atReconcile = (await db.one<{ state: string }>('SELECT state FROM credentials WHERE id = ?', row.id))!.state;
      // Several of B's sweeps (every 5 s) and of A's lease periods (2 s) pass while A is still mid-issue.
      await sleep(11_000);
      const after = (await db.one<{ state: string }>('SELECT state FROM credentials WHERE id = ?', row.id))!.state;
      const policies = vault.policyNames();
      f.line(`A's mint after B's start-up reconciliation: ${atReconcile}, after B's sweeps: ${after}; foreign policy kept: ${policies.includes(foreign)}; own stray deleted: ${!policies.includes(stray)}`);
      expect(atReconcile).toBe('minting');
      expect(after).toBe('minting');
      expect(policies).toContain(foreign);
      expect(policies).not.toContain(stray);

      // A finishes its mint: the credential is live, the agent has its token.
      hold.release();
      const res = await answer;
      expect(res.status).toBe(201);
      const issued = (await db.one<{ state: string }>('SELECT state FROM credentials WHERE id = ?', row.id))!.state;
      const interrupted = await db.one<{ n: number }>(`SELECT COUNT(*) AS n FROM audit_log WHERE event = 'credential.interrupted'`);
      f.line(`A's mint once released: ${res.status}, credential ${issued}; credential.interrupted entries: ${Number(interrupted!.n)}`);
      f.print();
      expect(issued).toBe('live');
      expect(Number(interrupted!.n)).toBe(0);
    } finally {
      await inProcess.stop();
    }
  }, 120_000);

  it('the mint of a broker killed mid-issue is settled by another broker\'s sweep once its node lease lapsed: policy deleted, request failed', async () => {
    const f = figureLog('nodes: A killed mid-issue, B settles it');
    a = await start(proxy.url, await freePort());
    const nodeA = await nodeIdOf(a);
    const held = holdNextCreate();
    const answer = request(a!, tier1('homelab/data/docker/registry')).catch(() => 'connection lost');
    await held;
    const row = (await minting(nodeA))!;
    await until(() => vault.policyNames().includes(row.vault_policy), undefined, 'A to write its policy');
    await a!.kill('SIGKILL');
    const killedAt = Date.now();
    releaseHeld!();
    expect(await answer).toBe('connection lost');
    const done = await until(
      async () => {
        const c = await db.one<{ state: string; end_reason: string }>('SELECT state, end_reason FROM credentials WHERE id = ?', row.id);
        return c?.state === 'failed' ? c : undefined;
      },
      undefined,
      'B to settle A\'s interrupted mint',
    );
    const seconds = (Date.now() - killedAt) / 1000;
    const req = (await db.one<{ status: string; failure: string }>('SELECT status, failure FROM requests WHERE id = ?', row.request_id))!;
    const entry = (await db.one<{ data: string }>(`SELECT data FROM audit_log WHERE request_id = ? AND event = 'credential.interrupted'`, row.request_id))!;
    f.line(`settled by B ${seconds.toFixed(1)} s after A's SIGKILL (lease ${LEASE}, sweep every 5 s): credential ${done.state} ("${done.end_reason}"), request ${req.status}, policy deleted: ${!vault.policyNames().includes(row.vault_policy)}`);
    f.print();
    expect(done.end_reason).toBe('broker stopped during issue');
    expect(req.status).toBe('failed');
    expect(req.failure).toMatch(/^interrupted/);
    expect(JSON.parse(entry.data)).toMatchObject({ credential_id: row.id, node_id: nodeA });
    expect(vault.policyNames()).not.toContain(row.vault_policy);
    // Well before the stale-mint bound (2 minutes): the lease proved A dead.
    expect(seconds).toBeLessThan(60);
    // B still issues.
    expect((await request(b!, tier1('homelab/data/docker/registry'))).status).toBe(201);
  }, 120_000);
});
