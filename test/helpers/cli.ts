import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';

export const JIT_BIN = join(import.meta.dirname, '..', '..', 'bin', 'jit.mjs');
const REPO = join(import.meta.dirname, '..', '..');

/** Another installation's `bin/jit.mjs` and working directory (default: this checkout's). */
export interface JitLocation {
  bin?: string;
  cwd?: string;
}

/** Runs `jit ARGS` as a child process, as an operator would; resolves with its exit code and output. */
export function runJit(args: string[], env: Record<string, string>, timeoutMs = 20_000, at: JitLocation = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [at.bin ?? JIT_BIN, ...args], { cwd: at.cwd ?? REPO, env: { PATH: process.env.PATH ?? '', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`jit ${args.join(' ')} timed out\n${stdout}\n${stderr}`));
    }, timeoutMs);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** Starts `jit serve` and waits until it prints that it is listening. */
export async function startJitServe(env: Record<string, string>, at: JitLocation = {}): Promise<{ child: ChildProcess; url: string; output: () => string; stop(): Promise<number | null> }> {
  const child = spawn(process.execPath, [at.bin ?? JIT_BIN, 'serve'], { cwd: at.cwd ?? REPO, env: { PATH: process.env.PATH ?? '', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout!.on('data', (d) => (output += d));
  child.stderr!.on('data', (d) => (output += d));
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`jit serve did not start:\n${output}`)), 20_000);
    const check = () => {
      const m = /jit-broker listening on (http:\/\/\S+)/.exec(output);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]!);
      }
    };
    child.stdout!.on('data', check);
    child.on('exit', (code) => reject(new Error(`jit serve exited with ${code}:\n${output}`)));
  });
  return {
    child,
    url,
    output: () => output,
    stop: () =>
      new Promise((resolve) => {
        if (child.exitCode !== null) return resolve(child.exitCode);
        child.once('exit', (code) => resolve(code));
        child.kill('SIGTERM');
      }),
  };
}
