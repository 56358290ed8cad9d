import NodeVault from 'node-vault';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ManualClock } from '../../src/lib/clock.ts';
import { startBroker, type RunningBroker, type StartOptions } from '../../src/main.ts';
import { startDevVault } from '../../src/vault/dev/index.ts';
import { sqliteDatabase, type Db } from '../../src/storage/sqlite/index.ts';
import { startFaultProxy } from '../fakes/fault-proxy.ts';
import { captureLogger } from './log-capture.ts';

export const TEST_POLICY = `
agents:
  moltbot:
    sessions: ["hook:jit:moltbot*"]
    default_session: "hook:jit:moltbot"
    webhook: openclaw
  other:
    sessions: ["hook:jit:other"]
rules:
  - name: docker-read
    agents: [moltbot, other]
    resource: vault
    paths: ["homelab/data/docker/*"]
    capabilities: [read, list]
    tier: 1
    max_ttl: 1h
  - name: docker-list
    agents: [moltbot]
    resource: vault
    paths: ["homelab/metadata/docker/*"]
    capabilities: [list, read]
    tier: 1
    max_ttl: 1h
  - name: homelab-write
    agents: [moltbot]
    resource: vault
    paths: ["homelab/data/*"]
    capabilities: [read, create, update]
    tier: 2
    max_ttl: 30m
  - name: ci-read
    agents: [moltbot]
    resource: vault
    paths: ["homelab/data/ci/*"]
    capabilities: [read]
    tier: 1
    max_ttl: 5m
  - name: prod-delete
    agents: [moltbot]
    resource: vault
    paths: ["homelab/data/prod/*"]
    capabilities: [delete]
    tier: 3
    max_ttl: 10m
  - name: agent-branches
    agents: [moltbot]
    resource: gate
    repos: ["homelab/*"]
    refs: ["refs/heads/agent/*"]
    tier: 1
    max_ttl: 1h
  - name: release-branches
    agents: [moltbot]
    resource: gate
    repos: ["homelab/*"]
    refs: ["refs/heads/release/*"]
    tier: 2
    max_ttl: 30m
deny:
  - paths: ["sys/*", "auth/*", "homelab/data/vault/*"]
  - repos: ["homelab/vault-config"]
`;

export const ROOT_TOKEN = 'hvs.test-root-token-abcdefgh';

/**
 * Makes `broker`'s next Vault `method` call wait until released: a mint
 * held mid-issue, or hung in Vault. `reached` resolves when the call
 * arrives; `release()` lets it (and every later call) through to the real
 * Vault. The call itself is not replaced: it runs, late.
 */
export function holdVaultCall(broker: RunningBroker, method: 'writePolicy' | 'createOrphanToken') {
  const vault = broker.deps.vault as unknown as Record<string, (...args: unknown[]) => Promise<unknown>>;
  const original = vault[method]!;
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  let entered!: () => void;
  const reached = new Promise<void>((r) => (entered = r));
  vault[method] = async (...args: unknown[]) => {
    entered();
    await gate;
    return original(...args);
  };
  return {
    reached,
    release() {
      vault[method] = original;
      release();
    },
  };
}

export interface Harness {
  broker: RunningBroker;
  clock: ManualClock;
  dir: string;
  policiesDir: string;
  /** Everything the broker logged, one JSON line per entry. */
  logs(): string;
  devVault: Awaited<ReturnType<typeof startDevVault>>;
  proxy: Awaited<ReturnType<typeof startFaultProxy>>;
  /** A node-vault client holding the dev Vault's root token (for assertions). */
  root: NodeVault.client;
  /** A node-vault client holding `token`, straight to the dev Vault. */
  vaultAs(token: string): NodeVault.client;
  addAgent(name: string): Promise<string>;
  /** The broker's SQLite connection, for seeding and inspecting tables in tests (src/ never uses it). */
  db: Db;
  /** The ephemeral `jit-…` policies now in the development Vault. */
  jitPolicies(): Promise<string[]>;
  /** Whether an ACL policy exists in the development Vault. */
  policyExists(name: string): Promise<boolean>;
  call(method: string, path: string, opts?: { token?: string; body?: unknown; raw?: string; headers?: Record<string, string> }): Promise<{ status: number; headers: Headers; body: any }>;
  close(): Promise<void>;
}

/**
 * The whole broker in-process, talking over HTTP through node-vault to the
 * development Vault (behind a fault proxy), on a temporary database, with a
 * manual clock shared by both so tests drive expiry.
 */
export async function startHarness(opts: { policy?: string; env?: Record<string, string>; start?: Partial<StartOptions> } = {}): Promise<Harness> {
  const clock = new ManualClock(Date.now());
  const devVault = await startDevVault({ host: '127.0.0.1', port: 0, rootToken: ROOT_TOKEN, clock });
  const proxy = await startFaultProxy(devVault.url);
  const dir = mkdtempSync(join(tmpdir(), 'jit-broker-test-'));
  const policiesDir = join(dir, 'policies');
  mkdirSync(policiesDir);
  writeFileSync(join(policiesDir, 'test.yaml'), opts.policy ?? TEST_POLICY);
  const captured = captureLogger();
  const broker = await startBroker(
    {
      JIT_HOST: '127.0.0.1',
      JIT_PORT: '0',
      JIT_DB: join(dir, 'jit.db'),
      JIT_POLICIES: policiesDir,
      VAULT_ADDR: proxy.url,
      VAULT_TOKEN: ROOT_TOKEN,
      ...opts.env,
    },
    { clock, log: captured.log, sweepIntervalMs: 3_600_000, ...opts.start },
  );
  const root = NodeVault({ endpoint: devVault.url, token: ROOT_TOKEN, noCustomHTTPVerbs: true });
  await root.write('homelab/data/docker/registry', { data: { username: 'demo', password: 'pw-registry' } });
  await root.write('homelab/data/ci/runner', { data: { key: 'ci-key' } });
  await root.write('homelab/data/apps/web', { data: { key: 'web-key' } });

  return {
    broker,
    clock,
    dir,
    policiesDir,
    logs: captured.text,
    devVault,
    proxy,
    root,
    vaultAs: (token) => NodeVault({ endpoint: devVault.url, token, noCustomHTTPVerbs: true }),
    addAgent: async (name) => (await broker.deps.agents.add(name)).token,
    // A getter: a harness on PostgreSQL (JIT_DATABASE_URL in env) has no SQLite handle, and only fails when a test asks for it.
    get db() {
      return sqliteDatabase(broker.deps.storage);
    },
    async jitPolicies() {
      try {
        const { data } = await root.read('sys/policies/acl?list=true');
        return (data.keys as string[]).filter((k) => k.startsWith('jit-'));
      } catch (err) {
        // Vault answers an empty list with 404.
        if ((err as { response?: { statusCode?: number } }).response?.statusCode === 404) return [];
        throw err;
      }
    },
    async policyExists(name) {
      try {
        await root.read(`sys/policies/acl/${name}`);
        return true;
      } catch (err) {
        if ((err as { response?: { statusCode?: number } }).response?.statusCode === 404) return false;
        throw err;
      }
    },
    async call(method, path, o = {}) {
      const headers: Record<string, string> = { ...o.headers };
      if (o.token) headers.authorization = `Bearer ${o.token}`;
      let body: string | undefined = o.raw;
      if (o.body !== undefined) body = JSON.stringify(o.body);
      if (body !== undefined) headers['content-type'] ??= 'application/json';
      const res = await fetch(`${broker.url}${path}`, { method, headers, ...(body !== undefined ? { body } : {}) });
      const text = await res.text();
      let parsed: unknown = text;
      try {
        parsed = JSON.parse(text);
      } catch {
        /* not JSON */
      }
      return { status: res.status, headers: res.headers, body: parsed };
    },
    async close() {
      await broker.stop();
      await proxy.close();
      await devVault.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** The raw bytes of the SQLite database and its WAL, for secret greps. */
export function databaseBytes(dir: string): string {
  return ['jit.db', 'jit.db-wal']
    .map((f) => {
      try {
        return readFileSync(join(dir, f)).toString('latin1');
      } catch {
        return '';
      }
    })
    .join('');
}
