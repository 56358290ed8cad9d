import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { until } from '../../helpers/chaos-process.ts';
import { endsWithTest, startJitServe } from '../../helpers/cli.ts';
import { codeBlocks, markdownSection, missingFragment, shellSnippets } from './doc-snippets.ts';
import { freePort } from '../../helpers/net.ts';

/**
 * The README's dev-mode walkthrough, run as written: its shell commands
 * (curl and `npx jit`) are read out of README.md and run with /bin/sh, in
 * order, against `jit serve` in dev mode, and each command's output is
 * checked against the `# →` line under it. The only substitutions are
 * what the README asks the reader to paste (the agent token, the Vault
 * token, the request id) and the ports (0 here, so tests can run side by
 * side). Editing the README therefore edits this test.
 */
const REPO = join(import.meta.dirname, '..', '..', '..');
const README = readFileSync(join(REPO, 'README.md'), 'utf8');
const BROKER_URL = 'http://127.0.0.1:8787';
const DEV_VAULT_URL = 'http://127.0.0.1:8200';

let dir: string;
let env: Record<string, string>;
let server: Awaited<ReturnType<typeof startJitServe>>;
let agentToken: string;
let devVaultUrl: string;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'jit-walkthrough-'));
  cpSync(join(REPO, 'policies'), join(dir, 'policies'), { recursive: true });
  // A real port rather than 0: dev mode's public URL (the console's, in the banner) is http://localhost:JIT_PORT.
  env = { JIT_DB: join(dir, 'data', 'jit.db'), JIT_POLICIES: join(dir, 'policies'), JIT_PORT: String(await freePort()), JIT_DEV_VAULT_PORT: '0' };
  server = await startJitServe(env);
  const out = server.output();
  expect(server.devToken).toMatch(/^jit_/);
  agentToken = server.devToken!;
  devVaultUrl = /development Vault at (http:\/\/\S+)/.exec(out)![1]!;
});

afterAll(async () => {
  const code = await server?.stop();
  expect(code).toBe(0);
  rmSync(dir, { recursive: true, force: true });
});

/** Runs `command` with /bin/sh until it exits (however slow `npx` is to start); the shell and what it started are killed when the test ends. */
function sh(command: string, vars: Record<string, string>): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn('/bin/sh', ['-c', command], { cwd: REPO, env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? dir, ...vars }, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    endsWithTest(child, true);
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.once('close', (code) => resolve({ code: code ?? 1, stdout, stderr }));
  });
}

async function api(method: string, path: string, body?: unknown) {
  const res = await fetch(`${server.url}${path}`, {
    method,
    headers: { authorization: `Bearer ${agentToken}`, ...(body ? { 'content-type': 'application/json' } : {}) },
    ...(body ? { body: JSON.stringify(body) } : {}),
  });
  return { status: res.status, body: (await res.json()) as any };
}

describe('README quick start', () => {
  it('npm start runs jit serve, which the walkthrough starts', () => {
    const pkg = JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')) as { scripts: Record<string, string> };
    expect(pkg.scripts.start).toBe('node bin/jit.mjs serve');
  });

  it('prints the banner the README shows', () => {
    const quickStart = markdownSection(README, 'Quick start');
    const [banner] = codeBlocks(quickStart, 'text');
    expect(banner, 'the Quick start shows the dev-mode banner in a ```text block').toBeDefined();
    // Dev mode's public URL (the console's) is the broker's address by host name: http://localhost:PORT.
    const consoleUrl = server.url.replace('http://127.0.0.1:', 'http://localhost:');
    const expected = banner!.code.replaceAll(BROKER_URL, server.url).replaceAll(BROKER_URL.replace('127.0.0.1', 'localhost'), consoleUrl).replaceAll(DEV_VAULT_URL, devVaultUrl).split('\n').join('…');
    expect(missingFragment(server.output(), expected), server.output()).toBeUndefined();
    expect(agentToken).toMatch(/^jit_[0-9a-f]{16}_/);
  });
});

describe('README walkthrough, run as written', () => {
  it('runs every command and prints what the README shows', { timeout: 90_000 }, async () => {
    const walkthrough = markdownSection(README, 'Five-minute walkthrough (dev mode)');
    const offset = README.slice(0, README.indexOf(walkthrough)).split('\n').length - 1;
    const snippets = codeBlocks(walkthrough, 'sh').flatMap((b) => shellSnippets(b.code, offset + b.line));
    expect(snippets.length).toBeGreaterThan(8);

    const vars: Record<string, string> = { JIT_DB: env.JIT_DB!, JIT_POLICIES: env.JIT_POLICIES! };
    let requestId: string | undefined;
    let vaultToken: string | undefined;
    const seen = { issued: false, pending: false, approved: false, claimed: false, revoked: false };
    const transcript: string[] = [];

    for (const snippet of snippets) {
      // What the README asks the reader to paste, and the ports.
      let command = snippet.command.replaceAll(BROKER_URL, server.url).replaceAll(DEV_VAULT_URL, devVaultUrl).replaceAll('jit_…', agentToken);
      if (command.includes('hvs.…')) command = command.replaceAll('hvs.…', vaultToken ?? 'hvs.NO_TOKEN_YET');
      if (command.includes('req_…')) command = command.replaceAll('req_…', requestId ?? 'req_NO_REQUEST_YET');
      const where = `README.md line ${snippet.line}: ${snippet.command}`;
      expect(command, `${where}\nhas a placeholder this test cannot fill`).not.toContain('…');

      const exported = /^export (\w+)=(\S+)/.exec(command);
      if (exported) {
        vars[exported[1]!] = exported[2]!;
        continue;
      }
      const run = await sh(command, vars);
      transcript.push(`$ ${command}\n${run.stdout}${run.stderr}`);
      expect(run.code, `${where}\nexited ${run.code}\n${run.stdout}${run.stderr}`).toBe(0);
      for (const expected of snippet.expect) {
        const missing = missingFragment(run.stdout, expected);
        expect(missing, `${where}\nexpected: ${expected}\ngot: ${run.stdout}${run.stderr}\n(first missing part: ${missing})`).toBeUndefined();
      }

      requestId = /"id":"(req_[0-9a-z]{26})"/.exec(run.stdout)?.[1] ?? /^(req_[0-9a-z]{26})\s/m.exec(run.stdout)?.[1] ?? requestId;
      vaultToken = /"token":"(hvs\.[^"]+)"/.exec(run.stdout)?.[1] ?? vaultToken;
      if (/\/jit\/request\b/.test(command) && run.stdout.includes('"status":"issued"')) seen.issued = true;
      if (/\/jit\/request\b/.test(command) && run.stdout.includes('"status":"pending"')) seen.pending = true;
      if (/\/revoke\b/.test(command) && run.stdout.includes('"status":"revoked"')) seen.revoked = true;
      if (/\bjit approve\b/.test(command) && run.stdout.includes('approved')) seen.approved = true;
      if (/\/claim\b/.test(command) && run.stdout.includes('"token":"hvs.')) seen.claimed = true;
    }
    // The README must keep showing the whole story, not just commands that happen to pass.
    expect(seen, transcript.join('\n')).toEqual({ issued: true, pending: true, approved: true, claimed: true, revoked: true });
  });

  it('beyond the README text: a second claim is 409 and the claimed token can write', async () => {
    const res = await api('POST', '/jit/request', {
      resource: 'vault',
      tier: 2,
      reason: 'rotate again',
      vault_paths: [{ path: 'homelab/data/docker/registry', capabilities: ['read', 'update'] }],
    });
    expect(res.status).toBe(202);
    const approve = await sh(`node bin/jit.mjs approve ${res.body.id}`, { JIT_DB: env.JIT_DB!, JIT_POLICIES: env.JIT_POLICIES! });
    expect(approve.code).toBe(0);
    const twice = await sh(`node bin/jit.mjs approve ${res.body.id}`, { JIT_DB: env.JIT_DB!, JIT_POLICIES: env.JIT_POLICIES! });
    expect(twice.code).toBe(1);
    expect(twice.stderr).toContain('already approved');
    const claim = await api('POST', `/jit/requests/${res.body.id}/claim`);
    expect(claim.status).toBe(201);
    const write = await fetch(`${devVaultUrl}/v1/homelab/data/docker/registry`, {
      method: 'POST',
      headers: { 'X-Vault-Token': claim.body.credential.token, 'content-type': 'application/json' },
      body: JSON.stringify({ data: { username: 'demo', password: 'rotated' } }),
    });
    expect(write.status).toBe(200);
    expect((await api('POST', `/jit/requests/${res.body.id}/claim`)).status).toBe(409);
  });

  it('keeps the old policy on SIGHUP with a bad file', async () => {
    writeFileSync(join(dir, 'policies', 'zz-bad.yaml'), 'rules: [oops\n');
    server.child.kill('SIGHUP');
    await until(() => server.output().includes('policy reload failed'), undefined, 'the reload to fail');
    const res = await api('POST', '/jit/request', {
      resource: 'vault',
      tier: 1,
      reason: 'still works',
      vault_paths: [{ path: 'homelab/data/docker/registry', capabilities: ['read'] }],
    });
    expect(res.status).toBe(201);
  });

  it('never prints an issued Vault token or the agent secret in its log', async () => {
    const SUMMARY = '"path":"/jit/request","status":201';
    const logged = () => server.output().split(SUMMARY).length - 1;
    const before = logged();
    const res = await api('POST', '/jit/request', {
      resource: 'vault',
      tier: 1,
      reason: 'log check',
      vault_paths: [{ path: 'homelab/data/docker/registry', capabilities: ['read'] }],
    });
    expect(res.status).toBe(201);
    // pino writes asynchronously: wait for this request's summary line (logged once it is answered), then read the log.
    await until(() => logged() > before, undefined, 'the request to be logged');
    const out = server.output();
    expect(out).not.toContain(res.body.credential.token);
    // The token is printed exactly once, on purpose, under its banner.
    expect(out.split(agentToken).length - 1).toBe(1);
  });
});
