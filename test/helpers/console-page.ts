import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'vitest';
import type { Browser, BrowserContext, Locator, Page } from 'playwright-core';
import { addVirtualAuthenticator, newContext, type VirtualAuthenticator, type VirtualCredential } from './browser.ts';

/*
 * The console as a person uses it, in a real browser: enrol from a link,
 * sign in with the passkey, find a request's controls by role and name
 * (SPEC §12: "Approve", "Deny", "Revoke", "Sign in", "Register passkey",
 * "Sign out"). Every wait is for a condition (a URL, a text, a control),
 * never a fixed sleep.
 */

export interface Person {
  context: BrowserContext;
  page: Page;
  auth: VirtualAuthenticator;
  /** The passkey(s) the person's authenticator holds (to sign in elsewhere, or to play someone else's). */
  passkeys: VirtualCredential[];
  close(): Promise<void>;
}

const CONSOLE_HOME = /\/console\/?$/;

/** Whether `url` is the console's home (the pending list). */
export const isHome = (url: URL) => CONSOLE_HOME.test(url.pathname);
export const isSignIn = (url: URL) => url.pathname === '/console/sign-in';

/** Opens an enrolment link in a fresh context, registers a passkey with "Register passkey", lands signed in on /console. */
export async function enrol(browser: Browser, link: string, o: { viewport?: { width: number; height: number } } = {}): Promise<Person> {
  const context = await newContext(browser, o);
  const page = await context.newPage();
  const auth = await addVirtualAuthenticator(page);
  await page.goto(link);
  await page.getByRole('button', { name: 'Register passkey' }).click();
  await page.waitForURL(isHome);
  const passkeys = await auth.credentials();
  expect(passkeys).toHaveLength(1);
  return { context, page, auth, passkeys, close: () => context.close() };
}

/** Whose passkeys a device holds: `passkeys` is kept up to date with each use. */
export interface Keychain {
  passkeys: VirtualCredential[];
}

/**
 * A fresh context (another device) whose authenticator holds `keychain`'s
 * passkeys: /console sends it to sign-in, "Sign in" brings it back. The
 * keychain then holds the passkeys as they are after the assertion: their
 * signature counter went up, and the broker refuses a counter that goes
 * back (a cloned authenticator), as WebAuthn asks.
 */
export async function signIn(browser: Browser, base: string, keychain: Keychain, o: { viewport?: { width: number; height: number } } = {}): Promise<Person> {
  const context = await newContext(browser, o);
  const page = await context.newPage();
  const auth = await addVirtualAuthenticator(page);
  for (const c of keychain.passkeys) await auth.addCredential(c);
  await page.goto(`${base}/console`);
  await page.waitForURL(isSignIn);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForURL(isHome);
  keychain.passkeys = await auth.credentials();
  return { context, page, auth, passkeys: keychain.passkeys, close: () => context.close() };
}

/** The element of the pending list that shows request `id` (full id as text) with its own Approve button. */
export function pendingItem(page: Page, id: string): Locator {
  return page
    .locator('li, article, section, tr')
    .filter({ hasText: id })
    .filter({ has: page.getByRole('button', { name: 'Approve', exact: true }) })
    .last();
}

/** The session cookie's value in a context, if any. */
export async function sessionCookie(context: BrowserContext): Promise<string | undefined> {
  return (await context.cookies()).find((c) => c.name === 'jit_console')?.value;
}

/**
 * Screenshots for docs/console.md: only when JIT_CONSOLE_SCREENSHOTS is set
 * (a test run does not rewrite the docs), into docs/console/NAME-WIDTH.png.
 */
export async function screenshot(page: Page, name: string): Promise<void> {
  if (!process.env.JIT_CONSOLE_SCREENSHOTS) return;
  const dir = join(import.meta.dirname, '..', '..', 'docs', 'console');
  mkdirSync(dir, { recursive: true });
  const phone = (page.viewportSize()?.width ?? 0) < 600;
  // A phone shows one screenful (what an approver sees first); a desktop the whole page.
  await page.screenshot({ path: join(dir, `${name}-${phone ? 'phone' : 'desktop'}.png`), fullPage: !phone });
}
