import { describe, expect, it } from 'vitest';
import { addApprover } from '../../../src/broker/approvers.ts';
import { cookieSecure } from '../../../src/console/session.ts';
import { startHarness } from '../../helpers/broker-harness.ts';
import { CONSOLE_PUBLIC_URL, pending, send, useConsole, type Console } from '../../helpers/console-http.ts';

/**
 * The console core over real HTTP (the broker in-process on a real
 * listener, the development Vault behind it): what answers without a
 * session, CSRF and Origin, the CSP and cookie flags, and the refusal of an
 * IP-address public URL. The passkey ceremonies themselves, signed in, are
 * in console-signed-in.test.ts; the browser suite drives them in Chromium.
 */

const PUBLIC_URL = CONSOLE_PUBLIC_URL;
let k: Console;
useConsole((c) => {
  k = c;
});

const PAGES = ['/console', '/console/', '/console/credentials', '/console/history', '/console/agents', '/console/audit', '/console/webhooks', '/console/keys', '/console/policies', '/console/no-such-page'];

describe('without a session', () => {
  it('every page load is sent to sign-in (303)', async () => {
    const id = await pending(k);
    for (const path of [...PAGES, `/console/requests/${id}`, `/console/requests/${id}/story`]) {
      const res = await send(k, 'GET', path);
      expect(res.status, path).toBe(303);
      expect(res.headers.get('location'), path).toBe('/console/sign-in');
    }
  });

  it('data requests (fetch, the event stream, the list fragment) answer 401 problem+json', async () => {
    for (const path of ['/console/events', '/console/api/pending']) {
      const res = await send(k, 'GET', path);
      expect(res.status, path).toBe(401);
      expect(res.headers.get('content-type'), path).toMatch(/^application\/problem\+json/);
      expect(((await res.json()) as { detail: string }).detail).toMatch(/sign in/);
    }
    const json = await send(k, 'GET', '/console/credentials', { headers: { accept: 'application/json' } });
    expect(json.status).toBe(401);
  });

  it('every state change is refused (401) and changes nothing', async () => {
    const id = await pending(k);
    const form = new URLSearchParams({ decision: 'approve', csrf: 'guess' });
    for (const path of [`/console/requests/${id}/decision`, `/console/requests/${id}/step-up`, '/console/credentials/revoke-all', `/console/credentials/${id}/revoke`, '/console/sign-out', '/console/agents']) {
      const res = await send(k, 'POST', path, { body: form, headers: { origin: PUBLIC_URL } });
      expect(res.status, path).toBe(401);
    }
    expect((await k.h.broker.deps.storage.requests.get(id))!.status).toBe('pending');
  });

  it('an unknown session cookie is ignored and cleared (a planted id never becomes a session)', async () => {
    const res = await send(k, 'GET', '/console', { headers: { cookie: 'jit_console=planted-by-an-attacker-0123456789abcdef' } });
    expect(res.status).toBe(303);
    expect(res.headers.get('set-cookie')).toMatch(/^jit_console=;.*Max-Age=0/);
  });
});

describe('the public pages', () => {
  it('sign-in: a "Sign in" button, the CSP with no inline script, no cache, and the static scripts it loads', async () => {
    const res = await send(k, 'GET', '/console/sign-in');
    expect(res.status).toBe(200);
    const csp = res.headers.get('content-security-policy')!;
    expect(csp).toContain("script-src 'self'");
    expect(csp).toContain("frame-ancestors 'none'");
    expect(csp).not.toContain('unsafe-inline');
    expect(csp).not.toContain('unsafe-eval');
    expect(res.headers.get('cache-control')).toBe('no-store');
    const page = await res.text();
    expect(page).toMatch(/<button type="button" data-ceremony="sign-in">Sign in<\/button>/);
    expect(page).toContain('<meta name="viewport" content="width=device-width, initial-scale=1">');
    expect(page).not.toMatch(/<script>|<script(?![^>]*\ssrc=)[^>]*>|<style|\sstyle=|\son[a-z]+=/i);
    for (const file of ['console.js', 'console.css', 'webauthn.js']) {
      const s = await send(k, 'GET', `/console/static/${file}`);
      expect(s.status, file).toBe(200);
      expect((await s.text()).length, file).toBeGreaterThan(500);
    }
    expect((await send(k, 'GET', '/console/static/../../package.json')).status).not.toBe(200);
  });

  it('enrolment: the page of a valid link has only the "Register passkey" button; an unknown link is 404', async () => {
    const { token } = await addApprover(k.h.broker.deps, { name: 'ann' });
    const res = await send(k, 'GET', `/console/enrol/${token}`);
    expect(res.status).toBe(200);
    expect(res.headers.get('referrer-policy')).toBe('same-origin');
    const page = await res.text();
    expect(page.match(/<button/g)).toHaveLength(1);
    expect(page).toContain('>Register passkey</button>');
    expect(page).not.toContain(token);
    const unknown = await send(k, 'GET', `/console/enrol/${'x'.repeat(32)}`);
    expect(unknown.status).toBe(404);
    expect(await unknown.text()).toMatch(/unknown, already used or expired/);
  });

  it('the ceremony endpoints need the console\'s own Origin', async () => {
    for (const origin of [undefined, 'https://evil.example']) {
      const res = await send(k, 'POST', '/console/sign-in/options', { headers: { accept: 'application/json', ...(origin ? { origin } : {}) } });
      expect(res.status, String(origin)).toBe(403);
    }
  });

  it('the console is not in /openapi.json (it is HTML for people, not the API)', async () => {
    const doc = (await k.h.call('GET', '/openapi.json')).body as { paths: Record<string, unknown> };
    expect(Object.keys(doc.paths).filter((p) => p.startsWith('/console'))).toEqual([]);
  });
});

describe('the session cookie', () => {
  it('is Secure unless the public URL is plain http on the loopback interface', () => {
    expect(cookieSecure('http://localhost:8787')).toBe(false);
    expect(cookieSecure('http://127.0.0.1:8787')).toBe(false);
    expect(cookieSecure('http://[::1]:8787')).toBe(false);
    expect(cookieSecure('https://localhost:8787')).toBe(true);
    expect(cookieSecure('https://jit.example.net')).toBe(true);
    expect(cookieSecure('http://jit.example.net')).toBe(true);
  });
});

describe('a public URL with an IP address', () => {
  it('every console route answers 503 with the one line on JIT_PUBLIC_URL, logged once at start; the API serves on', async () => {
    const ip = await startHarness(); // JIT_PUBLIC_URL unset, not dev mode: http://127.0.0.1:PORT
    try {
      for (const path of ['/console', '/console/sign-in', '/console/enrol/whatever-token-0123456789', '/console/static/console.js']) {
        const res = await fetch(`${ip.broker.url}${path}`, { headers: { accept: 'text/html' }, redirect: 'manual' });
        expect(res.status, path).toBe(503);
        expect(await res.text(), path).toMatch(/JIT_PUBLIC_URL/);
      }
      const data = await fetch(`${ip.broker.url}/console/events`);
      expect(data.status).toBe(503);
      expect(((await data.json()) as { detail: string }).detail).toMatch(/JIT_PUBLIC_URL/);
      const logged = ip.logs().split('\n').filter((l) => l.includes('JIT_PUBLIC_URL') && l.includes('console'));
      expect(logged).toHaveLength(1);
      expect((await fetch(`${ip.broker.url}/healthz`)).status).toBe(200);
    } finally {
      await ip.close();
    }
  });
});
