import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync, spawn } from 'node:child_process';
import { copyFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { JIT_BIN } from '../../helpers/cli.ts';
import { startHarness, type Harness } from '../../helpers/broker-harness.ts';

/**
 * Real git: a bare repository with the shipped pre-receive hook, pushed to
 * over the file protocol with `-o jit=<credential>`; the hook runs
 * `jit gate verify` against the broker.
 */
let h: Harness;
let token: string;
let dir: string;
let work: string;
let env: Record<string, string>;
const HOOK = join(import.meta.dirname, '..', '..', '..', 'deploy', 'git-gate', 'pre-receive');

beforeAll(async () => {
  h = await startHarness();
  token = h.addAgent('moltbot');
  dir = mkdtempSync(join(tmpdir(), 'jit-git-'));
  const bare = join(dir, 'app.git');
  work = join(dir, 'work');
  env = {
    PATH: process.env.PATH ?? '',
    HOME: dir,
    GIT_AUTHOR_NAME: 'agent',
    GIT_AUTHOR_EMAIL: 'agent@example.invalid',
    GIT_COMMITTER_NAME: 'agent',
    GIT_COMMITTER_EMAIL: 'agent@example.invalid',
    GIT_CONFIG_NOSYSTEM: '1',
    JIT_URL: h.broker.url,
    JIT_BIN: `${process.execPath} ${JIT_BIN}`,
    JIT_JWKS_CACHE: join(dir, 'jwks.json'),
  };
  const git = (cwd: string, ...args: string[]) => execFileSync('git', args, { cwd, env, stdio: 'pipe' });
  git(dir, 'init', '-q', '--bare', '-b', 'main', bare);
  git(bare, 'config', 'receive.advertisePushOptions', 'true');
  git(bare, 'config', 'jit.repo', 'homelab/app');
  copyFileSync(HOOK, join(bare, 'hooks', 'pre-receive'));
  git(dir, 'init', '-q', '-b', 'main', work);
  writeFileSync(join(work, 'README'), 'hello\n');
  git(work, 'add', 'README');
  git(work, 'commit', '-q', '-m', 'first');
  git(work, 'remote', 'add', 'origin', bare);
});

afterAll(async () => {
  await h.close();
  rmSync(dir, { recursive: true, force: true });
});

/** Async on purpose: the broker runs in this process, and the hook calls it. */
function push(ref: string, credential?: string): Promise<{ ok: boolean; stderr: string }> {
  const args = ['push', ...(credential ? ['-o', `jit=${credential}`] : []), 'origin', `HEAD:${ref}`];
  return new Promise((resolve) => {
    const child = spawn('git', args, { cwd: work, env, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ ok: code === 0, stderr });
    });
  });
}

async function credentialFor(ref: string) {
  const res = await h.call('POST', '/jit/request', { token, body: { resource: 'gate', tier: 1, reason: 'push', repo: 'homelab/app', refs: [ref] } });
  expect(res.status).toBe(201);
  return { id: res.body.id as string, jwt: res.body.credential.credential as string };
}

describe('git push through the pre-receive hook', () => {
  it('allows the approved ref', async () => {
    const { jwt } = await credentialFor('refs/heads/agent/fix-1');
    const res = await push('refs/heads/agent/fix-1', jwt);
    expect(res.stderr).not.toContain('refused');
    expect(res.ok).toBe(true);
  });

  it('refuses a push without a credential, and to another ref', async () => {
    const none = await push('refs/heads/agent/no-credential');
    expect(none.ok).toBe(false);
    expect(none.stderr).toContain('no credential');
    const { jwt } = await credentialFor('refs/heads/agent/fix-2');
    const other = await push('refs/heads/main', jwt);
    expect(other.ok).toBe(false);
    expect(other.stderr).toMatch(/push to refs\/heads\/main refused: invalid: ref refs\/heads\/main is not among the granted refs/);
  });

  it('refuses a revoked credential', async () => {
    const { id, jwt } = await credentialFor('refs/heads/agent/fix-3');
    await h.call('POST', `/jit/requests/${id}/revoke`, { token });
    const res = await push('refs/heads/agent/fix-3', jwt);
    expect(res.ok).toBe(false);
    expect(res.stderr).toContain('revoked');
  });

  it('refuses an expired credential', async () => {
    const { jwt } = await credentialFor('refs/heads/agent/fix-4');
    h.clock.advance(2 * 3600_000);
    const res = await push('refs/heads/agent/fix-4', jwt);
    expect(res.ok).toBe(false);
    expect(res.stderr).toContain('expired');
  });
});
