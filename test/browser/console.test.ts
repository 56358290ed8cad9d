import { performance } from 'node:perf_hooks';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Browser } from 'playwright-core';
import { createConsole } from '../../src/console/app.ts';
import { callbackData } from '../../src/telegram/index.ts';
import { addVirtualAuthenticator, disableCache, launchBrowser, newContext, pageWeight, PHONE, DESKTOP } from '../helpers/browser.ts';
import { startConsoleBroker, TG_BOB, TG_CHAT, type ConsoleBroker } from '../helpers/console-broker.ts';
import { enrol, isHome, isSignIn, pendingItem, screenshot, sessionCookie, signIn, type Person } from '../helpers/console-page.ts';

/**
 * The operator console in a real browser (issue 20, item 6; SPEC §12):
 * Debian's Chromium through playwright-core, passkeys from a CDP virtual
 * authenticator, the whole broker in-process on PostgreSQL with the dev
 * Vault and the Telegram emulator. JIT_PASSKEY_TIER is unset here (no
 * step-up); console-step-up.test.ts runs with JIT_PASSKEY_TIER=3.
 *
 * One browser for the file, a new context (cookies, authenticator) per
 * person. The tests share one broker and run in order: alice enrols first
 * and the later tests sign her in again with her passkey.
 */
let browser: Browser;
let cb: ConsoleBroker;
let agent: string;
let alice: Person;
/** Figures for docs/console.md, printed at the end. */
const figures: Record<string, unknown> = {};

const TIER2 = { resource: 'vault', tier: 2, reason: 'rotate the web app key', vault_paths: [{ path: 'homelab/data/apps/web', capabilities: ['read', 'update'] }] };
const TIER3 = { resource: 'vault', tier: 3, reason: 'delete the retired prod database password', vault_paths: [{ path: 'homelab/data/prod/db', capabilities: ['delete'] }] };

/** The outcome the console shows after an approval that decides the request. */
const APPROVED = /^Approved( \(narrowed\))?: the agent can now claim/;

const request = (id: string) => cb.broker.deps.storage.requests.get(id);
const status = async (id: string) => (await request(id))?.status;

beforeAll(async () => {
  [browser, cb] = await Promise.all([launchBrowser(), startConsoleBroker({ telegram: true })]);
  agent = await cb.addAgent('moltbot');
}, 120_000);

afterAll(async () => {
  await alice?.close();
  await browser?.close();
  await cb?.close();
  if (Object.keys(figures).length) console.log(`console figures: ${JSON.stringify(figures, null, 2)}`);
});

describe('the console in Chromium (JIT_PASSKEY_TIER unset)', () => {
  it('enrols from the link `jit approver add` prints, and signs in again with the passkey', async () => {
    const link = await cb.approverAddCli('alice');
    expect(link.startsWith(`${cb.url}/console/enrol/`)).toBe(true);
    alice = await enrol(browser, link);
    expect(await sessionCookie(alice.context)).toBeDefined();

    // Another device with the same passkey: /console → sign-in → "Sign in" → /console.
    const again = await signIn(browser, cb.url, alice, { viewport: PHONE });
    expect(await sessionCookie(again.context)).not.toBe(await sessionCookie(alice.context));
    await again.close();

    // The used link no longer works.
    const other = await newContext(browser);
    const page = await other.newPage();
    await page.goto(link);
    expect(await page.getByRole('button', { name: 'Register passkey' }).count()).toBe(0);
    await other.close();
  }, 60_000);

  it('approves a tier-2 request from the live pending list, and shows an agent-written reason inertly', async () => {
    const dialogs: string[] = [];
    alice.page.on('dialog', (d) => {
      dialogs.push(d.message());
      void d.dismiss();
    });
    await alice.page.goto(`${cb.url}/console`);
    const reason = 'rotate <script>alert(1)</script> & "quotes"';
    const created = performance.now();
    const id = await cb.request(agent, { ...TIER2, reason });
    // Live: the list updates without a reload (server-sent events).
    const item = pendingItem(alice.page, id);
    await item.waitFor();
    figures.liveListMs = Math.round(performance.now() - created);
    // The page weight with this one request listed: a load with the HTTP cache off (HTML, CSS, JS as transferred).
    await disableCache(alice.page);
    await alice.page.reload();
    await item.waitFor();
    figures.consolePageWeightOneRequest = await pageWeight(alice.page);
    await expect.poll(() => item.innerText()).toContain(reason);
    expect(await item.innerText()).toContain('homelab/data/apps/web');
    expect(await item.innerText()).toContain('moltbot');

    const t0 = performance.now();
    await item.getByRole('button', { name: 'Approve', exact: true }).click();
    await alice.page.getByText(APPROVED).waitFor();
    figures.decideMsListTier2 = Math.round(performance.now() - t0);
    expect(await status(id)).toBe('approved');
    expect((await request(id))!.decided_by).toMatch(/^approver:/);
    expect(dialogs).toEqual([]);
  }, 60_000);

  it('narrows (drops a path and a capability, shortens the TTL) then approves on the request page', async () => {
    const id = await cb.request(agent, {
      resource: 'vault',
      tier: 2,
      reason: 'deploy',
      ttl: '20m',
      vault_paths: [
        { path: 'homelab/data/apps/web', capabilities: ['read', 'update'] },
        { path: 'homelab/data/apps/db', capabilities: ['read', 'update'] },
      ],
    });
    const page = alice.page;
    await page.goto(`${cb.url}/console/requests/${id}`);
    figures.requestPageWeight = await pageWeight(page);
    await expect.poll(() => page.locator('body').innerText()).toContain(id);
    await page.getByRole('checkbox', { name: /homelab\/data\/apps\/db/ }).check();
    await page.getByRole('checkbox', { name: /update/ }).first().check();
    await page.getByRole('textbox', { name: /ttl/i }).fill('5m');
    const t0 = performance.now();
    await page.getByRole('button', { name: 'Approve', exact: true }).click();
    await page.getByText(APPROVED).waitFor();
    figures.decideMsRequestPageNarrowed = Math.round(performance.now() - t0);

    const view = await (await fetch(`${cb.broker.url}/jit/requests/${id}`, { headers: { authorization: `Bearer ${agent}` } })).json();
    expect(view).toMatchObject({ status: 'approved', narrowed: true, granted: { vault_paths: [{ path: 'homelab/data/apps/web', capabilities: ['read'] }], ttl_seconds: 300 } });
  }, 60_000);

  it('is keyboard operable: Tab reaches a request\'s Approve on the pending list, Enter decides', async () => {
    const id = await cb.request(agent, TIER2);
    const page = alice.page;
    await page.goto(`${cb.url}/console`);
    const approveButton = pendingItem(page, id).getByRole('button', { name: 'Approve', exact: true });
    await approveButton.waitFor();
    let tabs = 0;
    for (; tabs < 200; tabs++) {
      if (await approveButton.evaluate((el) => el === (globalThis as any).document.activeElement)) break;
      await page.keyboard.press('Tab');
    }
    expect(tabs).toBeLessThan(200);
    await page.keyboard.press('Enter');
    await page.getByText(APPROVED).waitFor();
    expect(await status(id)).toBe('approved');
  }, 60_000);

  it('reaches a tier-3 quorum with one console approver and one Telegram approver', async () => {
    const id = await cb.request(agent, TIER3);
    const page = alice.page;
    await page.goto(`${cb.url}/console/requests/${id}`);
    await page.getByRole('button', { name: 'Approve', exact: true }).click();
    await page.getByText(/1 of 2 approvals/).waitFor();
    expect(await status(id)).toBe('pending');

    const tg = cb.tg!;
    const posted = await tg.waitFor(() => tg.botMessages(TG_CHAT).find((m) => m.text?.includes(id)), 10_000, 'the approval message');
    tg.tap(TG_BOB, posted.message_id, callbackData('approve', id));
    await expect.poll(() => status(id), { timeout: 15_000 }).toBe('approved');
    const votes = await cb.broker.deps.storage.votes.of(id);
    expect(votes.map((v) => v.approver).sort()).toEqual([expect.stringMatching(/^approver:/), `telegram:${TG_BOB}`].sort());

    // The request page now says it is decided.
    await page.goto(`${cb.url}/console/requests/${id}`);
    await page.getByText(/This request is approved/).waitFor();
  }, 60_000);

  it('revokes a live credential from the credentials page', async () => {
    const id = await cb.request(agent, TIER2);
    const page = alice.page;
    await page.goto(`${cb.url}/console/requests/${id}`);
    await page.getByRole('button', { name: 'Approve', exact: true }).click();
    await page.getByText(APPROVED).waitFor();
    const claim = await fetch(`${cb.broker.url}/jit/requests/${id}/claim`, { method: 'POST', headers: { authorization: `Bearer ${agent}` } });
    expect(claim.status).toBe(201);
    const { token } = (await claim.json()) as { token: string };

    await page.goto(`${cb.url}/console`);
    await page.getByRole('link', { name: /credentials/i }).first().click();
    await page.waitForURL((u) => u.pathname === '/console/credentials');
    const html = await page.content();
    expect(html).not.toContain(token);
    const row = page.locator('li, article, section, tr').filter({ hasText: id }).filter({ has: page.getByRole('button', { name: 'Revoke', exact: true }) }).last();
    await row.getByRole('button', { name: 'Revoke', exact: true }).click();
    await page.getByText(`Revoked request ${id}`).waitFor();
    await expect.poll(() => status(id), { timeout: 15_000 }).toBe('revoked');
  }, 60_000);

  it('refuses a state change without the CSRF token (403, nothing changed)', async () => {
    const id = await cb.request(agent, TIER2);
    const page = alice.page;
    await page.goto(`${cb.url}/console`);
    const post = (body: string) =>
      page.evaluate(
        async ([path, b]) => (await fetch(path!, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: b!, redirect: 'manual' })).status,
        [`/console/requests/${id}/decision`, body] as const,
      );
    expect(await post('decision=approve')).toBe(403);
    expect(await post('decision=approve&csrf=not-the-token')).toBe(403);
    expect(await post('decision=deny&reason=no')).toBe(403);
    expect(await status(id)).toBe('pending');
    expect((await cb.broker.deps.storage.votes.of(id)).length).toBe(0);
  }, 60_000);

  it('gives a new session at sign-in whatever cookie was there before (no fixation)', async () => {
    const context = await newContext(browser);
    const url = new URL(cb.url);
    const planted = 'attacker-chosen-session-id-0123456789abcdef';
    await context.addCookies([{ name: 'jit_console', value: planted, domain: url.hostname, path: '/console', httpOnly: true, sameSite: 'Strict' }]);
    const page = await context.newPage();
    // The planted cookie is no session: the page sends us to sign-in.
    await page.goto(`${cb.url}/console`);
    await page.waitForURL(isSignIn);
    const auth = await addVirtualAuthenticator(page);
    for (const c of alice.passkeys) await auth.addCredential(c);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.waitForURL(isHome);
    alice.passkeys = await auth.credentials();
    const after = await sessionCookie(context);
    expect(after).toBeDefined();
    expect(after).not.toBe(planted);
    await context.close();

    // And the planted value still opens nothing.
    const other = await newContext(browser);
    await other.addCookies([{ name: 'jit_console', value: planted, domain: url.hostname, path: '/console' }]);
    const p2 = await other.newPage();
    await p2.goto(`${cb.url}/console`);
    await p2.waitForURL(isSignIn);
    await other.close();
  }, 60_000);

  it('ends a removed approver\'s session at once: the next page load is the sign-in page', async () => {
    const dave = await enrol(browser, await cb.addApprover('dave'));
    try {
      await cb.removeApprover('dave');
      await dave.page.reload();
      await dave.page.waitForURL(isSignIn);
      // Their passkey no longer signs in.
      await dave.page.getByRole('button', { name: 'Sign in' }).click();
      await dave.page.getByText(/^Failed:/).waitFor();
      expect(isSignIn(new URL(dave.page.url()))).toBe(true);
    } finally {
      await dave.close();
    }
  }, 60_000);

  it('refuses every console route without a session: pages redirect to sign-in, data and state changes answer 401', async () => {
    const id = await cb.request(agent, TIER2);
    // The routes as the console's own router declares them (a route added later is covered without editing this list).
    const declared = createConsole(cb.broker.deps).routes.filter((r) => r.method !== 'ALL');
    const isPublic = (path: string) => /^\/(static|sign-in|enrol)(\/|$)/.test(path);
    const routes = [...new Set(declared.filter((r) => !isPublic(r.path)).map((r) => `${r.method} ${r.path}`))];
    expect(routes).toEqual(expect.arrayContaining(['GET /', 'GET /requests/:id', 'POST /requests/:id/decision', 'POST /requests/:id/step-up', 'GET /events', 'GET /credentials', 'POST /sign-out']));
    const fill = (path: string) => `/console${path.replace(/:id\b/g, id).replace(/:name\b/g, 'moltbot').replace(/:[a-z_]+/gi, 'x')}`.replace(/\/$/, '');
    for (const route of routes) {
      const [method, path] = route.split(' ') as [string, string];
      const url = `${cb.url}${fill(path)}`;
      if (method === 'GET') {
        const page = await fetch(url, { redirect: 'manual', headers: { accept: 'text/html' } });
        if (path === '/events' || path.startsWith('/api/')) expect(page.status, route).toBe(401);
        else {
          expect(page.status, route).toBe(303);
          expect(page.headers.get('location'), route).toBe('/console/sign-in');
        }
        const data = await fetch(url, { redirect: 'manual', headers: { accept: 'application/json' } });
        expect(data.status, `${route} (data)`).toBe(401);
      } else {
        const res = await fetch(url, { method, redirect: 'manual', headers: { 'content-type': 'application/x-www-form-urlencoded', origin: cb.url, accept: 'text/html' }, body: 'decision=approve&csrf=x' });
        expect(res.status, route).toBe(401);
      }
    }
    figures.consoleRoutesCheckedWithoutSession = routes.length;
    expect(await status(id)).toBe('pending');
    expect(await cb.broker.deps.storage.votes.of(id)).toEqual([]);
  }, 60_000);

  it('signs out: the cookie no longer opens the console', async () => {
    const bob = await signIn(browser, cb.url, alice);
    try {
      const before = await sessionCookie(bob.context);
      await bob.page.getByRole('button', { name: 'Sign out' }).click();
      await bob.page.waitForURL(isSignIn);
      // Replaying the old cookie gets nowhere.
      const replay = await fetch(`${cb.url}/console`, { redirect: 'manual', headers: { cookie: `jit_console=${before}`, accept: 'text/html' } });
      expect(replay.status).toBe(303);
    } finally {
      await bob.close();
    }
  }, 60_000);

  it('refuses a removed approver\'s enrolment link and an expired one', async () => {
    const removed = await cb.addApprover('frank');
    await cb.removeApprover('frank');
    const expired = await cb.addApprover('erin');
    const context = await newContext(browser);
    const page = await context.newPage();
    const refused = async (link: string) => {
      const res = await page.goto(link);
      expect(res!.status(), link).toBeGreaterThanOrEqual(400);
      expect(res!.status(), link).toBeLessThan(500);
      expect(await page.getByRole('button', { name: 'Register passkey' }).count()).toBe(0);
    };
    const now = cb.clock.now();
    try {
      await refused(removed);
      // 15 minutes and a second later (the broker's clock is driven; it is set back after).
      cb.clock.advance(15 * 60 * 1000 + 1_000);
      await refused(expired);
    } finally {
      cb.clock.set(now);
      await context.close();
    }
  }, 60_000);

  it('takes screenshots of the main pages at phone and desktop widths (when JIT_CONSOLE_SCREENSHOTS is set)', async () => {
    if (!process.env.JIT_CONSOLE_SCREENSHOTS) return;
    const id = await cb.request(agent, {
      ...TIER2,
      reason: 'deploy the new web release',
      vault_paths: [
        { path: 'homelab/data/apps/web', capabilities: ['read', 'update'] },
        { path: 'homelab/data/apps/db', capabilities: ['read'] },
      ],
    });
    await cb.request(agent, TIER3);
    // A live credential for the credentials page.
    const live = await cb.request(agent, { ...TIER2, reason: 'read the CI runner key', vault_paths: [{ path: 'homelab/data/ci/runner', capabilities: ['read'] }] });
    await alice.page.goto(`${cb.url}/console/requests/${live}`);
    await alice.page.getByRole('button', { name: 'Approve', exact: true }).click();
    await alice.page.getByText(APPROVED).waitFor();
    expect((await fetch(`${cb.broker.url}/jit/requests/${live}/claim`, { method: 'POST', headers: { authorization: `Bearer ${agent}` } })).status).toBe(201);
    for (const viewport of [PHONE, DESKTOP]) {
      const context = await newContext(browser, { viewport });
      const page = await context.newPage();
      await page.goto(`${cb.url}/console/sign-in`);
      await screenshot(page, 'sign-in');
      await context.close();
      const person = await signIn(browser, cb.url, alice, { viewport });
      const p = person.page;
      await pendingItem(p, id).waitFor();
      await screenshot(p, 'pending');
      await p.goto(`${cb.url}/console/requests/${id}`);
      await p.getByRole('checkbox', { name: /homelab\/data\/apps\/db/ }).check();
      await screenshot(p, 'request');
      await p.goto(`${cb.url}/console/credentials`);
      await screenshot(p, 'credentials');
      await p.goto(`${cb.url}/console/history`);
      await screenshot(p, 'history');
      await person.close();
    }
  }, 120_000);
});
