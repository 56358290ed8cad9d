import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync, spawn } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { JIT_BIN } from '../../helpers/cli.ts';
import { closedPortUrl } from './closed-port.ts';
import { startHarness, type Harness } from '../../helpers/broker-harness.ts';

/**
 * Real git: a bare repository with the shipped pre-receive hook, pushed to
 * over the file protocol with `-o jit=<credential>`; the hook runs
 * `jit gate verify` (by the absolute path in `git config jit.bin`) against
 * the broker.
 */
let h: Harness;
let token: string;
let dir: string;
let work: string;
let env: Record<string, string>;
let bare: string;
const HOOK = join(import.meta.dirname, '..', '..', '..', 'deploy', 'git-gate', 'pre-receive');

beforeAll(async () => {
  h = await startHarness();
  token = await h.addAgent('moltbot');
  dir = mkdtempSync(join(tmpdir(), 'jit-git-'));
  bare = join(dir, 'app.git');
  work = join(dir, 'work');
  // How an installation provides jit at a fixed path: a wrapper naming node and the CLI absolutely.
  const jitBin = join(dir, 'bin', 'jit');
  mkdirSync(join(dir, 'bin'));
  writeFileSync(jitBin, `#!/bin/sh\nexec '${process.execPath}' '${JIT_BIN}' "$@"\n`, { mode: 0o755 });
  // A decoy `jit` first on PATH that accepts everything: the hook must never run it.
  mkdirSync(join(dir, 'decoy'));
  writeFileSync(join(dir, 'decoy', 'jit'), '#!/bin/sh\necho "valid: decoy"\nexit 0\n', { mode: 0o755 });
  env = {
    PATH: `${join(dir, 'decoy')}:${process.env.PATH ?? ''}`,
    HOME: dir,
    GIT_AUTHOR_NAME: 'agent',
    GIT_AUTHOR_EMAIL: 'agent@example.invalid',
    GIT_COMMITTER_NAME: 'agent',
    GIT_COMMITTER_EMAIL: 'agent@example.invalid',
    GIT_CONFIG_NOSYSTEM: '1',
  };
  const git = (cwd: string, ...args: string[]) => execFileSync('git', args, { cwd, env, stdio: 'pipe' });
  git(dir, 'init', '-q', '--bare', '-b', 'main', bare);
  git(bare, 'config', 'receive.advertisePushOptions', 'true');
  git(bare, 'config', 'jit.repo', 'homelab/app');
  git(bare, 'config', 'jit.bin', jitBin);
  git(bare, 'config', 'jit.url', h.broker.url);
  git(bare, 'config', 'jit.jwksCache', join(dir, 'jwks.json'));
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

  it('never runs a jit found on PATH: without jit.bin it uses only the absolute default, and refuses when that is missing', async () => {
    const { jwt } = await credentialFor('refs/heads/agent/fix-5');
    setConfig('jit.bin', null);
    try {
      const res = await push('refs/heads/agent/fix-5', `${jwt}x`);
      expect(res.stderr).not.toContain('decoy');
      expect(res.ok).toBe(false);
    } finally {
      setConfig('jit.bin', join(dir, 'bin', 'jit'));
    }
    setConfig('jit.bin', 'jit');
    try {
      const relative = await push('refs/heads/agent/fix-5', jwt);
      expect(relative.ok).toBe(false);
      expect(relative.stderr).toContain('must be an absolute path');
    } finally {
      setConfig('jit.bin', join(dir, 'bin', 'jit'));
    }
  });

  it('refuses every push while the broker is unreachable (fail closed), and accepts inside an explicit offline window', async () => {
    // Offline, the hook's jit checks expiry by the real clock: bring the broker's test clock back to it
    // (the expiry test above moved it two hours on).
    h.clock.set(Date.now());
    const { jwt } = await credentialFor('refs/heads/agent/fix-6');
    setConfig('jit.url', await closedPortUrl());
    try {
      const down = await push('refs/heads/agent/fix-6', jwt);
      expect(down.ok).toBe(false);
      expect(down.stderr).toMatch(/push to refs\/heads\/agent\/fix-6 refused: invalid: broker unreachable/);

      // With a window the JWKS is cached while the broker answers, and used when it does not.
      setConfig('jit.offlineWindow', '15m');
      setConfig('jit.url', h.broker.url);
      const { jwt: other } = await credentialFor('refs/heads/agent/fix-7');
      expect((await push('refs/heads/agent/fix-7', other)).ok).toBe(true);
      setConfig('jit.url', await closedPortUrl());
      const offline = await push('refs/heads/agent/fix-6', jwt);
      expect(offline.stderr).toMatch(/verified offline .*revocation and the stored grant could not be checked/);
      expect(offline.ok).toBe(true);
      const outside = await push('refs/heads/main', jwt);
      expect(outside.ok).toBe(false);
    } finally {
      setConfig('jit.offlineWindow', null);
      setConfig('jit.url', h.broker.url);
    }
  });
});

function setConfig(key: string, value: string | null): void {
  const args = value === null ? ['config', '--unset', key] : ['config', key, value];
  try {
    execFileSync('git', args, { cwd: bare, env, stdio: 'pipe' });
  } catch (err) {
    if (value !== null) throw err; // --unset of a key that is not set exits 5
  }
}
