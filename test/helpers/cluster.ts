import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startDevVault } from '../../src/vault/dev/index.ts';
import { runJit, startJitServe } from './cli.ts';

export const CLUSTER_ROOT_TOKEN = 'hvs.cluster-test-root-token-0123456789';

export interface ClusterBroker {
  dir: string;
  /** The environment `jit serve` runs with (JIT_POLICIES names the policy directory). */
  env: Record<string, string>;
  vault: Awaited<ReturnType<typeof startDevVault>>;
  serve: Awaited<ReturnType<typeof startJitServe>>;
  /** Bearer token of `agent`, registered with `jit agent add` before the start. */
  token: string;
  close(): Promise<void>;
}

/**
 * `jit serve` with JIT_HTTP_WORKERS=2 as its own process, on a fresh
 * database and `policy`, against a development Vault in this process.
 * `env` adds to or overrides the defaults (a fixed port, Telegram, …).
 */
export async function startClusterBroker(o: { policy: string; env?: Record<string, string>; agent?: string }): Promise<ClusterBroker> {
  const dir = mkdtempSync(join(tmpdir(), 'jit-cluster-'));
  const vault = await startDevVault({ host: '127.0.0.1', port: 0, rootToken: CLUSTER_ROOT_TOKEN });
  mkdirSync(join(dir, 'policies'));
  writeFileSync(join(dir, 'policies', 'p.yaml'), o.policy);
  const env = {
    JIT_DB: join(dir, 'jit.db'),
    JIT_POLICIES: join(dir, 'policies'),
    JIT_PORT: '0',
    VAULT_ADDR: vault.url,
    VAULT_TOKEN: CLUSTER_ROOT_TOKEN,
    JIT_HTTP_WORKERS: '2',
    LOG_LEVEL: 'info',
    ...o.env,
  };
  const token = (await runJit(['agent', 'add', o.agent ?? 'moltbot'], env)).stdout.trim().split('\n').at(-1)!;
  const serve = await startJitServe(env);
  return {
    dir,
    env,
    vault,
    serve,
    token,
    async close() {
      await serve.stop();
      await vault.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
