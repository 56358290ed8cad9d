import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDevVault } from '../../../src/vault/dev/index.ts';
import { runJit, startJitServe } from '../../helpers/cli.ts';
import { openSse } from '../../helpers/sse.ts';

/**
 * The built broker (`jit serve`, its own process) and `jit approve` in
 * another process on the same database: a decision made outside the
 * serving process reaches the decision stream open on it, and SIGTERM ends
 * the open streams while the broker still exits 0. (Kept from the HTTP
 * worker tests when JIT_HTTP_WORKERS was removed: this part was never about
 * workers.) Needs `npm run build`.
 */
const ROOT_TOKEN = 'hvs.serve-stream-test-root-token-0123456789';
const POLICY = `
agents:
  moltbot:
    sessions: ["hook:jit:moltbot*"]
    default_session: "hook:jit:moltbot"
rules:
  - name: homelab-write
    agents: [moltbot]
    resource: vault
    paths: ["homelab/data/*"]
    capabilities: [read, update]
    tier: 2
    max_ttl: 30m
`;
const write = { resource: 'vault', tier: 2, reason: 'rotate the web key', vault_paths: [{ path: 'homelab/data/apps/web', capabilities: ['read', 'update'] }] };

let dir: string;
let vault: Awaited<ReturnType<typeof startDevVault>>;
let env: Record<string, string>;
let serve: Awaited<ReturnType<typeof startJitServe>>;
let token: string;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'jit-serve-stream-'));
  vault = await startDevVault({ host: '127.0.0.1', port: 0, rootToken: ROOT_TOKEN });
  mkdirSync(join(dir, 'policies'));
  writeFileSync(join(dir, 'policies', 'p.yaml'), POLICY);
  env = { JIT_DB: join(dir, 'jit.db'), JIT_POLICIES: join(dir, 'policies'), JIT_PORT: '0', VAULT_ADDR: vault.url, VAULT_TOKEN: ROOT_TOKEN, LOG_LEVEL: 'info' };
  token = (await runJit(['agent', 'add', 'moltbot'], env)).stdout.trim().split('\n').at(-1)!;
  serve = await startJitServe(env);
}, 60_000);

afterAll(async () => {
  await serve?.stop();
  await vault?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const request = async (): Promise<string> => {
  const res = await fetch(`${serve.url}/jit/request`, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: JSON.stringify(write) });
  expect(res.status).toBe(202);
  return ((await res.json()) as { id: string }).id;
};

describe('jit serve: decision streams and another process', () => {
  it('a decision made by `jit approve` in another process reaches the stream open on the broker', async () => {
    const id = await request();
    const s = await openSse(`${serve.url}/jit/requests/${id}/events`, { authorization: `Bearer ${token}` });
    expect(s.status).toBe(200);
    expect((await s.next()).json.status).toBe('pending');
    expect((await runJit(['approve', id], env)).code).toBe(0);
    expect((await s.next()).json).toMatchObject({ id, status: 'approved', decision: { approver: 'local-cli', narrowed: false } });
    s.close();
  });

  it('SIGTERM ends the open decision streams and the broker exits 0', async () => {
    const id = await request();
    const s = await openSse(`${serve.url}/jit/requests/${id}/events`, { authorization: `Bearer ${token}` });
    expect((await s.next()).json.status).toBe('pending');
    expect(await serve.stop()).toBe(0);
    await s.ended;
    expect(serve.child.exitCode).toBe(0);
  });
});
