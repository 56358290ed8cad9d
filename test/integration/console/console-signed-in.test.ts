import { describe, expect, it } from 'vitest';
import type { PublicKeyCredentialRequestOptionsJSON } from '@simplewebauthn/server';
import { addApprover, removeApprover } from '../../../src/broker/approvers.ts';
import { CONSOLE_ORIGIN, csrfOf, decide, enrol, pending, postJson, send, sessionCookie, signedIn, statusOf, useConsole, type Console, type SignedIn } from '../../helpers/console-http.ts';

/**
 * The console signed in, over real HTTP: enrolment and sign-in with a
 * software authenticator (verified for real by the broker), the pending
 * list, decisions with CSRF and Origin, narrowing, step-up, the live
 * stream, revoke, sign-out, fixation and a removed approver.
 */

const ORIGIN = CONSOLE_ORIGIN;

describe('signed in (no step-up configured)', () => {
  let k: Console;
  let ann: SignedIn;
  let csrf: string;
  useConsole(async (c) => {
    k = c;
    ann = await signedIn(k, 'ann', { finishesAt: '/console' });
    csrf = ann.csrf;
  });

  it('enrolment sets the session cookie HttpOnly, SameSite=Strict, Path=/console, not Secure on http://localhost', () => {
    expect(ann.attributes).toMatch(/HttpOnly/);
    expect(ann.attributes).toMatch(/SameSite=Strict/);
    expect(ann.attributes).toMatch(/Path=\/console/);
    expect(ann.attributes).not.toMatch(/Secure/);
  });

  it('the pending list shows the whole request, the reason inert and escaped, with Approve and Deny; no secret on the page', async () => {
    const id = await pending(k);
    const res = await send(k, 'GET', '/console', { cookie: ann.cookie });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-security-policy')).not.toContain('unsafe-inline');
    const page = await res.text();
    expect(page).toContain(`<code>${id}</code>`);
    expect(page).toContain('rotate &lt;script&gt;alert(1)&lt;/script&gt; \\u{202E}keys');
    expect(page).not.toContain('\u202E');
    expect(page).toContain('<code>homelab/data/apps/web</code>: read, update');
    expect(page).toContain('<code>homelab-write</code>');
    expect(page).toMatch(/>Approve<\/button>/);
    expect(page).toMatch(/>Deny<\/button>/);
    expect(page).toContain('>Sign out</button>');
    expect(page).not.toContain(k.agent);
    expect(page).not.toContain(ann.cookie);
    const fragment = await send(k, 'GET', '/console/api/pending', { cookie: ann.cookie });
    expect(fragment.status).toBe(200);
    expect(await fragment.text()).toContain(`<code>${id}</code>`);
  });

  it('a decision without the CSRF token, with a wrong one, or from another Origin is 403 and changes nothing', async () => {
    const id = await pending(k);
    expect((await decide(k, id, ann.cookie, { decision: 'approve' })).status).toBe(403);
    expect((await decide(k, id, ann.cookie, { decision: 'approve', csrf: `${csrf.slice(0, -1)}x` })).status).toBe(403);
    expect((await decide(k, id, ann.cookie, { decision: 'approve', csrf }, { headers: { origin: 'https://evil.example' } })).status).toBe(403);
    const json = await send(k, 'POST', `/console/requests/${id}/decision`, { cookie: ann.cookie, accept: 'application/json', headers: { 'content-type': 'application/json', origin: ORIGIN }, body: '{"decision":"approve"}' });
    expect(json.status).toBe(403);
    expect(await statusOf(k, id)).toBe('pending');
    const audit = await k.h.broker.deps.storage.audit.ofRequest(id, 0, 100);
    expect(audit.map((a) => a.event)).toEqual(['request.created']);
  });

  it('Approve with the token: approved; again: already decided (409), nothing changed', async () => {
    const id = await pending(k);
    const res = await decide(k, id, ann.cookie, { decision: 'approve', csrf });
    expect(res.status).toBe(200);
    expect(await res.text()).toMatch(/Approved: the agent can now claim/);
    expect(await statusOf(k, id)).toBe('approved');
    expect((await k.h.broker.deps.storage.requests.get(id))!.decided_by).toMatch(/^approver:/);
    const again = await decide(k, id, ann.cookie, { decision: 'deny', csrf });
    expect(again.status).toBe(409);
    expect(await again.text()).toMatch(/Already decided: the request is approved/);
  });

  it('two approvers deciding at once: one decision, the other told it was already decided', async () => {
    const cy = await enrol(k, 'cy', { finishesAt: '/console' });
    const cyCsrf = await csrfOf(k, cy.cookie);
    for (let round = 0; round < 3; round++) {
      const id = await pending(k);
      const answers = await Promise.all([decide(k, id, ann.cookie, { decision: 'approve', csrf }), decide(k, id, cy.cookie, { decision: 'deny', csrf: cyCsrf })]);
      expect(answers.map((a) => a.status).sort()).toEqual([200, 409]);
      const audit = (await k.h.broker.deps.storage.audit.ofRequest(id, 0, 100)).map((a) => a.event);
      expect(audit.filter((e) => e === 'request.approved' || e === 'request.denied')).toHaveLength(1);
    }
  });

  it('the x-csrf-token header works for a fetch too', async () => {
    const id = await pending(k);
    const res = await send(k, 'POST', `/console/requests/${id}/decision`, { cookie: ann.cookie, accept: 'application/json', headers: { origin: ORIGIN, 'x-csrf-token': csrf }, body: new URLSearchParams({ decision: 'deny' }) });
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ outcome: 'denied', status: 'denied' });
  });

  it('narrowing: drop a capability and shorten the TTL, then Approve; the grant is narrowed', async () => {
    const id = await pending(k);
    const form = await (await send(k, 'GET', `/console/requests/${id}`, { cookie: ann.cookie })).text();
    expect(form).toContain('Drop capability <code>update</code>');
    expect(form).toMatch(/<label for="ttl">TTL/);
    const res = await decide(k, id, ann.cookie, { decision: 'approve', csrf, drop_capability: 'update', ttl: '5m' });
    expect(res.status).toBe(200);
    expect(await res.text()).toMatch(/Approved \(narrowed\)/);
    const view = await k.h.call('GET', `/jit/requests/${id}`, { token: k.agent });
    expect(view.body.granted).toEqual({ vault_paths: [{ path: 'homelab/data/apps/web', capabilities: ['read'] }], ttl_seconds: 300 });
  });

  it('a gate request: its repo and every ref listed; dropping a ref narrows the grant', async () => {
    const res = await k.h.call('POST', '/jit/request', { token: k.agent, body: { resource: 'gate', tier: 2, reason: 'push two release branches', repo: 'homelab/app', refs: ['refs/heads/release/1.0', 'refs/heads/release/2.0'] } });
    expect(res.status).toBe(202);
    const id = res.body.id as string;
    const page = await (await send(k, 'GET', `/console/requests/${id}`, { cookie: ann.cookie })).text();
    expect(page).toContain('Repository <code>homelab/app</code>');
    expect(page).toContain('Drop ref <code>refs/heads/release/1.0</code>');
    expect(page).toContain('Drop ref <code>refs/heads/release/2.0</code>');
    expect((await decide(k, id, ann.cookie, { decision: 'approve', csrf, drop_ref: 'refs/heads/release/2.0' })).status).toBe(200);
    const view = await k.h.call('GET', `/jit/requests/${id}`, { token: k.agent });
    expect(view.body).toMatchObject({ status: 'approved', narrowed: true, granted: { repo: 'homelab/app', refs: ['refs/heads/release/1.0'] } });
  });

  it('a narrowing that widens or names something not requested is refused with the message, nothing changed', async () => {
    const id = await pending(k);
    const wide = await decide(k, id, ann.cookie, { decision: 'approve', csrf, ttl: '2h' });
    expect(wide.status).toBe(400);
    expect(await wide.text()).toMatch(/Refused: a TTL of 2h is longer than/);
    const other = await decide(k, id, ann.cookie, { decision: 'approve', csrf, drop_path: 'homelab/data/other' });
    expect(await other.text()).toMatch(/was not requested/);
    const junk = await decide(k, id, ann.cookie, { decision: 'approve', csrf, smuggled: 'x' });
    expect(junk.status).toBe(400);
    expect(await statusOf(k, id)).toBe('pending');
  });

  it('Deny with a reason', async () => {
    const id = await pending(k);
    const res = await decide(k, id, ann.cookie, { decision: 'deny', csrf, reason: 'not today' });
    expect(res.status).toBe(200);
    expect((await k.h.broker.deps.storage.requests.get(id))!).toMatchObject({ status: 'denied', decision_reason: 'not today' });
  });

  it('the live stream: ready, then change when a request arrives', async () => {
    const res = await send(k, 'GET', '/console/events', { cookie: ann.cookie, accept: 'text/event-stream' });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/event-stream/);
    const reader = res.body!.getReader();
    let text = '';
    const until = async (what: string) => {
      while (!text.includes(what)) {
        const { value, done } = await reader.read();
        if (done) throw new Error(`stream ended before ${what}: ${text}`);
        text += Buffer.from(value).toString('utf8');
      }
    };
    await until('event: ready');
    await pending(k);
    await until('event: change');
    await reader.cancel();
  });

  it('live credentials: a claimed credential is listed (accessor, not token) with Revoke, which revokes it', async () => {
    const id = await pending(k);
    expect((await decide(k, id, ann.cookie, { decision: 'approve', csrf })).status).toBe(200);
    const claim = await k.h.call('POST', `/jit/requests/${id}/claim`, { token: k.agent });
    expect(claim.status).toBe(201);
    const page = await (await send(k, 'GET', '/console/credentials', { cookie: ann.cookie })).text();
    expect(page).toContain(`<code>${id}</code>`);
    expect(page).toContain('>Revoke</button>');
    expect(page).toContain('>Revoke all</button>');
    expect(page).not.toContain(claim.body.credential.token);
    expect((await send(k, 'POST', `/console/credentials/${id}/revoke`, { cookie: ann.cookie, body: new URLSearchParams({}), headers: { origin: ORIGIN } })).status).toBe(403);
    const res = await send(k, 'POST', `/console/credentials/${id}/revoke`, { cookie: ann.cookie, body: new URLSearchParams({ csrf }), headers: { origin: ORIGIN } });
    expect(res.status).toBe(200);
    expect(await statusOf(k, id)).toBe('revoked');
    // Revoke all without a step-up assertion: refused.
    expect((await send(k, 'POST', '/console/credentials/revoke-all', { cookie: ann.cookie, body: new URLSearchParams({ csrf }), headers: { origin: ORIGIN } })).status).toBe(403);
  });

  it('sign-in makes a new session each time (no fixation); sign-out ends it', async () => {
    const options = await postJson<PublicKeyCredentialRequestOptionsJSON>(k, '/console/sign-in/options');
    const finish = await postJson<{ ok: boolean }>(k, '/console/sign-in/finish', ann.auth.assert(options.json), ann.cookie);
    expect(finish.res.status).toBe(200);
    const second = sessionCookie(finish.res).value;
    expect(second).not.toBe(ann.cookie);
    const secondCsrf = await csrfOf(k, second);
    expect(secondCsrf).not.toBe(csrf);
    const out = await send(k, 'POST', '/console/sign-out', { cookie: second, body: new URLSearchParams({ csrf: secondCsrf }), headers: { origin: ORIGIN } });
    expect(out.status).toBe(303);
    expect(out.headers.get('location')).toBe('/console/sign-in');
    expect(out.headers.get('set-cookie')).toMatch(/^jit_console=;.*Max-Age=0/);
    expect((await send(k, 'GET', '/console', { cookie: second })).status).toBe(303);
    // The first session is its own, still valid.
    expect((await send(k, 'GET', '/console', { cookie: ann.cookie })).status).toBe(200);
  });

  it('a removed approver\'s session ends at once', async () => {
    const bob = await enrol(k, 'bob', { finishesAt: '/console' });
    expect((await send(k, 'GET', '/console', { cookie: bob.cookie })).status).toBe(200);
    await removeApprover(k.h.broker.deps, 'bob');
    expect((await send(k, 'GET', '/console', { cookie: bob.cookie })).status).toBe(303);
    expect((await send(k, 'GET', '/console/events', { cookie: bob.cookie })).status).toBe(401);
  });
});

describe('step-up (JIT_PASSKEY_TIER=2)', () => {
  let k: Console;
  let ann: SignedIn;
  let csrf: string;
  useConsole(async (c) => {
    k = c;
    ann = await signedIn(k, 'ann', { finishesAt: '/console' });
    csrf = ann.csrf;
  }, { JIT_PASSKEY_TIER: '2' });

  async function stepUp(id: string, fields: Record<string, string>): Promise<string> {
    const res = await send(k, 'POST', `/console/requests/${id}/step-up`, { cookie: ann.cookie, accept: 'application/json', headers: { origin: ORIGIN }, body: new URLSearchParams({ csrf, decision: 'approve', ...fields }) });
    expect(res.status).toBe(200);
    return JSON.stringify(ann.auth.assert((await res.json()) as PublicKeyCredentialRequestOptionsJSON));
  }

  it('the page says Approve needs the passkey; without an assertion the approval is refused, nothing changed', async () => {
    const id = await pending(k);
    const page = await (await send(k, 'GET', `/console/requests/${id}`, { cookie: ann.cookie })).text();
    expect(page).toMatch(/data-step-up="\/console\/requests\/[^"]+\/step-up"/);
    expect(page).toMatch(/needs JavaScript/);
    const res = await decide(k, id, ann.cookie, { decision: 'approve', csrf });
    expect(res.status).toBe(403);
    expect(await statusOf(k, id)).toBe('pending');
  });

  it('with the assertion over exactly this narrowing: approved; the same assertion for another narrowing or again: refused', async () => {
    const id = await pending(k);
    const assertion = await stepUp(id, { drop_capability: 'update' });
    const tampered = await decide(k, id, ann.cookie, { decision: 'approve', csrf, assertion });
    expect(tampered.status).toBe(403);
    expect(await statusOf(k, id)).toBe('pending');
    const fresh = await stepUp(id, { drop_capability: 'update' });
    const res = await decide(k, id, ann.cookie, { decision: 'approve', csrf, drop_capability: 'update', assertion: fresh });
    expect(res.status).toBe(200);
    expect(await statusOf(k, id)).toBe('approved');
    const other = await pending(k);
    const replay = await decide(k, other, ann.cookie, { decision: 'approve', csrf, drop_capability: 'update', assertion: fresh });
    expect(replay.status).toBe(403);
    expect(await statusOf(k, other)).toBe('pending');
  });

  it('Deny needs no step-up', async () => {
    const id = await pending(k);
    expect((await decide(k, id, ann.cookie, { decision: 'deny', csrf })).status).toBe(200);
    expect(await statusOf(k, id)).toBe('denied');
  });

  it('revoke-all with a step-up assertion revokes every live credential', async () => {
    const id = await pending(k);
    expect((await decide(k, id, ann.cookie, { decision: 'approve', csrf, assertion: await stepUp(id, {}) })).status).toBe(200);
    expect((await k.h.call('POST', `/jit/requests/${id}/claim`, { token: k.agent })).status).toBe(201);
    const opts = await send(k, 'POST', '/console/credentials/revoke-all/step-up', { cookie: ann.cookie, accept: 'application/json', headers: { origin: ORIGIN, 'x-csrf-token': csrf } });
    expect(opts.status).toBe(200);
    const assertion = JSON.stringify(ann.auth.assert((await opts.json()) as PublicKeyCredentialRequestOptionsJSON));
    const res = await send(k, 'POST', '/console/credentials/revoke-all', { cookie: ann.cookie, body: new URLSearchParams({ csrf, assertion }), headers: { origin: ORIGIN } });
    expect(res.status).toBe(200);
    // The approved request of the step-up test, not yet claimed, is cancelled too: revoke-all ends everything one claim away from a credential.
    expect(await res.text()).toMatch(/Revoke all: 2 revoked, 0 recorded/);
    expect(await statusOf(k, id)).toBe('revoked');
  });
});

describe('time limits and unknown requests', () => {
  let k: Console;
  useConsole((c) => {
    k = c;
  });

  it('an enrolment link past its 15 minutes: the page is 404 and its ceremony refused', async () => {
    const { token } = await addApprover(k.h.broker.deps, { name: 'late' });
    k.h.clock.advance(15 * 60_000 + 1);
    const page = await send(k, 'GET', `/console/enrol/${token}`);
    expect(page.status).toBe(404);
    expect(await page.text()).not.toContain('Register passkey</button>');
    const options = await postJson<{ detail: string }>(k, `/console/enrol/${token}/options`);
    expect(options.res.status).toBe(404);
  });

  it('an unknown or malformed request id is 404; a session idle past JIT_CONSOLE_IDLE_TIMEOUT is sent to sign-in', async () => {
    const ann = await enrol(k, 'ann', { finishesAt: '/console' });
    expect((await send(k, 'GET', `/console/requests/req_${'0'.repeat(26)}`, { cookie: ann.cookie })).status).toBe(404);
    const odd = await send(k, 'GET', `/console/requests/${encodeURIComponent('<script>')}`, { cookie: ann.cookie });
    expect(odd.status).toBe(404);
    expect(await odd.text()).not.toContain('<script>');
    k.h.clock.advance(30 * 60_000 + 1000);
    expect((await send(k, 'GET', '/console', { cookie: ann.cookie })).status).toBe(303);
  });

  it('what an open page does on its own (live list reloads, the event stream) does not keep the session from idling out; a page load does', async () => {
    const bea = await enrol(k, 'bea', { finishesAt: '/console' });
    const live = { 'x-console-live': '1' };
    // 20 minutes of live reloads only, then 11 more: idle past 30 minutes, so the next reload is 401 and a page load signs in again.
    for (let i = 0; i < 4; i++) {
      k.h.clock.advance(5 * 60_000);
      expect((await send(k, 'GET', '/console', { cookie: bea.cookie, headers: live })).status).toBe(200);
      const stream = await send(k, 'GET', '/console/events', { cookie: bea.cookie, accept: 'text/event-stream' });
      expect(stream.status).toBe(200);
      await stream.body?.cancel();
    }
    k.h.clock.advance(11 * 60_000);
    const lost = await send(k, 'GET', '/console', { cookie: bea.cookie, headers: live });
    expect(lost.status).toBe(401);
    expect(lost.headers.get('content-type')).toContain('application/problem+json');
    expect((await send(k, 'GET', '/console', { cookie: bea.cookie })).status).toBe(303);
    // The same timeline with page loads keeps the session.
    const cy = await enrol(k, 'cy', { finishesAt: '/console' });
    for (let i = 0; i < 7; i++) {
      k.h.clock.advance(5 * 60_000);
      expect((await send(k, 'GET', '/console', { cookie: cy.cookie })).status).toBe(200);
    }
  });
});
