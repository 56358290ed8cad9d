import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, onTestFinished } from 'vitest';

export const JIT_BIN = join(import.meta.dirname, '..', '..', 'bin', 'jit.mjs');
const REPO = join(import.meta.dirname, '..', '..');

/** Another installation's `bin/jit.mjs` and working directory (default: this checkout's). */
export interface JitLocation {
  bin?: string;
  cwd?: string;
}

/**
 * SIGKILLs `child` unless it has exited already, and resolves once it is gone.
 * With `group`, its whole process group (a `detached` child leads its own):
 * a shell and what it started.
 */
export function killNow(child: ChildProcess, group = false): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    child.once('exit', () => resolve());
    if (group && child.pid) {
      try {
        process.kill(-child.pid, 'SIGKILL');
        return;
      } catch {
        /* no such group any more: the child alone */
      }
    }
    child.kill('SIGKILL');
  });
}

/** The child processes tied to a test that have not exited yet, and whether to kill their process group. */
const live = new Map<ChildProcess, boolean>();

/**
 * Ties `child` to the test that started it: it is SIGKILLed when that test
 * ends (passed, failed or timed out), or, when a beforeAll/beforeEach started
 * it, after the file's own afterAll hooks (which stop what they started).
 * No helper races a clock against a process; vitest's test timeout is the
 * only bound, and a hang leaves nothing running. `group`: see `killNow`.
 */
export function endsWithTest(child: ChildProcess, group = false): void {
  live.set(child, group);
  child.once('exit', () => live.delete(child));
  try {
    onTestFinished(() => killNow(child, group));
  } catch {
    /* Started by a hook, not a test: the afterAll below ends it. */
  }
}

// Registered when a test file imports this module, so it belongs to that file's top-level suite; it runs after the file's own afterAll hooks.
afterAll(async () => {
  await Promise.all([...live].map(([child, group]) => killNow(child, group)));
});

function spawnJit(args: string[], env: Record<string, string>, at: JitLocation): ChildProcess {
  const child = spawn(process.execPath, [at.bin ?? JIT_BIN, ...args], { cwd: at.cwd ?? REPO, env: { PATH: process.env.PATH ?? '', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  endsWithTest(child);
  return child;
}

/**
 * Runs `jit ARGS` as a child process, as an operator would; resolves with its
 * exit code and output when it exits, however long it takes to start.
 * `_timeoutMs` is ignored (kept so existing callers compile): the test's own
 * timeout bounds the run, and the process is killed when the test ends.
 */
export function runJit(args: string[], env: Record<string, string>, _timeoutMs?: number, at: JitLocation = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawnJit(args, env, at);
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (d) => (stdout += d));
    child.stderr!.on('data', (d) => (stderr += d));
    child.once('error', (err) => reject(new Error(`jit ${args.join(' ')} could not run: ${err.message}`)));
    child.once('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/**
 * Starts `jit serve` and waits until it prints that it is listening (or
 * exits first: then it rejects with the output). No clock: a start that is
 * merely slow is waited for; the process is killed when the test (or, when a
 * hook started it, the file) ends, so a start that hangs leaves nothing running.
 */
export async function startJitServe(
  env: Record<string, string>,
  at: JitLocation = {},
): Promise<{ child: ChildProcess; url: string; output: () => string; devToken: string | undefined; stop(): Promise<number | null> }> {
  const child = spawnJit(['serve'], env, at);
  let output = '';
  child.stdout!.on('data', (d) => (output += d));
  child.stderr!.on('data', (d) => (output += d));
  const url = await new Promise<string>((resolve, reject) => {
    const check = () => {
      const m = /jit-broker listening on (http:\/\/\S+)/.exec(output);
      if (!m) return;
      child.stdout!.off('data', check);
      resolve(m[1]!);
    };
    child.stdout!.on('data', check);
    child.once('error', (err) => reject(new Error(`jit serve could not run: ${err.message}`)));
    child.once('exit', (code, signal) => reject(new Error(`jit serve exited with ${code ?? signal} before listening:\n${output}`)));
  });
  return {
    child,
    url,
    output: () => output,
    // Dev mode's first start: the token of agent "dev", printed (with its heading, in one write) before the listening line.
    devToken: /Created agent "dev"\. Its token \(shown once\):\n(\S+)\n/.exec(output)?.[1],
    stop: () =>
      new Promise((resolve) => {
        if (child.exitCode !== null || child.signalCode !== null) return resolve(child.exitCode);
        child.once('exit', (code) => resolve(code));
        child.kill('SIGTERM');
      }),
  };
}
