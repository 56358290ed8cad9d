import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { decideRequest } from '../../../src/broker/decide.ts';
import { runCli } from '../../../src/cli/main.ts';
import { startWebhookReceiver, type WebhookReceiver } from '../../fakes/webhook-receiver.ts';
import { TEST_POLICY, startHarness, type Harness } from '../../helpers/broker-harness.ts';

/**
 * Narrowing from the local CLI (`jit approve --ttl --drop-…`), and what the
 * agent sees of it: `GET /jit/requests/:id`, the decision webhook, and the
 * credential itself (checked by the development Vault and /gate/verify).
 */
const HOOKS_TOKEN = 'openclaw-hooks-token-for-narrowing-0123456789';
let h: Harness;
let receiver: WebhookReceiver;
let token: string;

beforeEach(async () => {
  let harness: Harness | undefined;
  receiver = await startWebhookReceiver({ jwks: () => harness!.broker.deps.keys.jwks(), now: () => harness!.clock.now(), bearer: HOOKS_TOKEN });
  harness = await startHarness({ env: { OPENCLAW_HOOKS_URL: `${receiver.url}/hooks`, OPENCLAW_HOOKS_TOKEN: HOOKS_TOKEN } });
  h = harness;
  token = await h.addAgent('moltbot');
  await h.root.write('homelab/data/apps/db', { data: { key: 'db-key' } });
});
afterEach(async () => {
  await h.close();
  await receiver.close();
});

const WEB = 'homelab/data/apps/web';
const DB = 'homelab/data/apps/db';
const twoPaths = {
  resource: 'vault',
  tier: 2,
  reason: 'rotate the web and db keys',
  vault_paths: [
    { path: WEB, capabilities: ['read', 'update'] },
    { path: DB, capabilities: ['read', 'update'] },
  ],
  ttl: '15m',
};

async function pending(body: Record<string, unknown> = twoPaths): Promise<string> {
  const res = await h.call('POST', '/jit/request', { token, body });
  expect(res.status).toBe(202);
  return res.body.id;
}

/** `jit ARGS` in-process, on the harness's database and policies, as an operator on the broker host. */
async function jit(...args: string[]): Promise<{ code: number; out: string; err: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const code = await runCli(args, {
    env: { JIT_DB: join(h.dir, 'jit.db'), JIT_POLICIES: h.policiesDir, OPENCLAW_HOOKS_URL: `${receiver.url}/hooks`, OPENCLAW_HOOKS_TOKEN: HOOKS_TOKEN },
    out: (l) => out.push(l),
    err: (l) => err.push(l),
  });
  return { code, out: out.join('\n'), err: err.join('\n') };
}

const status = async (p: Promise<unknown>) =>
  p.then(
    () => 200,
    (e: { response?: { statusCode?: number } }) => e.response?.statusCode ?? -1,
  );

describe('jit approve with narrowing', () => {
  it('--ttl, --drop-capability and --drop-path: the token grants exactly the narrowed set; view and webhook show granted next to requested', async () => {
    const id = await pending();
    const res = await jit('approve', id, '--ttl', '5m', '--drop-capability', 'update', '--drop-path', DB);
    expect(res.code, res.err).toBe(0);
    expect(res.out).toContain(`Request ${id} approved.`);
    expect(res.out).toContain(`Granted (narrowed): ${WEB} [read]; TTL 5m.`);
    expect(res.out).toContain(`Not granted: update on ${WEB}; path ${DB}; TTL 15m → 5m.`);

    const view = await h.call('GET', `/jit/requests/${id}`, { token });
    expect(view.body).toMatchObject({
      status: 'approved',
      vault_paths: twoPaths.vault_paths,
      ttl_seconds: 900,
      granted: { vault_paths: [{ path: WEB, capabilities: ['read'] }], ttl_seconds: 300 },
      narrowed: true,
      decision: { approver: 'local-cli' },
    });

    // The CLI stamped the event with the real time; bring the broker's manual clock up to it.
    h.clock.set(Date.now() + 1_000);
    const [hook] = await receiver.waitForRequests(1, 10_000);
    expect(hook!.verification.ok).toBe(true);
    const message: string = JSON.parse(hook!.body).message;
    expect(message).toContain(`The approver NARROWED it: granted less than you asked (not granted: update on ${WEB}; path ${DB}; TTL 15m → 5m).`);
    expect(message).toContain(`Granted once claimed, valid for 5m from the claim:\n  - vault ${WEB} [read]\nClaim it`);
    const outbox = h.db.prepare(`SELECT body FROM webhook_outbox WHERE request_id = ?`).pluck().get(id) as string;
    expect(outbox).not.toContain(`vault ${DB}`);

    const claim = await h.call('POST', `/jit/requests/${id}/claim`, { token });
    expect(claim.status).toBe(201);
    const agent = h.vaultAs(claim.body.credential.token);
    expect((await agent.read(WEB)).data.data).toEqual({ key: 'web-key' });
    expect(await status(agent.write(WEB, { data: { key: 'stolen' } }))).toBe(403);
    expect(await status(agent.read(DB))).toBe(403);
    const self = await agent.tokenLookupSelf();
    expect(self.data.ttl).toBeLessThanOrEqual(300);
    expect(new Date(claim.body.expires_at).getTime() - h.clock.now()).toBeLessThanOrEqual(300_000);

    const issued = await h.call('GET', `/jit/requests/${id}`, { token });
    expect(issued.body).toMatchObject({ status: 'issued', granted: { ttl_seconds: 300 }, narrowed: true });
    const audit = h.db.prepare(`SELECT data FROM audit_log WHERE request_id = ? AND event = 'request.approved'`).pluck().get(id) as string;
    expect(JSON.parse(audit)).toMatchObject({ narrowed: true, dropped: { dropped_paths: [DB], dropped_capabilities: [{ path: WEB, capabilities: ['update'] }], ttl_seconds: { requested: 900, granted: 300 } } });
  });

  it('without narrowing, granted equals requested (and says so)', async () => {
    const id = await pending();
    const res = await jit('approve', id);
    expect(res.code, res.err).toBe(0);
    expect(res.out).toContain(`Granted as asked: ${WEB} [read, update]; ${DB} [read, update]; TTL 15m.`);
    const view = await h.call('GET', `/jit/requests/${id}`, { token });
    expect(view.body).toMatchObject({ granted: { vault_paths: twoPaths.vault_paths, ttl_seconds: 900 }, narrowed: false });
    const pendingView = await h.call('GET', `/jit/requests/${await pending()}`, { token });
    expect(pendingView.body).toMatchObject({ status: 'pending', granted: null, narrowed: false });
  });

  it.each([
    [['--ttl', '1h'], /a TTL of 1h is longer than the request's 15m; narrowing can only shorten it/],
    [['--drop-capability', 'delete'], /capability "delete" was not requested \(requested: read, update\)/],
    [['--drop-path', 'homelab/data/apps/other'], /path "homelab\/data\/apps\/other" was not requested/],
    [['--drop-ref', 'refs/heads/main'], /refs can only be dropped from gate requests/],
    [['--drop-capability', 'read', '--drop-capability', 'update'], /leaves nothing to grant .*; deny the request instead/],
  ])('refuses %j with a clear message and leaves the request pending', async (flags, message) => {
    const id = await pending();
    const res = await jit('approve', id, ...flags);
    expect(res.code).toBe(1);
    expect(res.err).toMatch(message);
    expect(res.err).toContain('It is still pending.');
    expect((await h.broker.deps.storage.requests.get(id))!.status).toBe('pending');
    const refused = h.db.prepare(`SELECT actor FROM audit_log WHERE request_id = ? AND event = 'approval.refused'`).pluck().all(id);
    expect(refused).toEqual(['local-cli']);
  });

  it('usage errors exit 2', async () => {
    const id = await pending();
    expect((await jit('approve', id, '--ttl', 'soon')).code).toBe(2);
    expect((await jit('deny', id, '--ttl', '5m')).code).toBe(2);
    expect((await jit('approve', id, '--drop-path', '')).code).toBe(2);
    const help = await jit('approve', '--help');
    expect(help.out).toContain('--drop-capability CAP');
  });

  it('--drop-ref narrows a gate credential: the dropped ref does not verify', async () => {
    const body = { resource: 'gate', tier: 2, reason: 'push two release branches', repo: 'homelab/app', refs: ['refs/heads/release/1.0', 'refs/heads/release/2.0'] };
    const id = await pending(body);
    const res = await jit('approve', id, '--drop-ref', 'refs/heads/release/2.0', '--ttl', '5m');
    expect(res.code, res.err).toBe(0);
    expect(res.out).toContain('Not granted: ref refs/heads/release/2.0; TTL 30m → 5m.');
    const view = await h.call('GET', `/jit/requests/${id}`, { token });
    expect(view.body).toMatchObject({ repo: 'homelab/app', refs: body.refs, granted: { repo: 'homelab/app', refs: ['refs/heads/release/1.0'], ttl_seconds: 300 }, narrowed: true });
    const claim = await h.call('POST', `/jit/requests/${id}/claim`, { token });
    expect(claim.body.credential).toMatchObject({ type: 'gate_push', refs: ['refs/heads/release/1.0'] });
    const verify = (ref: string) => h.call('POST', '/gate/verify', { body: { credential: claim.body.credential.credential, repo: 'homelab/app', ref } });
    expect((await verify('refs/heads/release/1.0')).body.valid).toBe(true);
    expect((await verify('refs/heads/release/2.0')).body).toMatchObject({ valid: false });
    const claims = JSON.parse(Buffer.from(claim.body.credential.credential.split('.')[1], 'base64url').toString());
    expect(claims.exp - claims.iat).toBe(300);
  });
});

describe('the policy in force re-checks every approval', () => {
  it('a pair denied after the request refuses the approval until it is narrowed away', async () => {
    const id = await pending();
    writeFileSync(join(h.policiesDir, 'test.yaml'), TEST_POLICY.replace('deny:\n', `deny:\n  - paths: ["${DB}"]\n`));
    expect(h.broker.deps.policies.reload(h.policiesDir).ok).toBe(true);

    const plain = await decideRequest(h.broker.deps, id, { approver: 'telegram:1', decision: 'approve' });
    expect(plain).toMatchObject({ outcome: 'refused', code: 'DENIED_BY_POLICY' });
    expect(plain.outcome === 'refused' && plain.message).toMatch(/no longer allows this grant: "homelab\/data\/apps\/db" is denied by policy/);
    const cli = await jit('approve', id);
    expect(cli.code).toBe(1);
    expect(cli.err).toMatch(/denied by policy/);
    expect((await h.broker.deps.storage.requests.get(id))!.status).toBe('pending');

    // Narrowing that keeps the denied pair is still refused: a narrowed grant is subject to deny.
    const stillDenied = await jit('approve', id, '--ttl', '5m', '--drop-capability', 'update');
    expect(stillDenied.code).toBe(1);
    expect(stillDenied.err).toMatch(/denied by policy/);
    const narrowed = await jit('approve', id, '--drop-path', DB);
    expect(narrowed.code, narrowed.err).toBe(0);
    expect((await h.broker.deps.storage.requests.get(id))!.status).toBe('approved');
  });

  it('a tier raised after the request refuses approval at the old tier; a smaller max_ttl shortens the grant', async () => {
    const raised = await pending();
    const shorter = await pending({ ...twoPaths, vault_paths: [{ path: WEB, capabilities: ['read'] }], tier: 2 });
    writeFileSync(join(h.policiesDir, 'test.yaml'), TEST_POLICY.replace('capabilities: [read, create, update]\n    tier: 2', 'capabilities: [read, create, update]\n    tier: 3'));
    expect(h.broker.deps.policies.reload(h.policiesDir).ok).toBe(true);
    const res = await decideRequest(h.broker.deps, raised, { approver: 'telegram:1', decision: 'approve' });
    expect(res).toMatchObject({ outcome: 'refused', code: 'FORBIDDEN' });
    expect(res.outcome === 'refused' && res.message).toMatch(/requires tier 3 for this grant, but the request is decided at tier 2/);

    // homelab/data/apps/web: read is now only covered by the tier-3 rule too, so narrowing cannot rescue it either.
    expect((await decideRequest(h.broker.deps, shorter, { approver: 'telegram:1', decision: 'approve', narrowing: { ttlSeconds: 60 } })).outcome).toBe('refused');
    writeFileSync(join(h.policiesDir, 'test.yaml'), TEST_POLICY.replace('tier: 2\n    max_ttl: 30m', 'tier: 2\n    max_ttl: 10m'));
    expect(h.broker.deps.policies.reload(h.policiesDir).ok).toBe(true);
    const clamped = await decideRequest(h.broker.deps, shorter, { approver: 'telegram:1', decision: 'approve' });
    expect(clamped).toMatchObject({ outcome: 'approved', grant: { ttl_seconds: 600 }, narrowed: true });
  });
});
