/**
 * Child processes of the benchmark: the development Vault, the broker
 * (`jit serve`), the `jit` CLI and the webhook receiver. Every child is
 * tracked so that the benchmark can stop all of them, and only them, when
 * it ends (normally, on an error or on Ctrl-C).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';

export const REPO = join(import.meta.dirname, '..', '..');
export const JIT_BIN = join(REPO, 'bin', 'jit.mjs');

const children = new Set<ChildProcess>();

/** A started child process and what it printed. */
export interface Child {
  child: ChildProcess;
  output(): string;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves once it exited. */
  stop(graceMs?: number): Promise<void>;
}

/** Environment for children: only PATH from ours, so a developer's VAULT_* never leaks in. */
function childEnv(env: Record<string, string>): NodeJS.ProcessEnv {
  return { PATH: process.env.PATH ?? '', ...env };
}

/**
 * Starts `node ARGS` and resolves once its output matches `ready` (with the
 * match), or rejects after `timeoutMs` or if it exits first.
 */
export async function startProcess(
  args: string[],
  env: Record<string, string>,
  ready: RegExp,
  timeoutMs = 30_000,
): Promise<Child & { match: RegExpExecArray }> {
  const child = spawn(process.execPath, args, { cwd: REPO, env: childEnv(env), stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  child.once('exit', () => children.delete(child));
  let output = '';
  child.stdout!.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (output += d.toString()));
  const stop = (graceMs = 5_000) =>
    new Promise<void>((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) return resolve();
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
      child.once('exit', () => {
        clearTimeout(timer);
        resolve();
      });
      child.kill('SIGTERM');
    });
  const match = await new Promise<RegExpExecArray>((resolve, reject) => {
    const timer = setTimeout(() => {
      cleanup();
      reject(new Error(`${args.join(' ')} did not become ready in ${timeoutMs} ms:\n${output}`));
    }, timeoutMs);
    const check = () => {
      const m = ready.exec(output);
      if (m) {
        cleanup();
        resolve(m);
      }
    };
    const exited = (code: number | null) => {
      cleanup();
      reject(new Error(`${args.join(' ')} exited with ${code}:\n${output}`));
    };
    const cleanup = () => {
      clearTimeout(timer);
      child.stdout!.off('data', check);
      child.stderr!.off('data', check);
      child.off('exit', exited);
    };
    child.stdout!.on('data', check);
    child.stderr!.on('data', check);
    child.once('exit', exited);
  }).catch(async (err: unknown) => {
    await stop(1_000);
    throw err;
  });
  return { child, match, output: () => output, stop };
}

/** Runs `jit ARGS` to completion and returns its stdout; throws on a non-zero exit. */
export function runJit(args: string[], env: Record<string, string>, timeoutMs = 60_000, jitBin = JIT_BIN): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [jitBin, ...args], { cwd: REPO, env: childEnv(env), stdio: ['ignore', 'pipe', 'pipe'] });
    children.add(child);
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('exit', (code) => {
      clearTimeout(timer);
      children.delete(child);
      if (code === 0) resolve(stdout);
      else reject(new Error(`jit ${args.join(' ')} exited with ${code}:\n${stdout}\n${stderr}`));
    });
  });
}

/** The development Vault as its own process on 127.0.0.1: `jit dev-vault --port 0`, as shipped. */
export async function startDevVaultProcess(rootToken: string): Promise<Child & { url: string; rootToken: string }> {
  const args = [JIT_BIN, 'dev-vault', '--port', '0', '--root-token', rootToken];
  const p = await startProcess(args, {}, /Address:\s+(http:\/\/127\.0\.0\.1:\d+)/);
  return { ...p, url: p.match[1]!, rootToken };
}

/** `jit serve` against `vaultUrl`, on 127.0.0.1 and a free port, with limits high enough not to throttle the load. */
export async function startBrokerProcess(o: {
  vaultUrl: string;
  rootToken: string;
  dbPath: string;
  policiesDir: string;
  env?: Record<string, string>;
  /** Another checkout's `bin/jit.mjs` (bench/compare.ts); default this one. */
  jitBin?: string;
}): Promise<Child & { url: string }> {
  // BENCH_CPU_PROF=DIR: the broker writes a V8 CPU profile (.cpuprofile) into DIR when it stops (bench/profile-summary.ts sums it).
  // BENCH_SQL_COUNT=DIR: the broker counts the SQL statements it runs (bench/lib/sql-count.mjs) and writes them per request into DIR.
  // Either goes to DIR/other for another checkout (bench/compare.ts's baseline), DIR/this for this one.
  const tree = o.jitBin && o.jitBin !== JIT_BIN ? 'other' : 'this';
  const profDir = process.env['BENCH_CPU_PROF'];
  const countDir = process.env['BENCH_SQL_COUNT'];
  if (profDir) mkdirSync(join(profDir, tree), { recursive: true });
  if (countDir) mkdirSync(join(countDir, tree), { recursive: true });
  const prof = [
    ...(profDir ? ['--cpu-prof', '--cpu-prof-dir', join(profDir, tree)] : []),
    ...(countDir ? ['--import', join(REPO, 'bench', 'lib', 'sql-count.mjs')] : []),
  ];
  const p = await startProcess(
    [...prof, o.jitBin ?? JIT_BIN, 'serve'],
    {
      JIT_HOST: '127.0.0.1',
      JIT_PORT: '0',
      JIT_DB: o.dbPath,
      JIT_POLICIES: o.policiesDir,
      VAULT_ADDR: o.vaultUrl,
      VAULT_TOKEN: o.rootToken,
      JIT_RATE_PER_MINUTE: '100000',
      JIT_MAX_PENDING: '10000',
      LOG_LEVEL: 'warn',
      ...(countDir ? { BENCH_SQL_COUNT: join(countDir, tree) } : {}),
      ...o.env,
    },
    /jit-broker listening on (http:\/\/127\.0\.0\.1:\d+)/,
  );
  return { ...p, url: p.match[1]! };
}

/** `jit agent add NAME` against `dbPath`; returns the bearer token (the last line of stdout). */
export async function addAgent(dbPath: string, policiesDir: string, name: string, jitBin = JIT_BIN, env: Record<string, string> = {}): Promise<string> {
  const out = await runJit(['agent', 'add', name], { JIT_DB: dbPath, JIT_POLICIES: policiesDir, LOG_LEVEL: 'warn', ...env }, 60_000, jitBin);
  const token = out.trim().split('\n').at(-1)!.trim();
  if (!token.startsWith('jit_')) throw new Error(`jit agent add printed no token:\n${out}`);
  return token;
}

/**
 * Registers agents `bench-2` … `bench-N` straight in the database (the first,
 * `bench`, comes from `jit agent add`); returns all N tokens, `bench` first.
 * Each load connection then acts as its own agent, as real agents do.
 * With `databaseUrl`, in that PostgreSQL database (a checkout with the PostgreSQL engine).
 */
export async function addMoreAgents(dbPath: string, first: string, count: number, repo = REPO, databaseUrl?: string): Promise<string[]> {
  // The checkout whose broker will use the database creates them (its own migrations).
  const { createStorageDeps } = (await import(join(repo, 'src/create-deps.ts'))) as typeof import('../../src/create-deps.ts');
  const { loadConfig } = (await import(join(repo, 'src/config/config.ts'))) as typeof import('../../src/config/config.ts');
  const config = loadConfig({ JIT_DB: dbPath, ...(databaseUrl ? { JIT_DATABASE_URL: databaseUrl } : {}) });
  const tokens = [first];
  /** Adds the agents through the storage interface, then closes it. */
  const addThrough = async (storage: Parameters<typeof createStorageDeps>[0]['storage']): Promise<string[]> => {
    try {
      const deps = createStorageDeps({ config, storage });
      for (let i = 2; i <= count; i++) tokens.push((await deps.agents.add(`bench-${i}`)).token);
    } finally {
      await storage.close();
    }
    return tokens;
  };
  if (databaseUrl) {
    const { openStorage } = (await import(join(repo, 'src/storage/index.ts'))) as typeof import('../../src/storage/index.ts');
    return addThrough(await openStorage(config));
  }
  if (existsSync(join(repo, 'src/storage/sqlite/index.ts'))) {
    const { openSqliteStorage } = (await import(join(repo, 'src/storage/sqlite/index.ts'))) as typeof import('../../src/storage/sqlite/index.ts');
    return addThrough(openSqliteStorage(dbPath));
  }
  // A checkout from before the storage interface (issue 18, for `bench compare`): src/db/ and a synchronous agent store.
  const { openDatabase } = (await import(join(repo, 'src/db/open.ts'))) as { openDatabase(path: string): { close(): void } };
  const db = openDatabase(dbPath);
  try {
    const legacy = createStorageDeps as unknown as (p: { config: typeof config; db: unknown }) => { agents: { add(name: string): { token: string } } };
    const deps = legacy({ config, db });
    for (let i = 2; i <= count; i++) tokens.push(deps.agents.add(`bench-${i}`).token);
    return tokens;
  } finally {
    db.close();
  }
}

/** Kills every child still running (used on errors and signals). */
export function killAll(): void {
  for (const c of children) {
    if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  }
  children.clear();
}
