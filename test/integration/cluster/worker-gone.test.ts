import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { Agent, request as httpRequest } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDevVault } from '../../../src/vault/dev/index.ts';
import { startJitServe } from '../../helpers/cli.ts';

/**
 * `jit serve` with JIT_HTTP_WORKERS=2: the primary answers a worker's call
 * (here /metrics, which waits on the other worker's figures) after the
 * calling worker is gone. node:cluster reports a send on a closed IPC
 * channel as an 'error' event on the Worker; with no listener that is an
 * uncaught exception that took the whole broker down.
 */
const ROOT = 'hvs.cluster-gone-test-root-token-0123';
const POLICY = `
agents:
  moltbot:
    sessions: ["hook:jit:moltbot*"]
rules:
  - name: docker-read
    agents: [moltbot]
    resource: vault
    paths: ["homelab/data/docker/*"]
    capabilities: [read]
    tier: 1
    max_ttl: 1h
`;

let dir: string;
let vault: Awaited<ReturnType<typeof startDevVault>>;
let serve: Awaited<ReturnType<typeof startJitServe>>;
const stopped = new Set<number>();

/** A GET on a connection of its own; resolves with the status, or 0 when the connection failed. */
function get(path: string, timeoutMs = 30_000): Promise<number> {
  return new Promise((resolve) => {
    const req = httpRequest(`${serve.url}${path}`, { agent: new Agent({ keepAlive: false }), timeout: timeoutMs });
    req.on('response', (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode!));
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(0));
    req.end();
  });
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'jit-cluster-gone-'));
  vault = await startDevVault({ host: '127.0.0.1', port: 0, rootToken: ROOT });
  mkdirSync(join(dir, 'policies'));
  writeFileSync(join(dir, 'policies', 'p.yaml'), POLICY);
  serve = await startJitServe({
    JIT_DB: join(dir, 'jit.db'),
    JIT_POLICIES: join(dir, 'policies'),
    JIT_PORT: '0',
    VAULT_ADDR: vault.url,
    VAULT_TOKEN: ROOT,
    JIT_HTTP_WORKERS: '2',
    LOG_LEVEL: 'info',
  });
}, 60_000);

afterAll(async () => {
  for (const pid of stopped) {
    try {
      process.kill(pid, 'SIGCONT');
    } catch {
      /* gone */
    }
  }
  await serve?.stop();
  await vault?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('JIT_HTTP_WORKERS=2: a worker that goes away mid-call', () => {
  it('does not take the primary down when it answers a call from a worker that has exited', async () => {
    const workers = JSON.parse(/"workers":(\[[\d,]+\])/.exec(serve.output())![1]!) as number[];
    expect(workers).toHaveLength(2);
    const [caller, slow] = workers as [number, number];

    // The slow worker cannot answer the primary's "metrics-json" call (nor take connections) until SIGCONT.
    process.kill(slow, 'SIGSTOP');
    stopped.add(slow);
    // The connections go to the worker that is running; its /metrics waits on the primary, which waits on the slow one.
    const pending = [get('/metrics'), get('/metrics'), get('/metrics')];
    await new Promise((r) => setTimeout(r, 1_000));
    process.kill(caller, 'SIGKILL');
    // The primary's call to the slow worker times out after 10 s; then it answers the dead caller.
    await new Promise((r) => setTimeout(r, 11_500));
    process.kill(slow, 'SIGCONT');
    stopped.delete(slow);
    await Promise.all(pending);

    expect(serve.child.exitCode, serve.output().slice(-3000)).toBeNull();
    expect(serve.output()).not.toMatch(/ERR_IPC_CHANNEL_CLOSED/);
    // And the broker still serves (the replacement worker, the slow one resumed).
    const statuses = await Promise.all([get('/healthz', 10_000), get('/healthz', 10_000), get('/healthz', 10_000)]);
    expect(statuses).toEqual([200, 200, 200]);
  }, 60_000);
});
