import Database from 'better-sqlite3';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { expect } from 'vitest';
import { startDevVault, type DevVault } from '../../src/vault/dev/index.ts';
import type { Jwks } from '../../src/keys/key-ring.ts';
import { startTelegramEmulator, type TelegramEmulator } from '../fakes/telegram-emulator/index.ts';
import { startWebhookReceiver, type ReceivedWebhook, type WebhookReceiver } from '../fakes/webhook-receiver.ts';
import { freePort, killAllServe, sleep, spawnServe, type ServeProcess } from './chaos-process.ts';
import { runJit } from './cli.ts';

/**
 * The world of the crash test, all of it in the test process except the
 * broker: a development Vault (so it outlives every broker kill and its
 * tokens and policies can be counted), the Telegram emulator, and two
 * signature-checking webhook receivers (OpenClaw-shaped for `moltbot`,
 * generic Standard Webhooks for `ci`). The broker runs as `jit serve` on a
 * fixed port so the URL survives restarts.
 */
export const CHAT_ID = -1001000000777;
export const ALICE = 111;
export const BOB = 222;
export const CAROL = 333;
export const BOT_TOKEN = '7000000009:AAH-chaos-test-token_0123456789abcdefXYZ';
export const HOOKS_TOKEN = 'openclaw-hooks-token-chaos-0123456789abcdef';
const ROOT_TOKEN = 'hvs.chaos-root-token-0123456789';

export function chaosPolicy(standardUrl: string): string {
  return `
agents:
  moltbot:
    sessions: ["hook:jit:moltbot*"]
    default_session: "hook:jit:moltbot"
    webhook: openclaw
  ci:
    sessions: ["hook:jit:ci*"]
    default_session: "hook:jit:ci"
    webhook: {url: "${standardUrl}/events", format: standard}
rules:
  - name: docker-read
    agents: [moltbot, ci]
    resource: vault
    paths: ["homelab/data/docker/*"]
    capabilities: [read, list]
    tier: 1
    max_ttl: 1h
  - name: homelab-write
    agents: [moltbot, ci]
    resource: vault
    paths: ["homelab/data/*"]
    capabilities: [read, create, update]
    tier: 2
    max_ttl: 30m
  - name: prod-delete
    agents: [moltbot, ci]
    resource: vault
    paths: ["homelab/data/prod/*"]
    capabilities: [delete]
    tier: 3
    max_ttl: 10m
  - name: agent-branches
    agents: [moltbot, ci]
    resource: gate
    repos: ["homelab/*"]
    refs: ["refs/heads/agent/*"]
    tier: 1
    max_ttl: 1h
  - name: release-branches
    agents: [moltbot, ci]
    resource: gate
    repos: ["homelab/*"]
    refs: ["refs/heads/release/*"]
    tier: 2
    max_ttl: 30m
  - name: main-branch
    agents: [moltbot, ci]
    resource: gate
    repos: ["homelab/*"]
    refs: ["refs/heads/main"]
    tier: 3
    max_ttl: 10m
deny:
  - paths: ["sys/*", "auth/*"]
`;
}

/** One broker of the world: `jit serve` on its own fixed port, so its URL survives restarts. */
export interface ChaosNode {
  index: number;
  port: number;
  url: string;
  /** The running process, if any. */
  broker(): ServeProcess | undefined;
  isUp(): boolean;
  start(): Promise<ServeProcess>;
  /** SIGKILL, and wait until the process is gone. */
  kill(): Promise<void>;
  /** SIGTERM (graceful), and wait. */
  stop(): Promise<number | null>;
}

/** Where the census reads the brokers' database: SQL that runs the same on SQLite and PostgreSQL. */
export interface CensusDb {
  readonly engine: 'sqlite' | 'postgres';
  all<T = Record<string, unknown>>(sql: string): Promise<T[]>;
  close(): Promise<void>;
}

/** The SQLite file, opened read-only for each query (the broker may be killed and restarted between them). */
export function sqliteCensusDb(dbPath: string): CensusDb {
  return {
    engine: 'sqlite',
    async all<T>(sql: string) {
      const db = new Database(dbPath, { readonly: true, fileMustExist: true });
      db.pragma('busy_timeout = 5000');
      try {
        return db.prepare(sql).all() as T[];
      } finally {
        db.close();
      }
    },
    async close() {},
  };
}

/** A PostgreSQL database, read through a small pool (BIGINT and COUNT come back as strings: the census converts). */
export function postgresCensusDb(url: string): CensusDb {
  const pool = new pg.Pool({ connectionString: url, max: 2, connectionTimeoutMillis: 10_000, statement_timeout: 10_000 });
  pool.on('error', () => {});
  return {
    engine: 'postgres',
    async all<T>(sql: string) {
      return (await pool.query(sql)).rows as T[];
    },
    close: () => pool.end(),
  };
}

export interface ChaosWorld {
  dir: string;
  /** The SQLite file (also set, unused by the brokers, on PostgreSQL). */
  dbPath: string;
  /** The PostgreSQL URL when the brokers run on PostgreSQL. */
  databaseUrl: string | undefined;
  /** The database as the census reads it. */
  db: CensusDb;
  /** Node 0's port and URL (the single-node test's broker). */
  port: number;
  url: string;
  nodes: ChaosNode[];
  vault: DevVault;
  tg: TelegramEmulator;
  openclaw: WebhookReceiver;
  standard: WebhookReceiver;
  /** The environment of every `jit` CLI call (and of `jit serve`, with the node's JIT_PORT). */
  env: Record<string, string>;
  /** Agent name → bearer token (registered with `jit agent add`). */
  tokens: Record<string, string>;
  /** Node 0's running broker, if any. */
  broker(): ServeProcess | undefined;
  /** Whether any node is listening. */
  isUp(): boolean;
  /** Resolves once a node is listening (at once if one is). */
  whenUp(): Promise<void>;
  /** A node that is up, other than `avoid` if another one is up; undefined when none is. */
  pickNode(rand: () => number, avoid?: number): ChaosNode | undefined;
  /** Node 0: start, SIGKILL, SIGTERM (the single-node test's broker). */
  start(): Promise<ServeProcess>;
  kill(): Promise<void>;
  stop(): Promise<number | null>;
  /** Starts every node that is down. */
  startAll(): Promise<void>;
  /** SIGTERMs every node; the exit codes. */
  stopAll(): Promise<(number | null)[]>;
  /** Restarts and startup times (ms) measured so far, all nodes. */
  startTimesMs: number[];
  /** Every output of every broker process so far (each prefixed by its node and pid). */
  outputs(): string;
  /**
   * Telegram message id showing a request, if the bot posted one: the latest, if it posted twice (a
   * restart between the post and its record re-posts it). Taps count only under the message the
   * broker recorded, which is the latest post.
   */
  messageFor(requestId: string): number | undefined;
  /** Request id → how many bot messages show it. */
  postsPerRequest(): Map<string, number>;
  cli(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }>;
  close(): Promise<void>;
}

export interface ChaosWorldOptions {
  approvalTimeout?: string;
  /** PostgreSQL URL (an empty database): the brokers share it. Unset: one SQLite file. */
  databaseUrl?: string;
  /** How many brokers (default 1); each has its own port. Several need `databaseUrl`. */
  nodes?: number;
  /** Added to (or overriding) the brokers' and the CLI's environment. */
  env?: Record<string, string>;
}

export async function startChaosWorld(o: ChaosWorldOptions = {}): Promise<ChaosWorld> {
  const count = o.nodes ?? 1;
  if (count > 1 && !o.databaseUrl) throw new Error('several chaos nodes need a PostgreSQL database (databaseUrl)');
  const dir = mkdtempSync(join(tmpdir(), 'jit-chaos-'));
  const dbPath = join(dir, 'data', 'jit.db');
  const policiesDir = join(dir, 'policies');
  mkdirSync(policiesDir);
  const ports: number[] = [];
  for (let i = 0; i < count; i++) {
    let p = await freePort();
    while (ports.includes(p)) p = await freePort();
    ports.push(p);
  }
  let jwks: Jwks = { keys: [] };

  const vault = await startDevVault({ host: '127.0.0.1', port: 0, rootToken: ROOT_TOKEN });
  for (const k of ['registry', 'ci', 'web', 'db']) {
    await fetch(`${vault.url}/v1/homelab/data/docker/${k}`, { method: 'POST', headers: { 'X-Vault-Token': ROOT_TOKEN }, body: JSON.stringify({ data: { k } }) });
  }
  const tg = await startTelegramEmulator({
    token: BOT_TOKEN,
    chats: [{ id: CHAT_ID, type: 'supergroup', title: 'chaos approvals' }],
    users: [
      { id: ALICE, first_name: 'Alice' },
      { id: BOB, first_name: 'Bob' },
      { id: CAROL, first_name: 'Carol' },
    ],
    maxLongPollSeconds: 1,
    callbackQueryTtlMs: 120_000,
  });
  const openclaw = await startWebhookReceiver({ jwks: () => jwks, bearer: HOOKS_TOKEN });
  const standard = await startWebhookReceiver({ jwks: () => jwks });
  writeFileSync(join(policiesDir, 'chaos.yaml'), chaosPolicy(standard.url));

  const env: Record<string, string> = {
    JIT_HOST: '127.0.0.1',
    JIT_PORT: String(ports[0]),
    JIT_DB: dbPath,
    // On PostgreSQL the signing keys live in the database, sealed under this key (the same on every node).
    ...(o.databaseUrl ? { JIT_DATABASE_URL: o.databaseUrl, JIT_KEY_ENCRYPTION_KEY: randomBytes(32).toString('base64') } : {}),
    JIT_POLICIES: policiesDir,
    JIT_APPROVAL_TIMEOUT: o.approvalTimeout ?? '2h',
    JIT_CLAIM_WINDOW: '2h',
    JIT_RATE_PER_MINUTE: '100000',
    JIT_MAX_PENDING: '10000',
    VAULT_ADDR: vault.url,
    VAULT_TOKEN: ROOT_TOKEN,
    TELEGRAM_BOT_TOKEN: BOT_TOKEN,
    TELEGRAM_CHAT_ID: String(CHAT_ID),
    TELEGRAM_APPROVERS: `${ALICE},${BOB}`,
    TELEGRAM_API_ROOT: tg.url,
    // A SIGKILLed broker's node and Telegram leader leases lapse this soon: its restart (a new node) settles
    // its interrupted mints and polls Telegram again within seconds, not JIT_NODE_LEASE's default 15 s.
    JIT_NODE_LEASE: '2s',
    OPENCLAW_HOOKS_URL: `${openclaw.url}/hooks`,
    OPENCLAW_HOOKS_TOKEN: HOOKS_TOKEN,
    LOG_LEVEL: 'warn',
    ...o.env,
  };

  const cli = (args: string[]) => runJit(args, env, 30_000);
  const tokens: Record<string, string> = {};
  for (const [name, session] of [['moltbot', 'hook:jit:moltbot'], ['ci', 'hook:jit:ci']] as const) {
    const add = await cli(['agent', 'add', name, '--session', session]);
    if (add.code !== 0) throw new Error(`jit agent add ${name} failed: ${add.stderr}`);
    tokens[name] = add.stdout.trim().split('\n').at(-1)!;
  }
  const db = o.databaseUrl ? postgresCensusDb(o.databaseUrl) : sqliteCensusDb(dbPath);

  let waiters: (() => void)[] = [];
  let allOutput = '';
  const startTimesMs: number[] = [];

  const nodes: ChaosNode[] = ports.map((port, index) => {
    const url = `http://127.0.0.1:${port}`;
    const nodeEnv = { ...env, JIT_PORT: String(port) };
    let current: ServeProcess | undefined;
    let up = false;
    let starting: Promise<ServeProcess> | undefined;
    const node: ChaosNode = {
      index,
      port,
      url,
      broker: () => current,
      isUp: () => up,
      start() {
        starting ??= (async () => {
          try {
            const t0 = Date.now();
            current = await spawnServe(nodeEnv);
            startTimesMs.push(Date.now() - t0);
            if (jwks.keys.length === 0) jwks = (await (await fetch(`${url}/.well-known/jwks.json`)).json()) as Jwks;
            up = true;
            for (const w of waiters.splice(0)) w();
            return current;
          } finally {
            starting = undefined;
          }
        })();
        return starting;
      },
      async kill() {
        const b = current;
        if (!b) return;
        up = false;
        await b.kill('SIGKILL');
        allOutput += `--- node ${index} pid ${b.pid} (SIGKILL) ---\n${b.output()}`;
        current = undefined;
      },
      async stop() {
        const b = current;
        if (!b) return null;
        up = false;
        const code = await b.kill('SIGTERM');
        allOutput += `--- node ${index} pid ${b.pid} (SIGTERM, exit ${code}) ---\n${b.output()}`;
        current = undefined;
        return code;
      },
    };
    return node;
  });
  const node0 = nodes[0]!;

  // Telegram message index, refreshed at most every 150 ms (messages() clones every message).
  let index = new Map<string, number[]>();
  let indexedAt = 0;
  const refreshIndex = () => {
    if (Date.now() - indexedAt < 150) return;
    indexedAt = Date.now();
    const next = new Map<string, number[]>();
    for (const m of tg.botMessages(CHAT_ID)) {
      const id = /\breq_[0-9a-z]{26}\b/.exec(m.text ?? '')?.[0];
      if (id) next.set(id, [...(next.get(id) ?? []), m.message_id]);
    }
    index = next;
  };

  const world: ChaosWorld = {
    dir,
    dbPath,
    databaseUrl: o.databaseUrl,
    db,
    port: node0.port,
    url: node0.url,
    nodes,
    vault,
    tg,
    openclaw,
    standard,
    env,
    tokens,
    broker: () => node0.broker(),
    isUp: () => nodes.some((n) => n.isUp()),
    whenUp: () => (nodes.some((n) => n.isUp()) ? Promise.resolve() : new Promise<void>((r) => waiters.push(r))),
    pickNode(rand, avoid) {
      const up = nodes.filter((n) => n.isUp());
      const others = up.filter((n) => n.index !== avoid);
      const from = others.length ? others : up;
      return from.length ? from[Math.floor(rand() * from.length)] : undefined;
    },
    start: () => node0.start(),
    kill: () => node0.kill(),
    stop: () => node0.stop(),
    async startAll() {
      await Promise.all(nodes.filter((n) => !n.isUp()).map((n) => n.start()));
    },
    stopAll: () => Promise.all(nodes.map((n) => n.stop())),
    startTimesMs,
    outputs: () =>
      allOutput +
      nodes
        .map((n) => n.broker())
        .filter((b): b is ServeProcess => !!b)
        .map((b) => `--- node ${nodes.find((n) => n.broker() === b)!.index} pid ${b.pid} (running) ---\n${b.output()}`)
        .join(''),
    messageFor(requestId) {
      refreshIndex();
      return index.get(requestId)?.at(-1);
    },
    postsPerRequest() {
      indexedAt = 0;
      refreshIndex();
      return new Map([...index].map(([k, v]) => [k, v.length]));
    },
    cli,
    async close() {
      waiters = [];
      await killAllServe();
      await db.close().catch(() => {});
      await Promise.allSettled([tg.close(), openclaw.close(), standard.close(), vault.close()]);
      await sleep(50);
      rmSync(dir, { recursive: true, force: true });
    },
  };
  return world;
}

// ---------------------------------------------------------------------------
// Counting: what the SQLite file, the development Vault and the receivers say.

export type EventType = 'approved' | 'denied' | 'timed_out' | 'revoked' | 'expired';
export const DECISION_STATUSES: readonly string[] = ['denied', 'timed_out', 'revoked', 'expired'];

export interface Delivery {
  webhookId: string;
  requestId: string;
  type: EventType;
  receiver: 'openclaw' | 'standard';
}

/** What one received webhook announces, read from its body (both formats), or undefined if it cannot be read. */
export function parseDelivery(r: ReceivedWebhook, receiver: 'openclaw' | 'standard'): Delivery | undefined {
  const webhookId = String(r.headers['webhook-id'] ?? '');
  try {
    const body = JSON.parse(r.body) as { type?: string; request_id?: string; message?: string };
    if (receiver === 'standard') {
      const type = body.type?.replace(/^jit\.request\./, '') as EventType | undefined;
      if (!type || !body.request_id) return undefined;
      return { webhookId, requestId: body.request_id, type, receiver };
    }
    const m = /Request (req_[0-9a-z]{26}) \(/.exec(body.message ?? '');
    const t = /was APPROVED/.test(body.message ?? '')
      ? 'approved'
      : /was DENIED/.test(body.message ?? '')
        ? 'denied'
        : /TIMED OUT/.test(body.message ?? '')
          ? 'timed_out'
          : /was REVOKED/.test(body.message ?? '')
            ? 'revoked'
            : /EXPIRED/.test(body.message ?? '')
              ? 'expired'
              : undefined;
    if (!m || !t) return undefined;
    return { webhookId, requestId: m[1]!, type: t, receiver };
  } catch {
    return undefined;
  }
}

export interface Census {
  requests: number;
  byStatus: Record<string, number>;
  /** Requests with more than one credential row that is not a failed attempt. */
  dbDuplicateCredentials: string[];
  /** Requests with more than one Vault token alive that still grants something (by token metadata). */
  vaultDuplicateTokens: string[];
  /** Tier-1 requests `approved` by policy with no credential at all: issue never started (known bug, crash-states.test.ts). */
  stuckTier1: string[];
  /** Credential rows still minting, abandoned or ending. */
  unsettledCredentials: number;
  /** Tokens in Vault the broker has no row for, which still hold an existing `jit-` policy. */
  orphanTokens: string[];
  /**
   * The subset of `orphanTokens` with the signature of the known shared-grant-policy bug
   * (test/fault/vault-down.test.ts): the token's request has a failed or abandoned mint row
   * naming the policy the token holds, and a live credential still holds that policy.
   */
  sharedPolicyOrphans: string[];
  /** The subset of `vaultDuplicateTokens` whose extra tokens are all `sharedPolicyOrphans`. */
  sharedPolicyDuplicates: string[];
  /** `jit-` policies in Vault that no credential row owns. */
  orphanPolicies: string[];
  /** Tokens of credentials the broker considers ended that still hold an existing `jit-` policy. */
  endedButAlive: string[];
  /** Live Vault credentials whose token or policy is missing from Vault. */
  brokenLive: string[];
  liveVaultCredentials: number;
  liveGateCredentials: number;
  jitPolicies: number;
  vaultTokens: number;
  outbox: { pending: number; delivering: number; delivered: number; dead: number };
  /** Latest lease expiry of a row still `delivering` (a dead dispatcher's), epoch ms. */
  leaseUntil: number | null;
  /** (request, type) pairs the broker decided, from requests + audit log. */
  expectedEvents: Set<string>;
  /** outbox id → `request|type`. */
  outboxIds: Map<string, string>;
}

/** Outbox rows being delivered right now (leased), read-only. */
export async function deliveringNow(db: CensusDb): Promise<number> {
  const [r] = await db.all<{ n: number | string }>(`SELECT COUNT(*) AS n FROM webhook_outbox WHERE state = 'delivering'`);
  return Number(r?.n ?? 0);
}

/** Reads the database (read-only SQL that runs on both engines) and the dev Vault's diagnostic views. */
export async function takeCensus(db: CensusDb, vault: DevVault): Promise<Census> {
  const requests = await db.all<{ id: string; status: string }>('SELECT id, status FROM requests');
  const byStatus: Record<string, number> = {};
  for (const r of requests) byStatus[r.status] = (byStatus[r.status] ?? 0) + 1;
  const creds = await db.all<{
    id: string;
    request_id: string;
    type: string;
    state: string;
    vault_policy: string | null;
    accessor: string | null;
  }>('SELECT id, request_id, type, state, vault_policy, accessor FROM credentials');
  const perRequest = new Map<string, number>();
  for (const c of creds) if (c.state !== 'abandoned' && c.state !== 'failed') perRequest.set(c.request_id, (perRequest.get(c.request_id) ?? 0) + 1);
  const dbDuplicateCredentials = [...perRequest].filter(([, n]) => n > 1).map(([id]) => id);

  const policies = new Set(vault.policyNames());
  const jit = [...policies].filter((p) => p.startsWith('jit-'));
  const tokens = vault.listTokens().filter((t) => !t.wrapping && !t.policies.includes('root'));
  const grants = (t: { policies: string[] }) => t.policies.filter((p) => p.startsWith('jit-') && policies.has(p));
  const byAccessor = new Map(creds.filter((c) => c.accessor).map((c) => [c.accessor!, c]));
  const orphans = tokens.filter((t) => !byAccessor.has(t.accessor) && grants(t).length > 0);
  const orphanTokens = orphans.map((t) => `${t.accessor}:${grants(t).join(',')}`);
  const heldByLive = new Map<string, number>();
  for (const c of creds) if (c.vault_policy && (c.state === 'live' || c.state === 'ending')) heldByLive.set(c.vault_policy, (heldByLive.get(c.vault_policy) ?? 0) + 1);
  const knownShared = orphans.filter((t) => {
    const rid = t.meta?.['jit_request_id'];
    const failedAttempt = creds.some((c) => c.request_id === rid && (c.state === 'failed' || c.state === 'abandoned') && c.vault_policy && t.policies.includes(c.vault_policy));
    return failedAttempt && grants(t).some((p) => (heldByLive.get(p) ?? 0) > 0);
  });
  const sharedPolicyOrphans = knownShared.map((t) => `${t.accessor}:${grants(t).join(',')}`);
  const endedButAlive = tokens
    .filter((t) => {
      const c = byAccessor.get(t.accessor);
      return c && (c.state === 'ended' || c.state === 'failed') && grants(t).length > 0;
    })
    .map((t) => t.accessor);
  const owned = new Set(creds.filter((c) => c.vault_policy && ['minting', 'live', 'ending', 'abandoned'].includes(c.state)).map((c) => c.vault_policy!));
  const orphanPolicies = jit.filter((p) => !owned.has(p));
  const tokenByAccessor = new Map(tokens.map((t) => [t.accessor, t]));
  const liveVault = creds.filter((c) => c.state === 'live' && c.type === 'vault_token');
  const brokenLive = liveVault
    .filter((c) => {
      const t = c.accessor ? tokenByAccessor.get(c.accessor) : undefined;
      return !t || !c.vault_policy || !policies.has(c.vault_policy) || !t.policies.includes(c.vault_policy);
    })
    .map((c) => c.request_id);
  const tokensPerRequest = new Map<string, number>();
  for (const t of tokens) {
    const rid = t.meta?.['jit_request_id'];
    if (rid && grants(t).length > 0) tokensPerRequest.set(rid, (tokensPerRequest.get(rid) ?? 0) + 1);
  }
  const vaultDuplicateTokens = [...tokensPerRequest].filter(([, n]) => n > 1).map(([id]) => id);
  const knownPerRequest = new Map<string, number>();
  for (const t of knownShared) {
    const rid = t.meta?.['jit_request_id'];
    if (rid) knownPerRequest.set(rid, (knownPerRequest.get(rid) ?? 0) + 1);
  }
  const sharedPolicyDuplicates = vaultDuplicateTokens.filter((id) => tokensPerRequest.get(id)! - (knownPerRequest.get(id) ?? 0) <= 1);

  const outbox = { pending: 0, delivering: 0, delivered: 0, dead: 0 };
  for (const r of await db.all<{ state: keyof typeof outbox; n: number | string }>('SELECT state, COUNT(*) AS n FROM webhook_outbox GROUP BY state')) outbox[r.state] = Number(r.n);
  const [lease] = await db.all<{ until: number | string | null }>(`SELECT MAX(lease_expires_at) AS until FROM webhook_outbox WHERE state = 'delivering'`);
  const leaseUntil = lease?.until == null ? null : Number(lease.until);
  const outboxIds = new Map(
    (await db.all<{ id: string; request_id: string; type: string }>('SELECT id, request_id, type FROM webhook_outbox')).map((r) => [
      r.id,
      `${r.request_id}|${r.type.replace(/^jit\.request\./, '')}`,
    ]),
  );

  const expectedEvents = new Set<string>();
  for (const r of requests) if (DECISION_STATUSES.includes(r.status)) expectedEvents.add(`${r.id}|${r.status}`);
  for (const { request_id: id } of await db.all<{ request_id: string }>(
    `SELECT DISTINCT request_id FROM audit_log WHERE event = 'request.approved' AND actor != 'policy' AND request_id IS NOT NULL`,
  )) {
    expectedEvents.add(`${id}|approved`);
  }

  const stuckTier1 = (
    await db.all<{ id: string }>(
      `SELECT r.id FROM requests r WHERE r.status = 'approved' AND r.decided_by = 'policy' AND NOT EXISTS (SELECT 1 FROM credentials c WHERE c.request_id = r.id AND c.state NOT IN ('abandoned', 'failed'))`,
    )
  ).map((r) => r.id);
  return {
    stuckTier1,
    requests: requests.length,
    byStatus,
    dbDuplicateCredentials,
    vaultDuplicateTokens,
    unsettledCredentials: creds.filter((c) => ['minting', 'abandoned', 'ending'].includes(c.state)).length,
    orphanTokens,
    sharedPolicyOrphans,
    sharedPolicyDuplicates,
    orphanPolicies,
    endedButAlive,
    brokenLive,
    liveVaultCredentials: liveVault.length,
    liveGateCredentials: creds.filter((c) => c.state === 'live' && c.type === 'gate_push').length,
    jitPolicies: jit.length,
    vaultTokens: tokens.length,
    outbox,
    leaseUntil,
    expectedEvents,
    outboxIds,
  };
}

/** What the two webhook receivers got, against what the database and the agents saw decided (both crash tests' census). */
export function tallyDeliveries(
  w: Pick<ChaosWorld, 'openclaw' | 'standard'>,
  census: Pick<Census, 'outboxIds' | 'expectedEvents'>,
  client: { observed: Map<string, Set<string>>; received: Map<string, Set<string>> },
) {
  const deliveries: Delivery[] = [];
  let badSignatures = 0;
  let unreadable = 0;
  let mismatched = 0;
  for (const [receiver, rx] of [['openclaw', w.openclaw], ['standard', w.standard]] as const) {
    for (const r of rx.requests) {
      if (!r.verification.ok) badSignatures++;
      if (typeof r.answer !== 'number' || r.answer < 200 || r.answer >= 300) continue;
      const d = parseDelivery(r, receiver);
      if (!d) {
        unreadable++;
        continue;
      }
      if (census.outboxIds.get(d.webhookId) !== `${d.requestId}|${d.type}`) mismatched++;
      deliveries.push(d);
    }
  }
  const idsPerEvent = new Map<string, Set<string>>();
  for (const d of deliveries) {
    const k = `${d.requestId}|${d.type}`;
    idsPerEvent.set(k, (idsPerEvent.get(k) ?? new Set()).add(d.webhookId));
  }
  const expected = new Set(census.expectedEvents);
  for (const [id, seen] of client.observed) for (const what of seen) expected.add(`${id}|${what}`);
  return {
    deliveries,
    badSignatures,
    unreadable,
    mismatched,
    idsPerEvent,
    expected,
    undelivered: [...expected].filter((k) => !idsPerEvent.has(k)),
    duplicateEvents: [...idsPerEvent].filter(([, ids]) => ids.size > 1).map(([k]) => k),
    redeliveries: deliveries.length - idsPerEvent.size,
    clientDuplicates: [...client.received].filter(([, s]) => s.size > 1).map(([id]) => id),
  };
}

/**
 * What a crash may never produce, asserted softly (every one is reported):
 * a second credential, token or event for one request, a token or `jit-`
 * policy the broker does not know, a credential left unsettled, a decision
 * not delivered (or delivered unsigned or under another id), a broken audit
 * chain (`jit audit verify`'s exit code), an answer the workload did not
 * expect. A token whose mint a kill interrupted is disarmed by deleting its
 * own policy (one per credential), so none may keep access the broker does
 * not know about.
 */
export function expectNothingLostOrDoubled(census: Census, tally: ReturnType<typeof tallyDeliveries>, auditCode: number | null, unexpected: string[]): void {
  expect.soft(census.dbDuplicateCredentials).toEqual([]);
  expect.soft(census.vaultDuplicateTokens).toEqual([]);
  expect.soft(tally.clientDuplicates).toEqual([]);
  expect.soft(tally.duplicateEvents).toEqual([]);
  expect.soft(census.orphanTokens).toEqual([]);
  expect.soft(census.orphanPolicies).toEqual([]);
  expect.soft(census.endedButAlive).toEqual([]);
  expect.soft(census.brokenLive).toEqual([]);
  expect.soft(census.unsettledCredentials).toBe(0);
  expect.soft(census.stuckTier1).toEqual([]);
  expect.soft(tally.undelivered).toEqual([]);
  expect.soft(census.outbox.dead).toBe(0);
  expect.soft(tally.badSignatures).toBe(0);
  expect.soft(tally.mismatched).toBe(0);
  expect.soft(auditCode).toBe(0);
  expect.soft(unexpected).toEqual([]);
}
