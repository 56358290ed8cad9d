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
 * connections one agent. Each run gets fresh processes and a fresh
 * database; everything listens on 127.0.0.1 and is stopped at the end.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { runLoad, type LoadResult } from './lib/load.ts';
import { addAgent, addMoreAgents, killAll, REPO, startBrokerProcess, startDevVaultProcess } from './lib/processes.ts';
import { fmt } from './lib/stats.ts';

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
for (const c of CONFIGS) if (!/^(same|distinct|oneagent)\d{1,2}$/.test(c)) throw new Error(`bad config "${c}"`);
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
const cleanup = () => {
  killAll();
  rmSync(tmp, { recursive: true, force: true });
};
process.once('SIGINT', () => (cleanup(), process.exit(130)));
process.once('exit', cleanup);

const body = (path: string) => JSON.stringify({ resource: 'vault', tier: 1, reason: 'benchmark', vault_paths: [{ path, capabilities: ['read'] }], ttl: '10m' });

async function run(which: Which, config: string): Promise<LoadResult> {
  const repo = trees[which];
  const jitBin = join(repo, 'bin', 'jit.mjs');
  const dir = mkdtempSync(join(tmp, `${which}-`));
  const dbPath = join(dir, 'jit.db');
  const policiesDir = join(REPO, 'bench', 'policies');
  const vault = await startDevVaultProcess(`hvs.compare-${randomBytes(8).toString('hex')}`);
  try {
    const first = await addAgent(dbPath, policiesDir, 'bench', jitBin);
    const tokens = await addMoreAgents(dbPath, first, 64, repo);
    const broker = await startBrokerProcess({ vaultUrl: vault.url, rootToken: vault.rootToken, dbPath, policiesDir, jitBin, ...(which === 'after' ? { env: AFTER_ENV } : {}) });
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
        cpuOf: { broker: broker.child.pid!, vault: vault.child.pid! },
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
for (let rep = 0; rep < REPS; rep++) {
  for (const config of CONFIGS) {
    for (const which of (rep % 2 === 0 ? ['before', 'after'] : ['after', 'before']) as Which[]) {
      const r = await run(which, config);
      const key = `${config}|${which}`;
      results.set(key, [...(results.get(key) ?? []), r]);
      process.stderr.write(`${config} ${which}: ${fmt(r.opsPerSecond)} req/s, p50 ${fmt(r.p50)} ms, p99 ${fmt(r.p99)} ms, broker CPU ${fmt(r.cpuMsPerOp.broker ?? NaN, 2)} ms/req\n`);
    }
  }
}

const out = [
  `Medians of ${REPS} interleaved runs, ${SECONDS} s each after a 2 s warm-up. before = ${trees.before}, after = ${trees.after}${args['after-env'] ? ` with ${args['after-env']}` : ''}.`,
  '',
  '| load | req/s before → after | p50 ms before → after | p99 ms before → after | broker CPU ms/req before → after | Vault CPU ms/req before → after |',
  '|---|---:|---:|---:|---:|---:|',
];
for (const config of CONFIGS) {
  const b = results.get(`${config}|before`)!;
  const a = results.get(`${config}|after`)!;
  const cell = (f: (r: LoadResult) => number, digits?: number) => `${fmt(median(b.map(f)), digits)} → ${fmt(median(a.map(f)), digits)}`;
  const gain = median(a.map((r) => r.opsPerSecond)) / median(b.map((r) => r.opsPerSecond)) - 1;
  out.push(
    `| ${config} | ${cell((r) => r.opsPerSecond)} (${gain >= 0 ? '+' : ''}${fmt(gain * 100, 0)} %) | ${cell((r) => r.p50)} | ${cell((r) => r.p99)} | ${cell((r) => r.cpuMsPerOp.broker ?? NaN, 2)} | ${cell((r) => r.cpuMsPerOp.vault ?? NaN, 2)} |`,
  );
}
process.stdout.write(`${out.join('\n')}\n`);
cleanup();
process.exit(0);
