import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Browser } from 'playwright-core';
import { addVirtualAuthenticator, launchBrowser, newContext } from '../helpers/browser.ts';

/**
 * The browser test kit itself (test/helpers/browser.ts): Debian's Chromium
 * launched by playwright-core, and a CDP virtual authenticator that creates
 * and asserts a passkey for the relying party `localhost` on a static page
 * served on 127.0.0.1 and opened as http://localhost:PORT (a secure context;
 * WebAuthn refuses an IP address as the RP id). Replacing the authenticator
 * leaves the page with no passkey: the "wrong passkey" of the console tests.
 */
let browser: Browser;
let server: Server;
let origin: string;

beforeAll(async () => {
  server = createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
    res.end('<!doctype html><title>webauthn</title><p>static</p>');
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  origin = `http://localhost:${(server.address() as AddressInfo).port}`;
  browser = await launchBrowser();
}, 90_000);

afterAll(async () => {
  await browser?.close();
  await new Promise((r) => server?.close(r));
});

// Run in the page (the project's tsconfig has no DOM lib: the page's globals are reached through `any`).
// A discoverable passkey for rp "localhost", then an assertion.
const create = () =>
  (globalThis as any).navigator.credentials
    .create({
      publicKey: {
        rp: { id: 'localhost', name: 'test' },
        user: { id: crypto.getRandomValues(new Uint8Array(16)), name: 'alice', displayName: 'Alice' },
        challenge: crypto.getRandomValues(new Uint8Array(32)),
        pubKeyCredParams: [{ type: 'public-key', alg: -7 }],
        authenticatorSelection: { residentKey: 'required', userVerification: 'required' },
      },
    })
    .then((c: any) => ({ id: c.id as string, type: c.type as string }));

const get = () =>
  (globalThis as any).navigator.credentials
    .get({ publicKey: { rpId: 'localhost', challenge: crypto.getRandomValues(new Uint8Array(32)), userVerification: 'required' } })
    .then((c: any) => ({ ok: true as const, id: c.id as string }))
    .catch((e: Error) => ({ ok: false as const, error: e.name }));

describe('the browser test kit', () => {
  it('launches Chromium, and a virtual authenticator registers and asserts a passkey on http://localhost', async () => {
    const context = await newContext(browser);
    try {
      const page = await context.newPage();
      await page.goto(origin);
      expect(await page.evaluate(() => (globalThis as any).isSecureContext as boolean)).toBe(true);
      const auth = await addVirtualAuthenticator(page);

      const made = await page.evaluate(create);
      expect(made.type).toBe('public-key');
      const held = await auth.credentials();
      expect(held).toHaveLength(1);
      expect(held[0]).toMatchObject({ isResidentCredential: true, rpId: 'localhost' });

      expect(await page.evaluate(get)).toEqual({ ok: true, id: made.id });
      expect((await auth.credentials())[0]!.signCount).toBeGreaterThan(0);

      // Another authenticator, without that passkey: the ceremony fails in the browser.
      await auth.replace();
      expect(await auth.credentials()).toEqual([]);
      expect(await page.evaluate(get)).toEqual({ ok: false, error: 'NotAllowedError' });

      // Given the first one's credential back, it asserts again.
      await auth.replace(held);
      expect(await page.evaluate(get)).toMatchObject({ ok: true, id: made.id });
    } finally {
      await context.close();
    }
  }, 60_000);
});
