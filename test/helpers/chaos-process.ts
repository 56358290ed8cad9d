import { spawn, type ChildProcess } from 'node:child_process';
import { onTestFinished } from 'vitest';
import { JIT_BIN, killNow } from './cli.ts';

const REPO = new URL('../..', import.meta.url).pathname;

/** Every broker process these helpers started and that has not exited yet. */
const running = new Set<ChildProcess>();

export { freePort } from './net.ts';

/** A small seeded PRNG (mulberry32): the same seed gives the same plan, so a failing run can be replayed. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export interface ServeProcess {
  child: ChildProcess;
  pid: number;
  url: string;
  /** Everything the process wrote to stdout and stderr so far. */
  output(): string;
  /** Resolves with the exit code (null after a signal) once the process is gone. */
  exited: Promise<number | null>;
  /** Sends `signal` and waits until the process is gone. */
  kill(signal: NodeJS.Signals): Promise<number | null>;
}

/**
 * Starts `node bin/jit.mjs serve` with exactly `env` (plus PATH) and waits
 * until it prints that it is listening, or rejects if it exits first. No
 * clock: a start that is merely slow is waited for (`_timeoutMs` is ignored,
 * kept so existing callers compile), and the test's own timeout bounds it.
 * The process is remembered until it exits, so `killAllServe()` (afterAll)
 * ends whatever a failing or hanging test left running; a broker may outlive
 * the test that started it (a restart serves the tests after it).
 */
export function spawnServe(env: Record<string, string>, _timeoutMs?: number): Promise<ServeProcess> {
  const child = spawn(process.execPath, [JIT_BIN, 'serve'], { cwd: REPO, env: { PATH: process.env.PATH ?? '', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  running.add(child);
  let out = '';
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (out += d));
  const exited = new Promise<number | null>((resolve) => {
    child.once('exit', (code) => {
      running.delete(child);
      resolve(code);
    });
  });
  return new Promise<ServeProcess>((resolve, reject) => {
    const check = () => {
      const m = /jit-broker listening on (http:\/\/\S+)/.exec(out);
      if (!m) return;
      child.stdout!.off('data', check);
      resolve({
        child,
        pid: child.pid!,
        url: m[1]!,
        output: () => out,
        exited,
        kill(signal) {
          if (child.exitCode === null && child.signalCode === null) child.kill(signal);
          return exited;
        },
      });
    };
    child.stdout!.on('data', check);
    child.once('error', (err) => reject(new Error(`jit serve could not run: ${err.message}`)));
    void exited.then((code) => reject(new Error(`jit serve exited with ${code} before listening:\n${out}`)));
  });
}

/** SIGKILLs every broker process still running (afterAll, even after a failure) and waits for them. */
export async function killAllServe(): Promise<number> {
  const left = [...running];
  await Promise.all(left.map((c) => killNow(c)));
  return left.length;
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/**
 * Polls `check` every `everyMs` until it returns something truthy. No clock
 * (`_timeoutMs` is ignored, kept so existing callers compile): what it waits
 * for may follow a process start that is slow on a busy machine, so the
 * test's own timeout is the only bound. When the test ends first (it timed
 * out), the polling stops and the error names what it was waiting for.
 */
export async function until<T>(check: () => T | undefined | false | Promise<T | undefined | false>, _timeoutMs: number | undefined, what: string, everyMs = 200): Promise<T> {
  let ended = false;
  try {
    onTestFinished(() => {
      ended = true;
    });
  } catch {
    /* In a hook, not a test: the hook's timeout bounds it. */
  }
  for (;;) {
    const v = await check();
    if (v) return v;
    if (ended) throw new Error(`the test ended while waiting for ${what}`);
    await sleep(everyMs);
  }
}

/**
 * Another process writing to the broker's SQLite file in a tight loop of
 * short transactions (what `jit approve`, `jit agent add` or a second broker
 * do, only relentlessly) for `durationMs`. Resolves with the number of
 * commits it made. Ended by `killAllServe()` too if the test fails.
 */
export function externalWriter(dbPath: string, durationMs: number): { done: Promise<number>; child: ChildProcess } {
  const script = `
    const Database = require('better-sqlite3');
    const db = new Database(process.argv[1]);
    db.pragma('busy_timeout = 5000');
    const put = db.prepare("INSERT INTO settings (key, value) VALUES ('chaos-external-writer', ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value");
    const until = Date.now() + Number(process.argv[2]);
    let n = 0;
    while (Date.now() < until) put.run(String(n++));
    db.close();
    process.stdout.write(String(n));`;
  const child = spawn(process.execPath, ['-e', script, dbPath, String(durationMs)], { cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'] });
  running.add(child);
  let out = '';
  let err = '';
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (err += d));
  const done = new Promise<number>((resolve, reject) =>
    child.once('exit', (code) => {
      running.delete(child);
      if (code === 0) resolve(Number(out));
      else reject(new Error(`external writer exited ${code}: ${err}`));
    }),
  );
  return { done, child };
}
