import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { PublicKeyCredentialRequestOptionsJSON } from '@simplewebauthn/server';
import { addApprover } from '../../../src/broker/approvers.ts';
import { createConsole } from '../../../src/console/app.ts';
import { requireStepUpReachable } from '../../../src/broker/passkeys.ts';
import { loadConfig } from '../../../src/config/config.ts';
import { startBroker } from '../../../src/main.ts';
import { CONSOLE_ORIGIN, decide, form, pending, postJson, send, signedIn, statusOf, useConsole, type Console, type SignedIn } from '../../helpers/console-http.ts';
import { openSse } from '../../helpers/sse.ts';

/**
 * A security review of the operator console (issue 20, SPEC §12), as an
 * attacker and as a tired operator: every route of the console's routers
 * without a session, CSP on every HTML answer (error pages and 404s too),
 * no inline script or style in the templates, escaping of agent-written
 * text on every page, step-up with another approver's passkey and racing
 * submits, bad input (oversized, malformed JSON, unknown fields, weird ids)
 * always a 4xx, and no enrolment token in the broker's log. Real app, real
 * sessions (a software authenticator the broker verifies for real).
 */

const ORIGIN = CONSOLE_ORIGIN;
const XSS = '"><img src=x onerror=alert(1)><script>alert(2)</script>';

/** An approver enrolled through the link a browser opens, signed in. */
const enrolSigned = (k: Console, name: string) => signedIn(k, name, { openLink: true });

/** The CSP every HTML answer must carry: present, no inline script or style. */
function expectCsp(res: Response, what: string): void {
  const csp = res.headers.get('content-security-policy');
  expect(csp, `${what}: no Content-Security-Policy`).toBeTruthy();
  expect(csp!, what).toMatch(/script-src 'self'/);
  expect(csp!, what).not.toMatch(/unsafe-inline|unsafe-eval/);
}

describe('console review: routes, headers and templates', () => {
  let k: Console;
  let ann: SignedIn;
  useConsole(async (c) => {
    k = c;
    ann = await enrolSigned(k, 'ann');
  });

  it("every route of the console's routers, without a session: a page is sent to sign-in, data is 401, a state change is refused and changes nothing", async () => {
    // The routes as the routers register them (not a hand-kept list): only the static files and the two ceremonies are public.
    const routes = createConsole(k.h.broker.deps).routes.filter((r) => r.method !== 'ALL');
    const isPublic = (p: string) => p.startsWith('/static/') || p === '/sign-in' || p.startsWith('/sign-in/') || p.startsWith('/enrol/');
    const guarded = routes.filter((r) => !isPublic(r.path));
    expect(guarded.length).toBeGreaterThan(15);
    const id = await pending(k);
    const auditBefore = (await k.h.broker.deps.storage.audit.last())!.seq;
    for (const r of guarded) {
      const path = `/console${r.path === '/' ? '' : r.path}`
        .replace(':id', r.path.includes('requests') || r.path.includes('credentials') ? id : 'x')
        .replace(':name', 'moltbot');
      const dataOnly = path.startsWith('/console/api/') || path === '/console/events';
      if (r.method === 'GET') {
        const data = await send(k, 'GET', path, { accept: 'application/json' });
        expect(data.status, `GET ${path} (data)`).toBe(401);
        expect(data.headers.get('content-type')).toMatch(/problem\+json/);
        await data.body?.cancel();
        if (dataOnly) continue;
        const page = await send(k, 'GET', path);
        expect(page.status, `GET ${path} (page)`).toBe(303);
        expect(page.headers.get('location')).toBe('/console/sign-in');
      } else {
        // A forged form post from another site, with a made-up CSRF token: refused.
        const res = await send(k, r.method, path, { body: form({ csrf: 'x', decision: 'approve', name: 'evil' }), headers: { origin: 'https://evil.example' } });
        expect([401, 403], `${r.method} ${path}`).toContain(res.status);
        expectCsp(res, `${r.method} ${path}`);
      }
    }
    expect(await statusOf(k, id)).toBe('pending');
    expect((await k.h.broker.deps.storage.audit.last())!.seq).toBe(auditBefore);
    expect(await k.h.broker.deps.agents.get('evil')).toBeUndefined();
  });

  it('every HTML answer carries the CSP and no-store: each page signed in, the refusal pages, the enrolment page of a bad link, and 404s under /console', async () => {
    const id = await pending(k);
    const pages = ['/console', `/console/requests/${id}`, `/console/requests/${id}/story`, '/console/credentials', '/console/history', '/console/history?q=x', '/console/agents', '/console/agents/moltbot/remove', '/console/audit', '/console/webhooks', '/console/keys', '/console/policies'];
    for (const p of pages) {
      const res = await send(k, 'GET', p, { cookie: ann.cookie });
      expect(res.status, p).toBe(200);
      expectCsp(res, p);
      expect(res.headers.get('cache-control'), p).toBe('no-store');
      await res.body?.cancel();
    }
    const errors: [string, number][] = [
      ['/console/requests/req_nope', 404],
      ['/console/requests/req_nope/story', 404],
      ['/console/agents/nobody/remove', 404],
      ['/console/history?bogus=1', 400],
      ['/console/no-such-page', 404],
      ['/console/requests/x/y/z', 404],
    ];
    for (const [p, status] of errors) {
      const res = await send(k, 'GET', p, { cookie: ann.cookie });
      expect(res.status, p).toBe(status);
      expect(res.headers.get('content-type'), `${p}: a page load gets a page`).toMatch(/^text\/html/);
      expectCsp(res, p);
      await res.body?.cancel();
    }
    const slash = await send(k, 'GET', '/console/', { cookie: ann.cookie });
    expect([200, 404]).toContain(slash.status);
    expectCsp(slash, '/console/');
    const bad = await send(k, 'GET', '/console/enrol/not-a-real-link-aaaaaaaaaaaaaaaa');
    expect(bad.status).toBe(404);
    expectCsp(bad, 'enrol page of a bad link');
    const signIn = await send(k, 'GET', '/console/sign-in');
    expectCsp(signIn, 'sign-in');
  });

  it('the live list fragment (HTML with forms and the CSRF token) carries the CSP, no framing and no-store like the pages', async () => {
    const res = await send(k, 'GET', '/console/api/pending', { cookie: ann.cookie });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/html/);
    expectCsp(res, '/console/api/pending');
    expect(res.headers.get('content-security-policy')).toMatch(/frame-ancestors 'none'/);
    expect(res.headers.get('cache-control')).toBe('no-store');
    expect(res.headers.get('x-content-type-options')).toBe('nosniff');
  });

  it("a removed approver's unused enrolment link no longer works", async () => {
    const { token } = await addApprover(k.h.broker.deps, { name: 'gone' });
    const { removeApprover } = await import('../../../src/broker/approvers.ts');
    await removeApprover(k.h.broker.deps, 'gone');
    expect((await send(k, 'GET', `/console/enrol/${token}`)).status).toBe(404);
    expect((await postJson(k, `/console/enrol/${token}/options`)).res.status).toBe(404);
  });

  it('a data request to an unknown console path is 404 problem+json (not a page)', async () => {
    const res = await send(k, 'GET', '/console/api/nothing-here', { cookie: ann.cookie, accept: 'application/json' });
    expect(res.status).toBe(404);
    expect(res.headers.get('content-type')).toMatch(/problem\+json/);
  });

  it('the templates have no inline script, inline style or event-handler attribute', () => {
    const dir = join(import.meta.dirname, '..', '..', '..', 'src', 'console');
    const files = (readdirSync(dir, { recursive: true }) as string[]).filter((f) => f.endsWith('.ts'));
    expect(files.length).toBeGreaterThan(10);
    for (const f of files) {
      const text = readFileSync(join(dir, f), 'utf8');
      expect(text, f).not.toMatch(/\sstyle=/i);
      expect(text, f).not.toMatch(/<[a-z][^>]*\son[a-z]+=/i);
      expect(text, f).not.toMatch(/<script(?![^>]*\ssrc=)[^>]*>/i);
      expect(text, f).not.toMatch(/href=["']?javascript:/i);
    }
  });

  it('agent-written text is inert on every page that shows it: no tag, no attribute breaks out', async () => {
    const spaceless = '"><img/src=x/onerror=alert(1)>';
    const id = await pending(k, { reason: `please ${XSS} javascript:alert(3)`, session_key: `hook:jit:moltbot${spaceless}` });
    const added = await send(k, 'POST', '/console/agents', { cookie: ann.cookie, body: form({ csrf: ann.csrf, name: 'xss-agent', session: spaceless }), headers: { origin: ORIGIN } });
    expect(added.status).toBe(200);
    expect(await added.text()).not.toContain('<img');
    const denied = await pending(k, { reason: XSS });
    expect((await decide(k, denied, ann.cookie, { decision: 'deny', csrf: ann.csrf, reason: XSS })).status).toBe(200);
    for (const p of ['/console', `/console/requests/${id}`, `/console/requests/${id}/story`, `/console/requests/${denied}/story`, `/console/requests/${denied}`, '/console/history', `/console/history?q=${encodeURIComponent(XSS)}`, '/console/audit', '/console/agents', '/console/agents/xss-agent/remove']) {
      const res = await send(k, 'GET', p, { cookie: ann.cookie });
      expect(res.status, p).toBe(200);
      const text = await res.text();
      expect(text, p).not.toContain('<img');
      expect(text, p).not.toContain('<script>');
      expect(text, p).not.toMatch(/<a [^>]*href="javascript:/i);
    }
  });

  it('sign-out needs the CSRF token; with it the session ends on the server (the old cookie no longer works)', async () => {
    const bob = await enrolSigned(k, 'bob');
    const forged = await send(k, 'POST', '/console/sign-out', { cookie: bob.cookie, body: form({}), headers: { origin: ORIGIN } });
    expect(forged.status).toBe(403);
    expect((await send(k, 'GET', '/console', { cookie: bob.cookie })).status).toBe(200);
    const out = await send(k, 'POST', '/console/sign-out', { cookie: bob.cookie, body: form({ csrf: bob.csrf }), headers: { origin: ORIGIN } });
    expect(out.status).toBe(303);
    expect(out.headers.get('set-cookie')).toMatch(/jit_console=;/);
    expect((await send(k, 'GET', '/console', { cookie: bob.cookie })).status).toBe(303);
    expect((await send(k, 'GET', '/console/api/pending', { cookie: bob.cookie, accept: 'application/json' })).status).toBe(401);
  });

  it("no enrolment token reaches the broker's log (the access log writes every request's path)", async () => {
    const carl = await enrolSigned(k, 'carl');
    expect(k.h.logs()).toContain('/console/enrol/');
    expect(k.h.logs()).not.toContain(carl.token);
  });
});

describe('console review: sessions and votes over HTTP', () => {
  let k: Console;
  useConsole((c) => {
    k = c;
  });

  it('one person racing two Approve submits on a tier-3 request counts once: it stays pending at 1 of 2', async () => {
    const ann = await enrolSigned(k, 'ann');
    const id = await pending(k, { tier: 3, vault_paths: [{ path: 'homelab/data/prod/db', capabilities: ['delete'] }], ttl: '5m' });
    const results = await Promise.all([1, 2, 3].map(() => decide(k, id, ann.cookie, { decision: 'approve', csrf: ann.csrf }, { accept: 'application/json' })));
    const statuses = results.map((r) => r.status).sort();
    expect(statuses).toEqual([200, 409, 409]);
    expect(await statusOf(k, id)).toBe('pending');
    expect((await k.h.broker.deps.storage.votes.approvals(id)).length).toBe(1);
  });

  it("a form post from a sandboxed or privacy-stripped context (Origin: null) is refused even with the session's CSRF token", async () => {
    const bob = await enrolSigned(k, 'bob');
    const id = await pending(k);
    const res = await send(k, 'POST', `/console/requests/${id}/decision`, { cookie: bob.cookie, body: form({ decision: 'approve', csrf: bob.csrf }), headers: { origin: 'null' } });
    expect(res.status).toBe(403);
    expect(await statusOf(k, id)).toBe('pending');
  });

  it("sign-out, approver removal and the idle timeout end an open live stream too (it carried on for its whole lifetime): no change signal after the session ends", async () => {
    for (const how of ['sign-out', 'remove', 'idle'] as const) {
      const who = await enrolSigned(k, `stream-${how}`);
      const reader = await openSse(`${k.h.broker.url}/console/events`, { cookie: `jit_console=${who.cookie}` });
      expect(reader.status).toBe(200);
      expect((await reader.next()).event).toBe('ready');
      if (how === 'sign-out') {
        const out = await send(k, 'POST', '/console/sign-out', { cookie: who.cookie, body: form({ csrf: who.csrf }), headers: { origin: ORIGIN } });
        expect(out.status).toBe(303);
      } else if (how === 'idle') {
        // Nobody touched the console for longer than JIT_CONSOLE_IDLE_TIMEOUT (30m): the open stream is not use.
        k.h.clock.advance(30 * 60_000 + 1000);
      } else {
        const { removeApprover } = await import('../../../src/broker/approvers.ts');
        await removeApprover(k.h.broker.deps, `stream-${how}`);
      }
      // The session's end is itself a change (it is audited): the stream checks the session then, and ends.
      await pending(k);
      await reader.ended;
      expect(reader.events.map((e) => e.event)).toEqual(['ready']);
    }
  });

  it('a session kept busy still ends at JIT_CONSOLE_SESSION_MAX (12h by default), then its cookie is cleared', async () => {
    const carl = await enrolSigned(k, 'carl');
    let status = 200;
    let steps = 0;
    while (status === 200 && steps < 40) {
      k.h.clock.advance(20 * 60_000);
      steps += 1;
      const res = await send(k, 'GET', '/console/credentials', { cookie: carl.cookie });
      status = res.status;
      if (status === 303) expect(res.headers.get('set-cookie')).toMatch(/jit_console=;/);
      await res.body?.cancel();
    }
    expect(status).toBe(303);
    // 12h is 36 steps of 20 minutes: not one step more or less.
    expect(steps).toBe(36);
  });
});

describe('console review: bad input is a 4xx with a clear message, never a 5xx', () => {
  let k: Console;
  let ann: SignedIn;
  useConsole(async (c) => {
    k = c;
    ann = await enrolSigned(k, 'ann');
  });

  it('malformed JSON, a wrong shape and unknown fields in the ceremony endpoints: 400 problem+json saying what was wrong', async () => {
    const broken = await postJson<{ detail: string }>(k, '/console/sign-in/finish', '{"id":');
    expect(broken.res.status).toBe(400);
    expect(broken.json.detail).toMatch(/must be JSON/);
    const shape = await postJson<{ detail: string }>(k, '/console/sign-in/finish', { id: 'abc' });
    expect(shape.res.status).toBe(400);
    expect(shape.json.detail).toMatch(/sign-in/);
    const opts = await postJson<PublicKeyCredentialRequestOptionsJSON>(k, '/console/sign-in/options');
    const assertion = ann.auth.assert(opts.json);
    const extra = await postJson<{ detail: string }>(k, '/console/sign-in/finish', { ...assertion, admin: true });
    expect(extra.res.status).toBe(400);
    expect(extra.json.detail).toMatch(/admin|unrecognized/i);
    const { token } = await addApprover(k.h.broker.deps, { name: 'dora' });
    const enrolBroken = await postJson<{ detail: string }>(k, `/console/enrol/${token}/finish`, '[1,2');
    expect(enrolBroken.res.status).toBe(400);
    const enrolNull = await postJson<{ detail: string }>(k, `/console/enrol/${token}/finish`, 'null');
    expect(enrolNull.res.status).toBe(400);
    // The link is still good after all that.
    expect((await send(k, 'GET', `/console/enrol/${token}`)).status).toBe(200);
  });

  it('an oversized body is 413 and changes nothing', async () => {
    const id = await pending(k);
    const res = await decide(k, id, ann.cookie, { decision: 'deny', csrf: ann.csrf, reason: 'x'.repeat(200_000) });
    expect(res.status).toBe(413);
    expect(await statusOf(k, id)).toBe('pending');
  });

  it('an unknown field or a bad value in the decision form: 400 with the field named, nothing changed', async () => {
    const id = await pending(k);
    const unknown = await decide(k, id, ann.cookie, { decision: 'approve', csrf: ann.csrf, grant_all: 'yes' });
    expect(unknown.status).toBe(400);
    expectCsp(unknown, 'decision refused');
    expect(await unknown.text()).toMatch(/grant_all|unrecognized/i);
    const weird = await decide(k, id, ann.cookie, { decision: 'approve', csrf: ann.csrf, ttl: 'forever' });
    expect(weird.status).toBe(400);
    for (const ttl of ['0', '-5', '99999999999999999999', '1e9', '15m15m', ' ']) {
      const res = await decide(k, id, ann.cookie, { decision: 'approve', csrf: ann.csrf, ttl: ttl === ' ' ? '2h' : ttl }, { accept: 'application/json' });
      expect(res.status, `ttl ${ttl}`).toBeGreaterThanOrEqual(400);
      expect(res.status, `ttl ${ttl}`).toBeLessThan(500);
    }
    const dropAll = await decide(k, id, ann.cookie, { decision: 'approve', csrf: ann.csrf, drop_path: 'homelab/data/apps/web' }, { accept: 'application/json' });
    expect(dropAll.status, 'dropping every path').toBeGreaterThanOrEqual(400);
    expect(dropAll.status).toBeLessThan(500);
    const assertion = await decide(k, id, ann.cookie, { decision: 'approve', csrf: ann.csrf, assertion: '{not json' });
    expect(assertion.status).toBe(400);
    const decision = await decide(k, id, ann.cookie, { decision: 'maybe', csrf: ann.csrf }, { accept: 'application/json' });
    expect(decision.status).toBe(400);
    expect(decision.headers.get('content-type')).toMatch(/problem\+json/);
    expect(await statusOf(k, id)).toBe('pending');
  });

  it('weird ids in paths (markup, traversal, bad percent-encoding, very long): 4xx, nothing echoed raw', async () => {
    const paths = [
      `/console/requests/${encodeURIComponent(XSS)}`,
      `/console/requests/${encodeURIComponent(XSS)}/story`,
      '/console/requests/..%2F..%2Fagents',
      '/console/requests/%E0%A4%A',
      `/console/requests/req_${'a'.repeat(5000)}`,
      `/console/agents/${encodeURIComponent(XSS)}/remove`,
    ];
    for (const p of paths) {
      const res = await send(k, 'GET', p, { cookie: ann.cookie });
      expect(res.status, p).toBeGreaterThanOrEqual(400);
      expect(res.status, p).toBeLessThan(500);
      expect(await res.text(), p).not.toContain('<img');
    }
    for (const p of [`/console/credentials/${encodeURIComponent(XSS)}/revoke`, '/console/webhooks/%E0%A4%A/retry', `/console/requests/${encodeURIComponent(XSS)}/decision`, `/console/requests/${encodeURIComponent(XSS)}/step-up`]) {
      const res = await send(k, 'POST', p, { cookie: ann.cookie, body: form({ csrf: ann.csrf, decision: 'deny' }), headers: { origin: ORIGIN } });
      expect(res.status, p).toBeGreaterThanOrEqual(400);
      expect(res.status, p).toBeLessThan(500);
      expect(await res.text(), p).not.toContain('<img');
    }
  });
});

describe('console review: step-up (JIT_PASSKEY_TIER=2)', () => {
  let k: Console;
  let ann: SignedIn;
  let bob: SignedIn;
  useConsole(async (c) => {
    k = c;
    ann = await enrolSigned(k, 'ann');
    bob = await enrolSigned(k, 'bob');
  }, { JIT_PASSKEY_TIER: '2' });

  async function stepUpOptions(who: SignedIn, id: string, fields: Record<string, string> = {}): Promise<PublicKeyCredentialRequestOptionsJSON> {
    const res = await send(k, 'POST', `/console/requests/${id}/step-up`, { cookie: who.cookie, accept: 'application/json', headers: { origin: ORIGIN }, body: form({ csrf: who.csrf, decision: 'approve', ...fields }) });
    expect(res.status).toBe(200);
    return (await res.json()) as PublicKeyCredentialRequestOptionsJSON;
  }

  it("another approver's passkey over my step-up challenge is refused, audited, nothing changed", async () => {
    const id = await pending(k);
    const options = await stepUpOptions(ann, id);
    const foreign = bob.auth.assert(options, { credentialId: bob.auth.credentials[0]!.id });
    const res = await decide(k, id, ann.cookie, { decision: 'approve', csrf: ann.csrf, assertion: JSON.stringify(foreign) });
    expect(res.status).toBe(403);
    expect(await res.text()).toMatch(/not one of the signed-in approver/);
    expect(await statusOf(k, id)).toBe('pending');
    expect((await k.h.broker.deps.storage.votes.of(id)).length).toBe(0);
    const refused = (await k.h.broker.deps.storage.audit.ofRequest(id, 0, 100)).filter((e) => e.event === 'stepup.refused');
    expect(refused).toHaveLength(1);
  });

  it("my step-up assertion submitted in another approver's session is refused", async () => {
    const id = await pending(k);
    const mine = ann.auth.assert(await stepUpOptions(ann, id));
    const res = await decide(k, id, bob.cookie, { decision: 'approve', csrf: bob.csrf, assertion: JSON.stringify(mine) });
    expect(res.status).toBe(403);
    expect(await statusOf(k, id)).toBe('pending');
  });

  it('a step-up made for Deny is refused (only approvals have one); Deny counts without it', async () => {
    const id = await pending(k);
    const res = await send(k, 'POST', `/console/requests/${id}/step-up`, { cookie: ann.cookie, accept: 'application/json', headers: { origin: ORIGIN }, body: form({ csrf: ann.csrf, decision: 'deny' }) });
    expect(res.status).toBe(400);
    expect((await decide(k, id, ann.cookie, { decision: 'deny', csrf: ann.csrf })).status).toBe(200);
    expect(await statusOf(k, id)).toBe('denied');
  });

  it('two racing submits of one approval with its step-up: approved once, the other refused; a late approval of a decided request changes nothing', async () => {
    const id = await pending(k);
    const assertion = JSON.stringify(ann.auth.assert(await stepUpOptions(ann, id)));
    const [a, b] = await Promise.all([
      decide(k, id, ann.cookie, { decision: 'approve', csrf: ann.csrf, assertion }, { accept: 'application/json' }),
      decide(k, id, ann.cookie, { decision: 'approve', csrf: ann.csrf, assertion }, { accept: 'application/json' }),
    ]);
    const statuses = [a.status, b.status].sort();
    expect(statuses[0]).toBe(200);
    expect([403, 409]).toContain(statuses[1]);
    expect(await statusOf(k, id)).toBe('approved');
    const approvedEvents = (await k.h.broker.deps.storage.audit.ofRequest(id, 0, 100)).filter((e) => e.event === 'request.approved');
    expect(approvedEvents).toHaveLength(1);
    const late = await decide(k, id, bob.cookie, { decision: 'deny', csrf: bob.csrf });
    expect(late.status).toBe(409);
    expect(await statusOf(k, id)).toBe('approved');
  });

  it("the live credentials page names a Vault token without its accessor (an identifier that can revoke it; the audit and story pages leave it out too)", async () => {
    const id = await pending(k);
    expect((await decide(k, id, ann.cookie, { decision: 'approve', csrf: ann.csrf, assertion: JSON.stringify(ann.auth.assert(await stepUpOptions(ann, id))) })).status).toBe(200);
    const claim = await k.h.call('POST', `/jit/requests/${id}/claim`, { token: k.agent });
    expect(claim.status).toBe(201);
    const accessor = (await k.h.broker.deps.storage.credentials.forRequest(id))!.accessor!;
    expect(accessor).toBeTruthy();
    const page = await (await send(k, 'GET', '/console/credentials', { cookie: ann.cookie })).text();
    expect(page).toContain(`<code>${id}</code>`);
    expect(page).not.toContain(accessor);
    expect(page).not.toContain(claim.body.credential.token);
  });

  it('revoke-all without a step-up, or with a step-up made for an approval, is refused and revokes nothing', async () => {
    const id = await pending(k);
    expect((await decide(k, id, ann.cookie, { decision: 'approve', csrf: ann.csrf, assertion: JSON.stringify(ann.auth.assert(await stepUpOptions(ann, id))) })).status).toBe(200);
    expect((await k.h.call('POST', `/jit/requests/${id}/claim`, { token: k.agent })).status).toBe(201);
    const none = await send(k, 'POST', '/console/credentials/revoke-all', { cookie: ann.cookie, body: form({ csrf: ann.csrf }), headers: { origin: ORIGIN } });
    expect(none.status).toBe(403);
    const other = await pending(k);
    const wrong = JSON.stringify(ann.auth.assert(await stepUpOptions(ann, other)));
    const res = await send(k, 'POST', '/console/credentials/revoke-all', { cookie: ann.cookie, body: form({ csrf: ann.csrf, assertion: wrong }), headers: { origin: ORIGIN } });
    expect(res.status).toBe(403);
    expect(await statusOf(k, id)).toBe('issued');
  });
});

describe('console review: a misconfigured console never silently blocks approvals', () => {
  it('the service refuses to start with JIT_PASSKEY_TIER and a public URL that cannot be a relying party (an IP address), in one line on JIT_PUBLIC_URL', async () => {
    // Otherwise Telegram and `jit approve` send every such approval to a console that answers 503: those requests could never be approved.
    await expect(startBroker({ JIT_DB: ':memory:', JIT_PASSKEY_TIER: '3', JIT_PUBLIC_URL: 'http://127.0.0.1:8787' })).rejects.toThrow(
      /JIT_PASSKEY_TIER: .*IP address 127\.0\.0\.1.*JIT_PUBLIC_URL=http:\/\/localhost:8787/,
    );
    const check = (env: Record<string, string>) => () => requireStepUpReachable(loadConfig({ JIT_DB: ':memory:', ...env }));
    expect(check({ JIT_PASSKEY_TIER: '2', JIT_HOST: '0.0.0.0', VAULT_ADDR: 'http://127.0.0.1:8200', VAULT_TOKEN: 'x' })).toThrow(/JIT_PUBLIC_URL/);
    expect(check({ JIT_PASSKEY_TIER: '3', JIT_PUBLIC_URL: 'http://[::1]:8787' })).toThrow(/IP address ::1/);
    // A host name, dev mode's localhost default, or no step-up: fine (with an IP address only the console is off; Telegram and the CLI decide on).
    expect(check({ JIT_PASSKEY_TIER: '3', JIT_PUBLIC_URL: 'https://jit.example.org' })).not.toThrow();
    expect(check({ JIT_PASSKEY_TIER: '3' })).not.toThrow();
    expect(check({ JIT_PUBLIC_URL: 'http://127.0.0.1:8787' })).not.toThrow();
    // The CLI's own shell may set JIT_PASSKEY_TIER without JIT_PUBLIC_URL (it takes the service's recorded URL): loadConfig alone accepts it.
    expect(() => loadConfig({ JIT_DB: ':memory:', JIT_PASSKEY_TIER: '3', VAULT_ADDR: 'http://127.0.0.1:8200', VAULT_TOKEN: 'x' })).not.toThrow();
  });
});
