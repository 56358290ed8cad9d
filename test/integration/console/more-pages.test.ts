import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addApprover } from '../../../src/broker/approvers.ts';
import { beginEnrolment, finishEnrolment } from '../../../src/broker/passkeys.ts';
import { SESSION_COOKIE } from '../../../src/console/session.ts';
import { AUDIT_PAGE_SIZE, AUDIT_VERIFY_MAX_AGE_MS } from '../../../src/console/pages/audit.ts';
import { HISTORY_PAGE_SIZE } from '../../../src/console/pages/history.ts';
import { SoftAuthenticator } from '../../helpers/soft-authenticator.ts';
import { startWebhookReceiver, type WebhookReceiver } from '../../fakes/webhook-receiver.ts';
import { ROOT_TOKEN, startHarness, type Harness } from '../../helpers/broker-harness.ts';
import { freshPostgresDatabase } from '../../helpers/postgres.ts';

/**
 * The console's reference pages over real HTTP, through the real console
 * (its session middleware, CSRF and Origin checks, layout) on the whole
 * broker (dev Vault, real webhook receiver), on both engines. The approver
 * is enrolled with a software passkey (src/broker/passkeys.ts) and the
 * session that starts is sent as the browser would: its cookie, and the
 * console's Origin on every POST.
 */
const HOOKS_TOKEN = 'openclaw-hooks-token-for-console-pages-0123456789';
const PUBLIC_URL = 'http://localhost:8787';
const EVIL_REASON = 'deploy <script>alert("x")</script> \u202Egnp.exe\u202C & "quotes"\nsecond line';

const ENGINES = [
  { name: 'SQLite', database: async (): Promise<Record<string, string>> => ({}) },
  { name: 'PostgreSQL', database: async (): Promise<Record<string, string>> => ({ JIT_DATABASE_URL: await freshPostgresDatabase('jit_pages'), JIT_KEY_ENCRYPTION_KEY: randomBytes(32).toString('base64') }) },
];

describe.each(ENGINES)('console reference pages on $name', ({ database }) => {
  let h: Harness;
  let receiver: WebhookReceiver;
  let base: string;
  let cookie: string;
  let agentToken: string;
  let approverId: string;
  /** The session's CSRF token. */
  let CSRF: string;
  /** Every page body fetched, for the secret checks at the end. */
  const bodies: { path: string; body: string }[] = [];

  async function get(path: string, o: { signedIn?: boolean } = {}): Promise<{ status: number; body: string; headers: Headers }> {
    const res = await fetch(`${base}${path}`, { redirect: 'manual', headers: { accept: 'text/html', ...(o.signedIn === false ? {} : { cookie }) } });
    const body = await res.text();
    bodies.push({ path, body });
    return { status: res.status, body, headers: res.headers };
  }

  async function post(path: string, form: Record<string, string>, o: { signedIn?: boolean } = {}): Promise<{ status: number; body: string; headers: Headers }> {
    const res = await fetch(`${base}${path}`, { method: 'POST', body: new URLSearchParams(form), redirect: 'manual', headers: { origin: PUBLIC_URL, ...(o.signedIn === false ? {} : { cookie }) } });
    const body = await res.text();
    bodies.push({ path: `POST ${path}`, body });
    return { status: res.status, body, headers: res.headers };
  }

  async function request(body: Record<string, unknown>, token = agentToken) {
    return h.call('POST', '/jit/request', { token, body });
  }

  const tier2 = (reason: string) => ({ resource: 'vault', tier: 2, reason, vault_paths: [{ path: 'homelab/data/apps/web', capabilities: ['read', 'update'] }], ttl: '15m' });

  /** Polls `check` until it holds (a real dispatcher runs in the broker); generous bound. */
  async function until(check: () => Promise<boolean>, what: string, ms = 20_000): Promise<void> {
    const end = Date.now() + ms;
    while (!(await check())) {
      if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  beforeAll(async () => {
    let harness: Harness | undefined;
    receiver = await startWebhookReceiver({ jwks: () => harness!.broker.deps.keys.jwks(), now: () => harness!.clock.now(), bearer: HOOKS_TOKEN });
    harness = await startHarness({ env: { OPENCLAW_HOOKS_URL: `${receiver.url}/hooks`, OPENCLAW_HOOKS_TOKEN: HOOKS_TOKEN, JIT_MAX_PENDING: '200', JIT_RATE_PER_MINUTE: '1000', JIT_PUBLIC_URL: PUBLIC_URL, ...(await database()) } });
    h = harness;
    agentToken = await h.addAgent('moltbot');
    // A real approver with a passkey (a software authenticator), and the session its enrolment starts.
    const { approver, token } = await addApprover(h.broker.deps, { name: 'alice' });
    approverId = approver.id;
    const authenticator = new SoftAuthenticator({ origin: PUBLIC_URL });
    const created = await finishEnrolment(h.broker.deps, token, authenticator.register((await beginEnrolment(h.broker.deps, token)).options));
    CSRF = created.csrf;
    cookie = `${SESSION_COOKIE}=${created.id}`;
    base = h.broker.url;
  });

  afterAll(async () => {
    if (process.env.DUMP_PAGES && bodies.length) writeFileSync(process.env.DUMP_PAGES, JSON.stringify(bodies));
    await h?.close();
    await receiver?.close();
  });

  describe('the pages', () => {
    it('answer nobody without a session: pages redirect to sign-in, forms are refused and change nothing', async () => {
      for (const path of ['/console/history', '/console/requests/req_x/story', '/console/agents', '/console/agents/moltbot/remove', '/console/audit', '/console/webhooks', '/console/keys', '/console/policies']) {
        const res = await get(path, { signedIn: false });
        expect(res.status, path).toBeGreaterThanOrEqual(300);
        expect(res.status, path).toBeLessThan(400);
        expect(res.headers.get('location'), path).toMatch(/\/console\/sign-in/);
      }
      for (const path of ['/console/agents', '/console/agents/moltbot/remove', '/console/webhooks/evt_x/retry']) {
        const res = await post(path, { name: 'intruder', csrf: CSRF }, { signedIn: false });
        expect([401, 403], path).toContain(res.status);
      }
      expect(await h.broker.deps.agents.get('intruder')).toBeUndefined();
      expect(await h.broker.deps.agents.get('moltbot')).toBeDefined();
    });

    let issuedId: string;
    let vaultToken: string;
    let pendingId: string;
    let gateCredential: string;

    it('history lists requests linking to their story, renders the agent-written reason inertly, and searches by agent, status and text', async () => {
      const issued = await request({ resource: 'vault', tier: 1, reason: EVIL_REASON, vault_paths: [{ path: 'homelab/data/docker/registry', capabilities: ['read'] }], ttl: '10m' });
      expect(issued.status).toBe(201);
      issuedId = issued.body.id;
      vaultToken = issued.body.credential.token;
      const pending = await request(tier2('rotate the zebra key'));
      expect(pending.status).toBe(202);
      pendingId = pending.body.id;

      const page = await get('/console/history');
      expect(page.status).toBe(200);
      expect(page.body).toContain(`href="/console/requests/${issuedId}/story"`);
      expect(page.body).toContain(`href="/console/requests/${pendingId}/story"`);
      expect(page.body).not.toContain('<script>');
      expect(page.body).toContain('&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;');
      // The bidi override is shown as a visible escape, never as the character.
      expect(page.body).not.toContain('\u202E');
      expect(page.body).toContain('\\u{202E}');
      for (const label of ['Agent', 'Status', 'Search']) expect(page.body).toMatch(new RegExp(`<label for="[^"]+">${label}</label>`));

      const byStatus = await get('/console/history?status=pending');
      expect(byStatus.body).toContain(pendingId);
      expect(byStatus.body).not.toContain(issuedId);
      const byText = await get('/console/history?q=ZEBRA');
      expect(byText.body).toContain(pendingId);
      expect(byText.body).not.toContain(issuedId);
      const byAgent = await get('/console/history?agent=other&status=&q=');
      expect(byAgent.body).toContain('No request matches.');
      const byId = await get(`/console/history?q=${issuedId}`);
      expect(byId.body).toContain(issuedId);
      expect(byId.body).not.toContain(pendingId);

      expect((await get('/console/history?status=bogus')).status).toBe(400);
      const unknown = await get('/console/history?evil=1');
      expect(unknown.status).toBe(400);
      expect(unknown.body).toContain('unknown field');
    });

    it('history pages through more requests than fit one page, newest first, keeping the search', async () => {
      const made: string[] = [];
      for (let i = 0; i < HISTORY_PAGE_SIZE + 5; i++) {
        h.clock.advance(1);
        const res = await request(tier2(`paging run ${i}`));
        expect(res.status).toBe(202);
        made.push(res.body.id);
      }
      const first = await get('/console/history?q=paging+run');
      const ids = (body: string) => [...body.matchAll(/href="\/console\/requests\/([^/"]+)\/story"/g)].map((m) => m[1]);
      expect(ids(first.body)).toEqual(made.slice(-HISTORY_PAGE_SIZE).reverse());
      const next = /href="\/console\/history\?([^"]+)" rel="next"/.exec(first.body);
      expect(next).not.toBeNull();
      const second = await get(`/console/history?${next![1]!.replaceAll('&amp;', '&')}`);
      expect(ids(second.body)).toEqual(made.slice(0, 5).reverse());
      expect(second.body).not.toMatch(/rel="next"/);
    });

    it("a request's story shows the request, its votes, credential (no accessor), webhooks and audit entries", async () => {
      const story = await get(`/console/requests/${issuedId}/story`);
      expect(story.status).toBe(200);
      expect(story.body).toContain('homelab/data/docker/registry');
      expect(story.body).toContain('docker-read');
      expect(story.body).toContain('&lt;script&gt;');
      expect(story.body).not.toContain('<script>');
      expect(story.body).toMatch(/<dt>State<\/dt><dd>live<\/dd>/);
      const cred = await h.broker.deps.storage.credentials.forRequest(issuedId);
      expect(cred?.accessor).toBeTruthy();
      expect(story.body).not.toContain(cred!.accessor!);
      expect(story.body).toContain('request.created');

      const decide = await get(`/console/requests/${pendingId}/story`);
      expect(decide.body).toContain(`href="/console/requests/${pendingId}"`);
      expect((await get('/console/requests/req_nope/story')).status).toBe(404);

      const gate = await request({ resource: 'gate', tier: 1, reason: 'push the agent branch', repo: 'homelab/app', refs: ['refs/heads/agent/x', 'refs/heads/agent/y'] });
      expect(gate.status).toBe(201);
      const gateStory = await get(`/console/requests/${gate.body.id}/story`);
      for (const text of ['Repository <code class="agent-text">homelab/app</code>', 'refs/heads/agent/x', 'refs/heads/agent/y', 'agent-branches', 'gate push credential']) expect(gateStory.body).toContain(text);
      expect(gateStory.body).not.toContain(gate.body.credential.credential);
      gateCredential = gate.body.credential.credential;
    });

    let newToken: string;
    it('adding an agent needs the CSRF token, shows the token once with no-store, and audits the approver', async () => {
      const refused = await post('/console/agents', { name: 'builder' });
      expect(refused.status).toBe(403);
      expect(await h.broker.deps.agents.get('builder')).toBeUndefined();
      expect((await post('/console/agents', { name: 'builder', csrf: 'wrong' })).status).toBe(403);
      expect((await post('/console/agents', { name: 'Bad Name', csrf: CSRF })).status).toBe(400);

      const added = await post('/console/agents', { name: 'builder', session: 'hook:jit:builder', csrf: CSRF });
      expect(added.status).toBe(200);
      expect(added.headers.get('cache-control')).toBe('no-store');
      newToken = /value="(jit_[^"]+)"/.exec(added.body)![1]!;
      expect(added.body).toContain('shown only this once');
      expect(await h.broker.deps.agents.authenticate(newToken)).toMatchObject({ name: 'builder' });
      const entry = (await h.broker.deps.storage.audit.page(0, 10_000)).filter((r) => r.event === 'agent.added').pop()!;
      expect(entry.actor).toBe(`approver:${approverId}`);

      expect((await post('/console/agents', { name: 'builder', csrf: CSRF })).status).toBe(409);
      const list = await get('/console/agents');
      expect(list.body).toContain('builder');
      expect(list.body).not.toContain(newToken);
    });

    it('removing an agent says what it ends, then ends its live credentials and pending requests', async () => {
      const confirm = await get('/console/agents/moltbot/remove');
      expect(confirm.status).toBe(200);
      // The Vault token and the gate credential.
      expect(confirm.body).toContain('2 live credentials');
      expect(confirm.body).toMatch(/\d+ pending requests/);
      expect(confirm.body).toMatch(/<button type="submit"[^>]*>Remove<\/button>/);
      expect((await post('/console/agents/moltbot/remove', {})).status).toBe(403);
      expect(await h.broker.deps.agents.get('moltbot')).toBeDefined();

      receiver.script(...Array.from({ length: 3 }, () => ({ status: 410 })));
      const removed = await post('/console/agents/moltbot/remove', { csrf: CSRF });
      expect(removed.status).toBe(200);
      expect(removed.body).toContain('2 live credentials');
      expect(await h.broker.deps.agents.get('moltbot')).toBeUndefined();
      expect((await request(tier2('after removal'))).status).toBe(401);
      // The Vault token is revoked in Vault; the gate credential no longer verifies.
      await expect(h.vaultAs(vaultToken).tokenLookupSelf()).rejects.toThrow();
      const gateVerify = await h.call('POST', '/gate/verify', { body: { credential: gateCredential, repo: 'homelab/app', ref: 'refs/heads/agent/x' } });
      expect(gateVerify.body).toEqual({ valid: false, reason: 'revoked' });
      expect((await h.broker.deps.storage.requests.get(issuedId))!.status).toBe('revoked');
      expect((await h.broker.deps.storage.requests.get(pendingId))!.status).toBe('revoked');
      const story = await get(`/console/requests/${issuedId}/story`);
      expect(story.body).toMatch(/<dt>Revoked<\/dt><dd>at [^;]+; reason: <code class="agent-text">agent &quot;moltbot&quot; was removed by the operator<\/code>/);
      expect(story.body).toContain('request.revoked');
      const entries = await h.broker.deps.storage.audit.page(0, 100_000);
      expect(entries.filter((r) => r.event === 'agent.removed').pop()!.actor).toBe(`approver:${approverId}`);
      expect(entries.filter((r) => r.event === 'request.revoked' && r.request_id === issuedId).pop()!.actor).toBe(`approver:${approverId}`);
      expect((await post('/console/agents/moltbot/remove', { csrf: CSRF })).status).toBe(404);
    });

    it('dead webhooks are listed with Retry, which moves one back to pending and it is delivered', async () => {
      const dead = async () => h.broker.deps.storage.outbox.list({ state: 'dead', limit: 100 });
      await until(async () => (await dead()).length > 0, 'a dead delivery (the receiver answered 410)');
      const row = (await dead())[0]!;
      const page = await get('/console/webhooks');
      expect(page.body).toContain(row.id);
      expect(page.body).toContain(`action="/console/webhooks/${row.id}/retry"`);
      expect(page.body).toMatch(/<button type="submit"[^>]*>Retry<\/button>/);
      expect(page.body).not.toContain(HOOKS_TOKEN);

      expect((await post(`/console/webhooks/${row.id}/retry`, {})).status).toBe(403);
      expect((await h.broker.deps.storage.outbox.get(row.id))!.state).toBe('dead');
      receiver.script();
      const retried = await post(`/console/webhooks/${row.id}/retry`, { csrf: CSRF });
      expect(retried.status).toBe(303);
      expect(retried.headers.get('location')).toBe(`/console/webhooks?retried=${row.id}`);
      await until(async () => (await h.broker.deps.storage.outbox.get(row.id))!.state === 'delivered', 'the re-queued delivery to be delivered');
      const entry = (await h.broker.deps.storage.audit.page(0, 100_000)).filter((r) => r.event === 'webhook.requeued').pop()!;
      expect(entry.actor).toBe(`approver:${approverId}`);
      const again = await post(`/console/webhooks/${row.id}/retry`, { csrf: CSRF });
      expect(again.status).toBe(409);
      expect(again.body).toContain('not dead');
    });

    it('the audit log pages newest first by 50 with the verify status of the chain', async () => {
      const last = (await h.broker.deps.storage.audit.last())!.seq;
      expect(last).toBeGreaterThan(AUDIT_PAGE_SIZE);
      const page = await get('/console/audit');
      expect(page.body).toContain('Chain intact');
      const seqs = (body: string) => [...body.matchAll(/<strong>#(\d+)<\/strong>/g)].map((m) => Number(m[1]));
      const newest = seqs(page.body);
      expect(newest.length).toBe(AUDIT_PAGE_SIZE);
      expect(newest[0]).toBeGreaterThanOrEqual(last);
      const older = await get(`/console/audit?before=${newest[newest.length - 1]}`);
      expect(seqs(older.body)[0]).toBe(newest[newest.length - 1]! - 1);
      expect(older.body).not.toContain('\u202E');
      expect((await get('/console/audit?before=abc')).status).toBe(400);
      if (h.broker.deps.storage.engine !== 'sqlite') return;
      // An altered entry: the cached status stands for its minute, then the page says where the chain breaks.
      h.db.exec("DROP TRIGGER audit_log_no_update; UPDATE audit_log SET actor = 'mallory' WHERE seq = 2");
      expect((await get('/console/audit')).body).toContain('Chain intact');
      h.clock.advance(AUDIT_VERIFY_MAX_AGE_MS + 1);
      const tampered = await get('/console/audit');
      expect(tampered.body).toContain('Audit log TAMPERED</strong> at entry 2: hash does not match the entry content');
    });

    it('signing keys show ids and public keys only; policies show what is in force and the check', async () => {
      const keys = await get('/console/keys');
      const kid = h.broker.deps.keys.current().kid;
      expect(keys.body).toContain(kid);
      expect(keys.body).toContain(h.broker.deps.keys.current().publicJwk.x);
      expect(keys.body).toContain('current');

      const ok = await get('/console/policies');
      expect(ok.body).toContain('<strong>OK</strong>');
      expect(ok.body).toContain('homelab-write');
      writeFileSync(join(h.policiesDir, 'broken.yaml'), 'rules: [ {name: x');
      const broken = await get('/console/policies');
      expect(broken.body).toContain('problem(s)');
      expect(broken.body).toContain('broken.yaml');
      // The policy in force is still the one loaded.
      expect(broken.body).toContain('homelab-write');
    });

    it('no page carries a secret: agent tokens (but on their one add page), Vault tokens, token hashes, the hooks token', async () => {
      const hashes = (await h.broker.deps.storage.agents.list()).map((a) => a.token_hash);
      // The revoked token's accessor is in its audit entries; the console leaves it out.
      const accessor = (await h.broker.deps.storage.credentials.forRequest(issuedId))!.accessor!;
      expect((await h.broker.deps.storage.audit.ofRequest(issuedId, 0, 100)).some((e) => e.data.includes(accessor))).toBe(true);
      expect(bodies.some((b) => b.path === '/console/audit' && b.body.includes('request.revoked'))).toBe(true);
      for (const { path, body } of bodies) {
        for (const secret of [agentToken, vaultToken, gateCredential, ROOT_TOKEN, HOOKS_TOKEN, accessor, ...hashes]) expect(body, path).not.toContain(secret);
        if (path !== 'POST /console/agents') expect(body, path).not.toContain(newToken);
      }
    });
  });
});
