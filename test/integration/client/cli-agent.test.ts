import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { decideRequest } from '../../../src/broker/decide.ts';
import { startHarness, type Harness } from '../../helpers/broker-harness.ts';
import { endsWithTest, JIT_BIN, runJit } from '../../helpers/cli.ts';
import { closedPort } from '../../unit/client/scripted-server.ts';
import { parseExports, pendingWithReason, streamOpened, tokenIsDead } from './helpers.ts';

let h: Harness;
let token: string;
let env: Record<string, string>;
let neverDb: string;
beforeAll(async () => {
  h = await startHarness({ env: { JIT_RATE_PER_MINUTE: '4' } });
  token = await h.addAgent('moltbot');
  // The agent side talks HTTP only: a JIT_DB it would create on opening must never appear.
  neverDb = join(h.dir, 'agent-side-must-not-open', 'jit.db');
  env = { JIT_URL: h.broker.url, JIT_AGENT_TOKEN: token, JIT_DB: neverDb };
});
beforeEach(() => {
  h.clock.advance(61_000); // a fresh per-minute rate window for each test
});
afterAll(async () => {
  await h.close();
});

/** Runs a POSIX shell script with the agent's environment. */
function runShell(script: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn('sh', ['-c', script], { env: { PATH: process.env.PATH ?? '', ...env }, detached: true });
    endsWithTest(child, true);
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

const READ_REGISTRY = ['request', 'vault', '--path', 'homelab/data/docker/registry:read', '--tier', '1', '--reason', 'read the registry login'];

describe('jit request / status / claim / revoke against a running broker', () => {
  it('tier 1: issued at once, the token reads the path, revoke kills it', async () => {
    const res = await runJit(READ_REGISTRY, env);
    expect(res.code, res.stderr).toBe(0);
    const vars = parseExports(res.stdout);
    expect(vars).toMatchObject({ JIT_REQUEST_STATUS: 'issued', VAULT_TOKEN: expect.stringMatching(/^hvs\./), JIT_REQUEST_ID: expect.stringMatching(/^req_/) });
    expect(res.stderr).toContain('Issued');
    expect(res.stderr).not.toContain(vars.VAULT_TOKEN);
    const read = await h.vaultAs(vars.VAULT_TOKEN!).read('homelab/data/docker/registry');
    expect(read.data.data.password).toBe('pw-registry');

    const revoked = await runJit(['revoke', vars.JIT_REQUEST_ID!], env);
    expect(revoked.code, revoked.stderr).toBe(0);
    expect(revoked.stdout).toContain('is revoked');
    expect(await tokenIsDead(h, vars.VAULT_TOKEN!, 'homelab/data/docker/registry')).toBe(true);
  });

  it('tier 2: pending, approved, status, claim once, write with the token, revoke', async () => {
    const res = await runJit(
      ['request', 'vault', '--path', 'homelab/data/apps/web', '--cap', 'read,update', '--tier', '1', '--reason', 'rotate the web key', '--ttl', '15m'],
      env,
    );
    expect(res.code, res.stderr).toBe(0);
    const { JIT_REQUEST_ID: id, JIT_REQUEST_STATUS: status } = parseExports(res.stdout);
    expect(status).toBe('pending');
    expect(res.stderr).toMatch(/pending \(tier 2; you asked for tier 1, policy requires 2\)/);
    expect(res.stderr).toContain(`jit claim ${id}`);

    expect((await decideRequest(h.broker.deps, id!, { approver: 'local-cli', decision: 'approve', reason: 'ok' })).outcome).toBe('approved');
    const status2 = await runJit(['status', id!], env);
    expect(status2.code).toBe(0);
    expect(status2.stdout).toMatch(/approved\s+vault\s+tier 1 \(required 2\)/);
    expect(status2.stdout).toContain('homelab/data/apps/web [read, update]');
    expect(status2.stdout).toContain('decision:   local-cli');

    const claim = await runJit(['claim', id!], env);
    expect(claim.code, claim.stderr).toBe(0);
    const vars = parseExports(claim.stdout);
    expect(claim.stderr).not.toContain(vars.VAULT_TOKEN);
    await h.vaultAs(vars.VAULT_TOKEN!).write('homelab/data/apps/web', { data: { key: 'rotated-by-cli' } });
    expect((await h.root.read('homelab/data/apps/web')).data.data.key).toBe('rotated-by-cli');

    const [again, revoked] = await Promise.all([runJit(['claim', id!, '--format', 'json'], env), runJit(['revoke', id!, '--format', 'json'], env)]);
    expect(again.code).toBe(1);
    expect(again.stdout).toBe('');
    expect(again.stderr).toMatch(/^jit claim: Conflict: the credential of request req_\w+ was already claimed \(409 CONFLICT\)$/m);
    expect(revoked.code).toBe(0);
    expect(JSON.parse(revoked.stdout)).toMatchObject({ id, status: 'revoked' });
    expect(await tokenIsDead(h, vars.VAULT_TOKEN!, 'homelab/data/apps/web')).toBe(true);
  });

  it('--wait follows the decision stream until the approver decides, printing the decision; --claim claims; the docs/agents.md shell recipe works', async () => {
    const ask = (reason: string, extra: string[]) =>
      runJit(['request', 'vault', '--path', 'homelab/data/apps/web:read,update', '--tier', '2', '--reason', reason, '--wait', ...extra], env);
    const approvedRun = ask('wait for approval', ['--claim']);
    const deniedRun = ask('wait for denial', []);
    const timeoutRun = ask('nobody decides', ['--wait-timeout', '1s']);
    const scriptRun = runShell(`
      set -eu
      jit() { "${process.execPath}" "${JIT_BIN}" "$@"; }
      out=$(jit request vault --path homelab/data/apps/web:read,update --tier 2 --reason "script rotation" --wait)
      eval "$out"
      eval "$(jit claim "$JIT_REQUEST_ID" --format env)"
      echo "$JIT_REQUEST_ID $VAULT_TOKEN"`);

    const [approveId, denyId, scriptId] = await Promise.all([
      pendingWithReason(h, 'wait for approval', approvedRun),
      pendingWithReason(h, 'wait for denial', deniedRun),
      pendingWithReason(h, 'script rotation', scriptRun),
    ]);
    // Every waiter's stream is open (however slowly its process started) before the decisions.
    await Promise.all([approveId, denyId, scriptId].map((id) => streamOpened(h, id)));
    await decideRequest(h.broker.deps, approveId, { approver: 'local-cli', decision: 'approve' });
    await decideRequest(h.broker.deps, denyId, { approver: 'local-cli', decision: 'deny', reason: 'not today' });
    await decideRequest(h.broker.deps, scriptId, { approver: 'local-cli', decision: 'approve' });

    const approved = await approvedRun;
    expect(approved.code, approved.stderr).toBe(0);
    expect(approved.stderr).toContain(`Request ${approveId} approved by local-cli.`);
    expect(approved.stderr).toContain(`Claimed ${approveId}.`);
    const vars = parseExports(approved.stdout);
    expect(vars).toMatchObject({ JIT_REQUEST_ID: approveId, JIT_REQUEST_STATUS: 'issued' });
    await h.vaultAs(vars.VAULT_TOKEN!).write('homelab/data/apps/web', { data: { key: 'rotated-after-wait' } });

    const denied = await deniedRun;
    expect(denied.code).toBe(1);
    expect(denied.stderr).toContain(`Request ${denyId} denied by local-cli (not today).`);
    expect(denied.stderr).toContain(`request ${denyId} ended denied; no credential.`);
    expect(parseExports(denied.stdout)).toEqual({ JIT_REQUEST_ID: denyId, JIT_REQUEST_STATUS: 'denied' });

    const timedOut = await timeoutRun;
    expect(timedOut.code).toBe(1);
    expect(timedOut.stderr).toMatch(/is still pending after \d+ s; it may still be decided. Check with: jit status req_/);

    const script = await scriptRun;
    expect(script.code, script.stderr).toBe(0);
    const [seenId, vaultToken] = script.stdout.trim().split(' ');
    expect(seenId).toBe(scriptId);
    await h.vaultAs(vaultToken!).write('homelab/data/apps/web', { data: { key: 'rotated-by-script' } });
    expect((await h.call('POST', `/jit/requests/${scriptId}/revoke`, { token })).status).toBe(200);
    expect(await tokenIsDead(h, vaultToken!, 'homelab/data/apps/web')).toBe(true);
  });

  it('gate: a tier 1 push credential the gate verifies, until revoked', async () => {
    const res = await runJit(['request', 'gate', '--repo', 'homelab/app', '--ref', 'refs/heads/agent/fix-1', '--tier', '1', '--reason', 'push the fix', '--format', 'json'], env);
    expect(res.code, res.stderr).toBe(0);
    const issued = JSON.parse(res.stdout);
    expect(issued).toMatchObject({ status: 'issued', credential: { type: 'gate_push', repo: 'homelab/app' } });
    const verify = () => h.call('POST', '/gate/verify', { body: { credential: issued.credential.credential, repo: 'homelab/app', ref: 'refs/heads/agent/fix-1' } });
    expect((await verify()).body.valid).toBe(true);
    expect((await h.call('POST', `/jit/requests/${issued.id}/revoke`, { token })).status).toBe(200);
    expect((await verify()).body.valid).toBe(false);
  });
});

describe('errors come back as clear messages and exit codes', () => {
  it('403 policy, 401 bad token, 404 unknown id: exit 1 with the problem title and detail', async () => {
    const [denied, unauthorized, notFound] = await Promise.all([
      runJit(['request', 'vault', '--path', 'homelab/data/vault/unseal:read', '--tier', '1', '--reason', 'r'], env),
      runJit(['status', 'req_0000000000aaaaaaaaaaaaaaaa'], { ...env, JIT_AGENT_TOKEN: 'jit_0000000000000000_not-a-real-token' }),
      runJit(['claim', 'req_0000000000aaaaaaaaaaaaaaaa'], env),
    ]);
    expect(denied.code).toBe(1);
    expect(denied.stdout).toBe('');
    expect(denied.stderr.trim()).toBe(
      'jit request: Denied by policy: "homelab/data/vault/unseal" is denied by policy (deny pattern "homelab/data/vault/*") (403 DENIED_BY_POLICY)',
    );
    expect(unauthorized.code).toBe(1);
    expect(unauthorized.stderr).toMatch(/^jit status: Unauthorized: the bearer token is not valid \(401 UNAUTHORIZED\)$/m);
    expect(unauthorized.stderr).not.toContain('not-a-real-token');
    expect(notFound.code).toBe(1);
    expect(notFound.stderr).toMatch(/Not found: request req_0000000000aaaaaaaaaaaaaaaa not found \(404 NOT_FOUND\)/);
  });

  it('429: exit 1 at once, saying when to retry', async () => {
    for (let i = 0; i < 4; i++) {
      const body = { resource: 'vault', tier: 1, reason: 'fill the window', vault_paths: [{ path: 'homelab/data/docker/registry', capabilities: ['read'] }] };
      expect((await h.call('POST', '/jit/request', { token, body })).status).toBe(201);
    }
    const started = Date.now();
    const limited = await runJit(READ_REGISTRY, env);
    expect(limited.code).toBe(1);
    expect(limited.stderr).toMatch(/^jit request: Too many requests: agent "moltbot" made 4 requests in the last minute, refused ones included \(limit 4\) \(429 RATE_LIMITED\); retry after \d+ s$/m);
    expect(Date.now() - started).toBeLessThan(10_000);
  });

  it('broker down: exit 3 naming the address', async () => {
    const port = await closedPort();
    const down = { ...env, JIT_URL: `http://127.0.0.1:${port}` };
    const [req, claim] = await Promise.all([runJit(READ_REGISTRY, down), runJit(['claim', 'req_0000000000aaaaaaaaaaaaaaaa'], down)]);
    for (const res of [req, claim]) {
      expect(res.code).toBe(3);
      expect(res.stdout).toBe('');
      expect(res.stderr).toContain(`cannot reach the JIT broker at http://127.0.0.1:${port}: connection refused`);
      expect(res.stderr).not.toContain(token);
    }
  });

  it('the agent side never opened a database', () => {
    expect(existsSync(dirname(neverDb))).toBe(false);
  });
});
