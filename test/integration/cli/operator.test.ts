import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cpSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startDevVault, type DevVault } from '../../../src/vault/dev/index.ts';
import type { Jwks } from '../../../src/keys/key-ring.ts';
import { startTelegramEmulator, type TelegramEmulator } from '../../fakes/telegram-emulator/index.ts';
import { startWebhookReceiver, type WebhookReceiver } from '../../fakes/webhook-receiver.ts';
import { until } from '../../helpers/chaos-process.ts';
import { runJit, startJitServe } from '../../helpers/cli.ts';

/**
 * The operator without Telegram (SPEC §11): `jit requests` (table, show,
 * revoke, the kill switch), `jit credentials`, `jit agent remove` and tier 3
 * from the shell, all as child processes against a running `jit serve`.
 * Decision webhooks go to a real receiver; Vault tokens are checked over
 * HTTP against the Vault that issued them.
 */
const REPO = join(import.meta.dirname, '..', '..', '..');
const HOOKS_TOKEN = 'openclaw-hooks-token-for-operator-tests-0123456789';

interface Broker {
  dir: string;
  env: Record<string, string>;
  server: Awaited<ReturnType<typeof startJitServe>>;
  receiver: WebhookReceiver;
  vaultUrl: string;
  devToken: string;
  jit(...args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }>;
  api(token: string, method: string, path: string, body?: unknown): Promise<{ status: number; body: any }>;
  /** The decision webhook of `type` for request `id`, once the receiver has it. */
  webhook(id: string, type: string): Promise<{ message: string; verified: boolean }>;
  close(): Promise<void>;
}

async function startBroker(extraEnv: (dir: string) => Record<string, string> = () => ({})): Promise<Broker> {
  const dir = mkdtempSync(join(tmpdir(), 'jit-operator-'));
  cpSync(join(REPO, 'policies'), join(dir, 'policies'), { recursive: true });
  // An agent to remove: only "agent-branches" (gate, every agent) covers it.
  writeFileSync(join(dir, 'policies', 'leaver.yaml'), 'agents:\n  leaver:\n    sessions: ["hook:jit:leaver"]\n    default_session: "hook:jit:leaver"\n    webhook: openclaw\n');
  let jwks: Jwks = { keys: [] };
  const receiver = await startWebhookReceiver({ jwks: () => jwks, bearer: HOOKS_TOKEN });
  const env: Record<string, string> = {
    JIT_DB: join(dir, 'jit.db'),
    JIT_POLICIES: join(dir, 'policies'),
    JIT_PORT: '0',
    JIT_DEV_VAULT_PORT: '0',
    OPENCLAW_HOOKS_URL: `${receiver.url}/hooks`,
    OPENCLAW_HOOKS_TOKEN: HOOKS_TOKEN,
    ...extraEnv(dir),
  };
  const server = await startJitServe(env);
  jwks = (await (await fetch(`${server.url}/.well-known/jwks.json`)).json()) as Jwks;
  const jit = (...args: string[]) => runJit(args, env, 60_000);
  let devToken = server.devToken;
  if (!devToken) {
    const add = await jit('agent', 'add', 'dev', '--session', 'hook:jit:dev');
    devToken = add.stdout.trim().split('\n').at(-1)!;
  }
  const vaultUrl = /development Vault at (http:\/\/\S+)/.exec(server.output())?.[1] ?? env.VAULT_ADDR!;
  return {
    dir,
    env,
    server,
    receiver,
    vaultUrl,
    devToken,
    jit,
    async api(token, method, path, body) {
      const res = await fetch(`${server.url}${path}`, {
        method,
        headers: { authorization: `Bearer ${token}`, ...(body ? { 'content-type': 'application/json' } : {}) },
        ...(body ? { body: JSON.stringify(body) } : {}),
      });
      return { status: res.status, body: (await res.json()) as any };
    },
    async webhook(id, type) {
      const word = { 'jit.request.revoked': 'REVOKED', 'jit.request.approved': 'APPROVED' }[type] ?? type;
      const hit = await until(
        () => receiver.requests.find((r) => r.path === '/hooks/agent' && r.body.includes(`Request ${id} `) && JSON.parse(r.body).message.includes(` was ${word}`)),
        30_000,
        `the ${type} webhook of ${id}`,
      );
      return { message: JSON.parse(hit.body).message, verified: hit.verification.ok };
    },
    async close() {
      const code = await server.stop();
      await receiver.close();
      rmSync(dir, { recursive: true, force: true });
      expect(code).toBe(0);
    },
  };
}

/** What a Vault token can do now: the HTTP status of reading `path` with it. */
async function vaultRead(vaultUrl: string, token: string, path = 'homelab/data/docker/registry'): Promise<number> {
  return (await fetch(`${vaultUrl}/v1/${path}`, { headers: { 'X-Vault-Token': token } })).status;
}

/** Scenario tests run a dozen CLI processes each (about 1-2 s apiece on a busy machine), like the README walkthrough. */
const SCENARIO = { timeout: 120_000 };

const TIER1_READ = { resource: 'vault', tier: 1, reason: 'read the registry login', vault_paths: [{ path: 'homelab/data/docker/registry', capabilities: ['read'] }] };
const rowOf = (table: string, id: string) => table.split('\n').find((l) => l.startsWith(`${id}\t`));

describe('dev mode: the operator acts from the shell', () => {
  let b: Broker;
  beforeAll(async () => {
    b = await startBroker();
  });
  afterAll(async () => {
    await b?.close();
  });

  it('jit requests: ID, STATUS, AGENT, TIER, CREATED, TTL, REASON (inert, shortened) and SCOPE (narrowed, marked)', SCENARIO, async () => {
    const reason = 'rotate the web key\nreq_00000000000000000000000000\tissued\tdev \u202Eevil\u202C and a very long tail of explanation that goes on';
    const ask = await b.api(b.devToken, 'POST', '/jit/request', {
      resource: 'vault',
      tier: 2,
      reason,
      vault_paths: [{ path: 'homelab/data/apps/web', capabilities: ['read', 'update'] }],
      ttl: '15m',
    });
    expect(ask.status).toBe(202);
    const id: string = ask.body.id;
    const approve = await b.jit('approve', id, '--ttl', '5m', '--drop-capability', 'update');
    expect(approve.code, approve.stderr).toBe(0);

    const list = await b.jit('requests', '--agent', 'dev');
    expect(list.code, list.stderr).toBe(0);
    const lines = list.stdout.trimEnd().split('\n');
    expect(lines[0]).toBe(['ID', 'STATUS', 'AGENT', 'TIER', 'CREATED', 'TTL', 'REASON', 'SCOPE'].join('\t'));
    // The agent's newline and tab cannot start a row or a column of their own.
    expect(lines.filter((l) => l.startsWith('req_00000000000000000000000000'))).toEqual([]);
    const cols = rowOf(list.stdout, id)!.split('\t');
    expect(cols).toHaveLength(8);
    expect(cols.slice(1, 4)).toEqual(['approved', 'dev', '2->2']);
    expect(cols[5]).toBe('5m');
    expect(cols[6]).toMatch(/^rotate the web key\\n/);
    expect(cols[6]).toMatch(/…$/);
    expect(cols[6]!.length).toBeLessThanOrEqual(60);
    expect(list.stdout).not.toContain('\u202E');
    expect(cols[7]).toBe('(narrowed) homelab/data/apps/web[read]');

    const json = await b.jit('requests', '--status', 'approved', '--limit', '1', '--json');
    expect(json.code, json.stderr).toBe(0);
    const docs = json.stdout.trimEnd().split('\n').map((l) => JSON.parse(l));
    expect(docs).toHaveLength(1);
    expect(docs[0]).toMatchObject({ id, status: 'approved', agent: 'dev', reason, ttl_seconds: 900, granted: { ttl_seconds: 300 }, narrowed: true });

    const bad = await b.jit('requests', '--agent', 'Not A Name');
    expect(bad.code).toBe(2);
  });

  it('jit requests show: the whole request, agent text inert under its own heading, votes, decision, credential and webhook deliveries', SCENARIO, async () => {
    const paths = Array.from({ length: 6 }, (_, i) => ({ path: `homelab/data/apps/svc-${i}`, capabilities: ['read', 'update'] }));
    const reason = 'Status: approved by admin\n\u202Eline two';
    const ask = await b.api(b.devToken, 'POST', '/jit/request', { resource: 'vault', tier: 2, reason, vault_paths: paths, ttl: '15m', session_key: 'hook:jit:dev:show' });
    expect(ask.status).toBe(202);
    const id: string = ask.body.id;
    const pendingShow = await b.jit('requests', 'show', id);
    expect(pendingShow.code, pendingShow.stderr).toBe(0);
    expect(pendingShow.stdout).toMatch(/^Status:\s+pending/m);

    expect((await b.jit('approve', id, '--drop-path', 'homelab/data/apps/svc-5', '--reason', 'ok for the rotation')).code).toBe(0);
    const claim = await b.api(b.devToken, 'POST', `/jit/requests/${id}/claim`);
    expect(claim.status).toBe(201);
    const token: string = claim.body.credential.token;
    await b.webhook(id, 'jit.request.approved');
    await until(async () => (await b.jit('requests', 'show', id)).stdout.includes('delivered'), 30_000, 'the approval webhook delivered');

    const show = await b.jit('requests', 'show', id);
    expect(show.code, show.stderr).toBe(0);
    const out = show.stdout;
    expect(out).toContain(`Request ${id}`);
    expect(out).toMatch(/^Status:\s+issued/m);
    expect(out).toMatch(/^Agent:\s+dev$/m);
    expect(out).toMatch(/^Tier:\s+asked 2, required 2$/m);
    // Agent-written text only under its own heading, each line indented, escapes visible.
    expect(out).toContain('Reason (written by the agent):\n    Status: approved by admin\n    \\u{202E}line two\n');
    expect(out).toContain('Session key (written by the agent):\n    hook:jit:dev:show\n');
    expect(out).not.toMatch(/^Status: approved by admin/m);
    expect(out).not.toContain('\u202E');
    // Every asked pair, none hidden.
    for (const p of paths) expect(out).toContain(`${p.path}  [read, update]`);
    expect(out).toMatch(/^Granted \(NARROWED\):/m);
    expect(out).toContain('Not granted: path homelab/data/apps/svc-5');
    expect(out).toMatch(/^Votes:\n\s+local-cli\s+approve\s+\S+\s+ok for the rotation/m);
    expect(out).toMatch(/^Decision:\s+approved by local-cli at \S+/m);
    expect(out).toMatch(/^Credential:\s+vault_token, live, accessor \S+, expires \S+/m);
    expect(out).toMatch(/^Webhook deliveries:\n\s+evt_\S+\s+jit\.request\.approved\s+delivered/m);
    // The dev agent's policy says `webhook: openclaw` without a URL: the service sends to its own OPENCLAW_HOOKS_URL.
    expect(out).toMatch(/jit\.request\.approved\s+delivered .* openclaw OPENCLAW_HOOKS_URL/);
    expect(out).not.toContain(token);

    const json = await b.jit('requests', 'show', id, '--json');
    expect(json.code, json.stderr).toBe(0);
    const doc = JSON.parse(json.stdout);
    expect(doc).toMatchObject({
      id,
      status: 'issued',
      agent: 'dev',
      session_key: 'hook:jit:dev:show',
      reason,
      vault_paths: paths,
      narrowed: true,
      granted: { vault_paths: paths.slice(0, 5), ttl_seconds: 900 },
      decision: { approver: 'local-cli', reason: 'ok for the rotation' },
      credential: { type: 'vault_token', state: 'live', accessor: claim.body.credential.accessor },
      votes: [{ approver: 'local-cli', decision: 'approve', reason: 'ok for the rotation' }],
    });
    expect(doc.webhooks).toEqual([expect.objectContaining({ type: 'jit.request.approved', state: 'delivered', attempts: 1, target: 'openclaw', url: 'OPENCLAW_HOOKS_URL' })]);
    expect(json.stdout).not.toContain(token);
    expect(json.stdout).not.toContain(HOOKS_TOKEN);

    expect((await b.jit('requests', 'show', 'req_nope')).code).toBe(2);
    const missing = await b.jit('requests', 'show', 'req_0000000000000000000000000a');
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain('not found');
  });

  it('jit requests revoke ID: recorded as local-cli at once, webhook sent, and the service revokes the token in the development Vault', SCENARIO, async () => {
    const issued = await b.api(b.devToken, 'POST', '/jit/request', TIER1_READ);
    expect(issued.status).toBe(201);
    const { id } = issued.body;
    const token: string = issued.body.credential.token;
    expect(await vaultRead(b.vaultUrl, token)).toBe(200);

    const revoke = await b.jit('requests', 'revoke', id, '--reason', 'leaked in a log');
    expect(revoke.code, revoke.stderr).toBe(0);
    expect(revoke.stdout).toContain(`Revoked ${id} (was issued, agent `);
    expect(revoke.stdout).toMatch(/revocation recorded; the service will revoke the token in Vault at its next sweep, within about \d+ s/);
    const view = await b.api(b.devToken, 'GET', `/jit/requests/${id}`);
    expect(view.body.status).toBe('revoked');

    // Nothing the agent held stays usable once the service has swept.
    await until(async () => (await vaultRead(b.vaultUrl, token)) === 403, 30_000, 'the revoked token to stop working in the development Vault');
    expect((await fetch(`${b.vaultUrl}/v1/auth/token/lookup-self`, { headers: { 'X-Vault-Token': token } })).status).toBe(403);
    await until(async () => (await b.api(b.devToken, 'GET', `/jit/requests/${id}`)).body.credential.state === 'ended', 30_000, 'the credential row ended');
    expect((await b.jit('requests', 'show', id)).stdout).toMatch(/^Credential:\s+vault_token, ended/m);

    const hook = await b.webhook(id, 'jit.request.revoked');
    expect(hook.verified).toBe(true);
    expect(hook.message).toContain('Reason: "leaked in a log"');
    const audit = await b.jit('audit', 'export');
    const entry = audit.stdout.trim().split('\n').map((l) => JSON.parse(l)).find((e) => e.event === 'request.revoked' && e.request_id === id);
    expect(entry).toMatchObject({ actor: 'local-cli' });

    const again = await b.jit('requests', 'revoke', id);
    expect(again.code).toBe(0);
    expect(again.stdout).toContain('already revoked');
  });

  it('jit requests revoke ID on a gate credential: /gate/verify refuses it at once', SCENARIO, async () => {
    const ask = await b.api(b.devToken, 'POST', '/jit/request', { resource: 'gate', tier: 2, reason: 'push a fix', repo: 'homelab/app', refs: ['refs/heads/agent/fix-1'] });
    expect(ask.status).toBe(202);
    const { id } = ask.body;
    expect((await b.jit('approve', id)).code).toBe(0);
    const claim = await b.api(b.devToken, 'POST', `/jit/requests/${id}/claim`);
    expect(claim.status).toBe(201);
    const verify = () => b.api('', 'POST', '/gate/verify', { credential: claim.body.credential.credential, repo: 'homelab/app', ref: 'refs/heads/agent/fix-1' });
    expect((await verify()).body.valid).toBe(true);

    const revoke = await b.jit('requests', 'revoke', id);
    expect(revoke.code, revoke.stderr).toBe(0);
    expect(revoke.stdout).toContain(`gate credential ${claim.body.credential.jti} revoked`);
    expect((await verify()).body).toEqual({ valid: false, reason: 'revoked' });
    expect((await b.webhook(id, 'jit.request.revoked')).verified).toBe(true);
  });

  it('with broken policy files a revocation still sends its webhook: the service addresses it from the policy it loaded', SCENARIO, async () => {
    const ask = await b.api(b.devToken, 'POST', '/jit/request', { ...TIER1_READ, tier: 2, vault_paths: [{ path: 'homelab/data/apps/broken', capabilities: ['read'] }] });
    expect(ask.status).toBe(202);
    const broken = join(b.dir, 'policies', 'zz-broken.yaml');
    writeFileSync(broken, 'agents: [not, a, map\n');
    try {
      const revoke = await b.jit('requests', 'revoke', ask.body.id);
      expect(revoke.code, revoke.stderr).toBe(0);
      expect(revoke.stderr).toContain('zz-broken.yaml');
      expect(revoke.stdout).toContain(`Revoked ${ask.body.id} (was pending, agent dev)`);
      expect((await b.webhook(ask.body.id, 'jit.request.revoked')).verified).toBe(true);
    } finally {
      rmSync(broken);
    }
  });

  it('jit credentials lists live credentials (never a secret); jit requests revoke --all [--agent] is the kill switch', SCENARIO, async () => {
    const add = await b.jit('agent', 'add', 'moltbot');
    expect(add.code, add.stderr).toBe(0);
    const molt = add.stdout.trim().split('\n').at(-1)!;
    const mine = await b.api(molt, 'POST', '/jit/request', TIER1_READ);
    const devs = await b.api(b.devToken, 'POST', '/jit/request', TIER1_READ);
    expect([mine.status, devs.status]).toEqual([201, 201]);
    const pending = await b.api(b.devToken, 'POST', '/jit/request', { ...TIER1_READ, tier: 2, vault_paths: [{ path: 'homelab/data/apps/kill', capabilities: ['update'] }] });
    const approved = await b.api(b.devToken, 'POST', '/jit/request', { ...TIER1_READ, tier: 2, vault_paths: [{ path: 'homelab/data/apps/kill2', capabilities: ['update'] }] });
    expect((await b.jit('approve', approved.body.id)).code).toBe(0);

    const creds = await b.jit('credentials');
    expect(creds.code, creds.stderr).toBe(0);
    expect(creds.stdout.split('\n')[0]).toBe(['REQUEST', 'AGENT', 'TYPE', 'STATE', 'ACCESSOR/JTI', 'EXPIRES', 'SCOPE'].join('\t'));
    expect(rowOf(creds.stdout, mine.body.id)).toBe(
      [mine.body.id, 'moltbot', 'vault_token', 'live', mine.body.credential.accessor, mine.body.credential.expires_at, 'homelab/data/docker/registry[read]'].join('\t'),
    );
    expect(rowOf(creds.stdout, devs.body.id)).toBeDefined();
    const onlyMolt = await b.jit('credentials', '--agent', 'moltbot', '--json');
    const docs = onlyMolt.stdout.trim().split('\n').map((l) => JSON.parse(l));
    expect(docs).toEqual([
      { request_id: mine.body.id, agent: 'moltbot', type: 'vault_token', state: 'live', accessor: mine.body.credential.accessor, expires_at: mine.body.credential.expires_at, scope: { vault_paths: TIER1_READ.vault_paths, ttl_seconds: 3600 } },
    ]);
    for (const out of [creds.stdout, onlyMolt.stdout]) {
      expect(out).not.toContain(mine.body.credential.token);
      expect(out).not.toContain(devs.body.credential.token);
    }

    const killMolt = await b.jit('requests', 'revoke', '--all', '--agent', 'moltbot');
    expect(killMolt.code, killMolt.stderr).toBe(0);
    expect(killMolt.stdout).toContain(`Revoked ${mine.body.id} (was issued, agent `);
    expect(killMolt.stdout).not.toContain(devs.body.id);
    expect(killMolt.stdout).toContain('Ended 1 live credential, 0 pending and 0 approved requests.');
    expect((await b.api(b.devToken, 'GET', `/jit/requests/${devs.body.id}`)).body.status).toBe('issued');

    const kill = await b.jit('requests', 'revoke', '--all');
    expect(kill.code, kill.stderr).toBe(0);
    expect(kill.stdout).toContain(`Revoked ${devs.body.id} (was issued, agent `);
    expect(kill.stdout).toContain(`Revoked ${pending.body.id} (was pending, agent `);
    expect(kill.stdout).toContain(`Revoked ${approved.body.id} (was approved, agent `);
    // Earlier tests of this file left requests open too: the kill switch ends them all.
    expect(kill.stdout).toMatch(/^Ended \d+ live credentials?, \d+ pending and \d+ approved requests?\.$/m);
    for (const r of [mine, devs]) {
      const t: string = r.body.credential.token;
      await until(async () => (await vaultRead(b.vaultUrl, t)) === 403, 30_000, `token of ${r.body.id} dead in Vault`);
    }
    for (const id of [devs.body.id, pending.body.id, approved.body.id]) expect((await b.webhook(id, 'jit.request.revoked')).verified).toBe(true);
    expect((await b.api(b.devToken, 'POST', `/jit/requests/${approved.body.id}/claim`)).status).toBe(409);
    // Revoking rows are listed (state "revoking") until the service's sweep has ended them in Vault.
    await until(async () => (await b.jit('credentials')).stdout.trim() === 'No live credentials.', 30_000, 'no live credentials left', 1_000);
    const none = await b.jit('requests', 'revoke', '--all');
    expect(none.stdout).toContain('Nothing to revoke');
  });

  it('jit agent remove ends what the agent held: live credentials revoked, pending and approved requests ended, each with its webhook', SCENARIO, async () => {
    const add = await b.jit('agent', 'add', 'leaver');
    const tok = add.stdout.trim().split('\n').at(-1)!;
    const gate = (ref: string) => b.api(tok, 'POST', '/jit/request', { resource: 'gate', tier: 2, reason: 'push', repo: 'homelab/app', refs: [ref] });
    const live = await gate('refs/heads/agent/a');
    const approved = await gate('refs/heads/agent/b');
    const pending = await gate('refs/heads/agent/c');
    expect((await b.jit('approve', live.body.id)).code).toBe(0);
    expect((await b.jit('approve', approved.body.id)).code).toBe(0);
    const claim = await b.api(tok, 'POST', `/jit/requests/${live.body.id}/claim`);
    expect(claim.status).toBe(201);
    // Another agent's credential is not touched.
    const bystander = await b.api(b.devToken, 'POST', '/jit/request', TIER1_READ);

    const remove = await b.jit('agent', 'remove', 'leaver');
    expect(remove.code, remove.stderr).toBe(0);
    expect(remove.stdout).toContain('Agent "leaver" removed; its token no longer works.');
    expect(remove.stdout).toContain(`Revoked ${live.body.id} (was issued, agent `);
    expect(remove.stdout).toContain(`Revoked ${approved.body.id} (was approved, agent `);
    expect(remove.stdout).toContain(`Revoked ${pending.body.id} (was pending, agent `);
    expect((await b.api(tok, 'GET', `/jit/requests/${live.body.id}`)).status).toBe(401);
    const verify = await b.api('', 'POST', '/gate/verify', { credential: claim.body.credential.credential, repo: 'homelab/app', ref: 'refs/heads/agent/a' });
    expect(verify.body).toEqual({ valid: false, reason: 'revoked' });
    for (const r of [live, approved, pending]) expect((await b.webhook(r.body.id, 'jit.request.revoked')).verified).toBe(true);
    expect(await vaultRead(b.vaultUrl, bystander.body.credential.token)).toBe(200);
  });

  it('tier 3 from the shell: jit approve says a quorum needs distinct approvers and where they vote; the banner does not promise it', SCENARIO, async () => {
    expect(b.server.output()).not.toContain('tier-2/3');
    expect(b.server.output()).toContain('Tier 3 needs 2 distinct approvers: `npx jit approve ID` counts as one');
    const ask = await b.api(b.devToken, 'POST', '/jit/request', { resource: 'vault', tier: 3, reason: 'drop the old db', vault_paths: [{ path: 'homelab/data/prod/db', capabilities: ['delete'] }] });
    expect(ask.status).toBe(202);
    const first = await b.jit('approve', ask.body.id);
    expect(first.code, first.stderr).toBe(0);
    expect(first.stdout).toContain('1 of 2 distinct approvers');
    expect(first.stdout).toContain('local-cli counts as one approver however often jit approve runs');
    expect(first.stdout).toContain('Telegram is not configured');
    const second = await b.jit('approve', ask.body.id);
    expect(second.code).toBe(1);
    expect(second.stderr).toContain('local-cli counts as one approver however often jit approve runs');
    // Telegram and a quorum set in this shell only: the service has neither, so what it says is the service's.
    const shellEnv = { ...b.env, TELEGRAM_BOT_TOKEN: '123456:operator-test-bot-token', TELEGRAM_CHAT_ID: '-100123', TELEGRAM_APPROVERS: '111,222', JIT_TIER3_QUORUM: '3' };
    const withTelegram = await runJit(['approve', ask.body.id], shellEnv, 60_000);
    expect(withTelegram.code).toBe(1);
    expect(withTelegram.stderr).toContain('Telegram is not configured in the service');
    expect(withTelegram.stderr).not.toContain('-100123');
    const show = await runJit(['requests', 'show', ask.body.id], shellEnv, 60_000);
    expect(show.stdout).toMatch(/^Quorum:\s+1 of 2 distinct approvers$/m);
    expect((await b.api(b.devToken, 'GET', `/jit/requests/${ask.body.id}`)).body.status).toBe('pending');
  });
});

describe('with VAULT_ADDR: the CLI reaches Vault itself', () => {
  const CHAT = '-100555';
  const BOT_TOKEN = '7000000003:AAH-operator-token_abcdefghijklmnopqrs';
  let vault: DevVault;
  let tg: TelegramEmulator;
  let b: Broker;
  beforeAll(async () => {
    vault = await startDevVault({ host: '127.0.0.1', port: 0, rootToken: 'hvs.operator-test-root', seed: { kv: { 'homelab/docker/registry': { username: 'u', password: 'p' } } } });
    tg = await startTelegramEmulator({ token: BOT_TOKEN, chats: [{ id: Number(CHAT), type: 'supergroup', title: 'approvals' }], maxLongPollSeconds: 1 });
    b = await startBroker(() => ({
      VAULT_ADDR: vault.url,
      VAULT_TOKEN: vault.rootToken,
      TELEGRAM_BOT_TOKEN: BOT_TOKEN,
      TELEGRAM_CHAT_ID: CHAT,
      TELEGRAM_APPROVERS: '111,222',
      TELEGRAM_API_ROOT: tg.url,
    }));
  });
  afterAll(async () => {
    await b?.close();
    await tg?.close();
    await vault?.close();
  });

  it('jit requests revoke ID revokes the token and deletes its policy at once', SCENARIO, async () => {
    const issued = await b.api(b.devToken, 'POST', '/jit/request', TIER1_READ);
    expect(issued.status).toBe(201);
    const token: string = issued.body.credential.token;
    const policy = (issued.body.credential.policies as string[]).find((p) => p.startsWith('jit-'))!;
    expect(await vaultRead(vault.url, token)).toBe(200);
    const policyStatus = async () => (await fetch(`${vault.url}/v1/sys/policies/acl/${policy}`, { headers: { 'X-Vault-Token': vault.rootToken } })).status;
    expect(await policyStatus()).toBe(200);

    const revoke = await b.jit('requests', 'revoke', issued.body.id);
    expect(revoke.code, revoke.stderr).toBe(0);
    expect(revoke.stdout).toContain(`Revoked ${issued.body.id} (was issued, agent dev): token revoked in Vault and its policy deleted.`);
    // No sweep involved: dead the moment the command returns.
    expect(await vaultRead(vault.url, token)).toBe(403);
    expect(await policyStatus()).toBe(404);
    expect((await b.jit('requests', 'show', issued.body.id)).stdout).toMatch(/^Credential:\s+vault_token, ended/m);
    expect((await b.webhook(issued.body.id, 'jit.request.revoked')).verified).toBe(true);
  });

  // Last in this block: it stops the service.
  it('from a shell with only JIT_DB: tier 3 names the service\'s Telegram; with the service down a revocation says the token is still live, a refused Vault login exits 1, and re-running finishes the job', SCENARIO, async () => {
    const only = { JIT_DB: b.env.JIT_DB! };
    const tier3 = await b.api(b.devToken, 'POST', '/jit/request', { resource: 'vault', tier: 3, reason: 'drop the old db', vault_paths: [{ path: 'homelab/data/prod/db', capabilities: ['delete'] }] });
    expect(tier3.status).toBe(202);
    const vote = await runJit(['approve', tier3.body.id], only, 60_000);
    expect(vote.code, vote.stderr).toBe(0);
    expect(vote.stdout).toContain(`The remaining 1 vote must come from the approvers in Telegram (TELEGRAM_APPROVERS, in chat ${CHAT}).`);

    const issued = await b.api(b.devToken, 'POST', '/jit/request', TIER1_READ);
    expect(issued.status).toBe(201);
    const { id } = issued.body;
    const token: string = issued.body.credential.token;
    expect(await b.server.stop()).toBe(0);

    const deferred = await runJit(['requests', 'revoke', id], only, 60_000);
    expect(deferred.code, deferred.stderr).toBe(0);
    expect(deferred.stdout).not.toContain('dev mode');
    expect(deferred.stdout).toContain(`the token is still valid in Vault (${vault.url})`);
    expect(await vaultRead(vault.url, token)).toBe(200);

    // This Vault has no AppRole: the login is refused.
    const refused = await runJit(['requests', 'revoke', id], { ...only, VAULT_ADDR: vault.url, VAULT_ROLE_ID: 'jit-broker', VAULT_SECRET_ID: 'not-a-secret-id' }, 60_000);
    expect(refused.stderr).toContain(`could not log in to Vault at ${vault.url}`);
    expect(refused.code).toBe(1);
    expect(await vaultRead(vault.url, token)).toBe(200);

    const retried = await runJit(['requests', 'revoke', id], { ...only, VAULT_ADDR: vault.url, VAULT_TOKEN: vault.rootToken }, 60_000);
    expect(retried.code, retried.stderr).toBe(0);
    expect(retried.stdout).toContain(`${id}`);
    expect(retried.stdout).toContain('token revoked in Vault and its policy deleted');
    expect(await vaultRead(vault.url, token)).toBe(403);
  });
});
