import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { runJit, startJitServe } from '../../helpers/cli.ts';

/**
 * The CLI helpers wait on events (the exit, the "listening on" line), never
 * on a clock, so a start that is merely slow (another process holding the
 * other core) does not fail a test; and a process a test started is gone
 * when that test ends, whether it passed or not.
 *
 * A start is made slow without using CPU: NODE_OPTIONS preloads a file that
 * blocks the child's main thread for JIT_TEST_START_DELAY_MS before anything
 * else runs (and first writes its pid where the test can find it).
 */
const dir = mkdtempSync(join(tmpdir(), 'jit-slow-start-'));
const preload = join(dir, 'slow-start.cjs');
writeFileSync(
  preload,
  `require('node:fs').writeFileSync(process.env.JIT_TEST_PID_FILE, String(process.pid));
Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, Number(process.env.JIT_TEST_START_DELAY_MS));
`,
);
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const slow = (name: string, delayMs: number) => ({
  NODE_OPTIONS: `--require ${preload}`,
  JIT_TEST_PID_FILE: join(dir, `${name}.pid`),
  JIT_TEST_START_DELAY_MS: String(delayMs),
  JIT_DB: join(dir, name, 'jit.db'),
  JIT_PORT: '0',
  JIT_DEV_VAULT_PORT: '0',
});

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

let hung = 0;

describe('a slow start', () => {
  it('jit serve that takes longer than 20 s to start is waited for', { timeout: 90_000 }, async () => {
    const serve = await startJitServe(slow('serve', 21_000));
    expect((await fetch(`${serve.url}/healthz`)).status).toBe(200);
    expect(await serve.stop()).toBe(0);
  });

  it('a jit command slower than the timeout its caller passed still gives its result', { timeout: 60_000 }, async () => {
    const res = await runJit(['--version'], slow('version', 2_000), 500);
    expect(res.code, res.stderr).toBe(0);
    expect(res.stdout).toMatch(/^\d+\.\d+\.\d+/);
  });

  it('a process that never starts is still running while its test waits', async () => {
    const env = slow('hung', 10 * 60_000);
    void runJit(['--version'], env);
    while (!existsSync(env.JIT_TEST_PID_FILE) || !readFileSync(env.JIT_TEST_PID_FILE, 'utf8')) await new Promise((r) => setTimeout(r, 50));
    hung = Number(readFileSync(env.JIT_TEST_PID_FILE, 'utf8'));
    expect(alive(hung)).toBe(true);
  });

  it('is killed when the test that started it ends', () => {
    expect(hung).toBeGreaterThan(0);
    expect(alive(hung)).toBe(false);
  });
});
