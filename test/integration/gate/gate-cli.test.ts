import { afterAll, beforeAll, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runJit } from '../../helpers/cli.ts';
import { startHarness, type Harness } from '../../helpers/broker-harness.ts';

let h: Harness;
let dir: string;
beforeAll(async () => {
  h = await startHarness();
  dir = mkdtempSync(join(tmpdir(), 'jit-gate-cli-'));
});
afterAll(async () => {
  await h.close();
  rmSync(dir, { recursive: true, force: true });
});

it('verifies online, then offline from the cached JWKS when the broker is down', async () => {
  const token = h.addAgent('moltbot');
  const res = await h.call('POST', '/jit/request', { token, body: { resource: 'gate', tier: 1, reason: 'push', repo: 'homelab/app', refs: ['refs/heads/agent/a'] } });
  const jwt = res.body.credential.credential;
  const env = { JIT_URL: h.broker.url, JIT_JWKS_CACHE: join(dir, 'jwks.json') };
  const args = ['gate', 'verify', '--credential', jwt, '--repo', 'homelab/app', '--ref'];

  const online = await runJit([...args, 'refs/heads/agent/a'], env);
  expect(online.code).toBe(0);
  expect(online.stdout).toContain(`request ${res.body.id}`);
  const wrongRef = await runJit([...args, 'refs/heads/main'], env);
  expect(wrongRef.code).toBe(1);
  expect(wrongRef.stderr).toContain('not among the granted refs');

  const down = { ...env, JIT_URL: 'http://127.0.0.1:9' };
  const offline = await runJit([...args, 'refs/heads/agent/a'], down);
  expect(offline.code).toBe(0);
  expect(offline.stderr).toContain('revocation could not be checked');
  const offlineBad = await runJit([...args, 'refs/heads/main'], down);
  expect(offlineBad.code).toBe(1);

  const noCache = await runJit([...args, 'refs/heads/agent/a'], { JIT_URL: 'http://127.0.0.1:9', JIT_JWKS_CACHE: join(dir, 'none.json') });
  expect(noCache.code).toBe(1);
  expect(noCache.stderr).toContain('no cached JWKS');
});
