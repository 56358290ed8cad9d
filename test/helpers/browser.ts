import { existsSync } from 'node:fs';
import { chromium, type Browser, type BrowserContext, type CDPSession, type Page } from 'playwright-core';

/*
 * A real browser for the console's tests (issue 20, item 6): Debian's
 * `chromium` package (installed by .ci/run when missing) driven by
 * playwright-core with `executablePath` set. playwright-core never downloads
 * a browser; nothing here runs `playwright install`.
 *
 * One browser per test file (a launch costs a few hundred milliseconds to
 * seconds on a loaded machine), a new context per test (its own cookies and
 * storage), and a CDP virtual authenticator per page for the passkeys.
 */

/**
 * The Chromium binary: JIT_TEST_CHROMIUM when set, else the real binary
 * Debian's `chromium` package installs, /usr/lib/chromium/chromium.
 * playwright-core launches both it and the package's /usr/bin/chromium
 * (a shell launcher that adds the flags of /etc/chromium.d/ and execs the
 * binary); the binary is preferred so nothing but CHROMIUM_ARGS applies,
 * and the launcher is the fallback.
 */
export function chromiumPath(): string {
  const candidates = [process.env.JIT_TEST_CHROMIUM, '/usr/lib/chromium/chromium', '/usr/bin/chromium'].filter((p): p is string => !!p);
  const found = candidates.find((p) => existsSync(p));
  if (!found) {
    throw new Error(`no Chromium found (looked at ${candidates.join(', ')}): install Debian's "chromium" package (.ci/run does) or set JIT_TEST_CHROMIUM`);
  }
  return found;
}

export const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/** Launches headless Chromium; close it in afterAll. */
export async function launchBrowser(): Promise<Browser> {
  return chromium.launch({ executablePath: chromiumPath(), headless: true, args: CHROMIUM_ARGS, timeout: 60_000 });
}

/** Desktop and phone viewports (screenshots, and "readable on a phone"). */
export const DESKTOP = { width: 1280, height: 800 };
export const PHONE = { width: 390, height: 844 };

/** A fresh context (its own cookies) with generous timeouts for a shared, slow machine. */
export async function newContext(
  browser: Browser,
  o: { viewport?: { width: number; height: number }; baseURL?: string; javaScriptEnabled?: boolean; storageState?: Awaited<ReturnType<BrowserContext['storageState']>> } = {},
): Promise<BrowserContext> {
  const context = await browser.newContext({
    viewport: o.viewport ?? DESKTOP,
    ...(o.javaScriptEnabled === false ? { javaScriptEnabled: false } : {}),
    ...(o.storageState ? { storageState: o.storageState } : {}),
    ...(o.baseURL ? { baseURL: o.baseURL } : {}),
    ...(o.viewport && o.viewport.width < 600 ? { isMobile: true, hasTouch: true, deviceScaleFactor: 2 } : {}),
  });
  context.setDefaultTimeout(20_000);
  context.setDefaultNavigationTimeout(30_000);
  return context;
}

/** A credential held by a virtual authenticator (CDP WebAuthn.Credential). */
export interface VirtualCredential {
  credentialId: string;
  isResidentCredential: boolean;
  rpId?: string;
  privateKey: string;
  userHandle?: string;
  signCount: number;
}

/**
 * A CDP virtual authenticator on one page: CTAP2, internal (a platform
 * passkey), resident keys, user verification that always succeeds, presence
 * simulated (no prompt). `replace()` swaps it for a fresh one holding no
 * credential (or the ones given): the "wrong passkey" of the step-up tests.
 */
export interface VirtualAuthenticator {
  cdp: CDPSession;
  readonly id: string;
  credentials(): Promise<VirtualCredential[]>;
  /** Adds a credential (e.g. another person's, taken from their authenticator). */
  addCredential(credential: VirtualCredential): Promise<void>;
  /** Removes this authenticator: a ceremony then finds no passkey. */
  remove(): Promise<void>;
  /** Removes this authenticator and adds a new one (empty, or holding `credentials`). */
  replace(credentials?: VirtualCredential[]): Promise<void>;
}

const AUTHENTICATOR_OPTIONS = {
  protocol: 'ctap2',
  transport: 'internal',
  hasResidentKey: true,
  hasUserVerification: true,
  isUserVerified: true,
  automaticPresenceSimulation: true,
} as const;

export async function addVirtualAuthenticator(page: Page): Promise<VirtualAuthenticator> {
  const cdp = await page.context().newCDPSession(page);
  await cdp.send('WebAuthn.enable', { enableUI: false });
  let id = (await cdp.send('WebAuthn.addVirtualAuthenticator', { options: AUTHENTICATOR_OPTIONS })).authenticatorId;
  let removed = false;
  const self: VirtualAuthenticator = {
    cdp,
    get id() {
      return id;
    },
    async credentials() {
      if (removed) return [];
      const { credentials } = await cdp.send('WebAuthn.getCredentials', { authenticatorId: id });
      return credentials as VirtualCredential[];
    },
    async addCredential(credential) {
      await cdp.send('WebAuthn.addCredential', { authenticatorId: id, credential });
    },
    async remove() {
      if (removed) return;
      await cdp.send('WebAuthn.removeVirtualAuthenticator', { authenticatorId: id });
      removed = true;
    },
    async replace(credentials = []) {
      await self.remove();
      id = (await cdp.send('WebAuthn.addVirtualAuthenticator', { options: AUTHENTICATOR_OPTIONS })).authenticatorId;
      removed = false;
      for (const c of credentials) await self.addCredential(c);
    },
  };
  return self;
}

/** Turns the page's HTTP cache off (CDP), so every load transfers everything: the cold weight of a page. */
export async function disableCache(page: Page): Promise<void> {
  const cdp = await page.context().newCDPSession(page);
  await cdp.send('Network.enable');
  await cdp.send('Network.setCacheDisabled', { cacheDisabled: true });
}

/**
 * The bytes a page load transferred, by kind, measured from the browser's
 * Resource Timing (transferSize: headers + body as received, 0 when cached)
 * plus the navigation itself. Call after the load event.
 */
export async function pageWeight(page: Page): Promise<{ html: number; css: number; js: number; other: number; total: number; requests: number }> {
  return page.evaluate(() => {
    // No DOM lib in the project's tsconfig: the page's entries are typed by hand.
    type Entry = { name: string; initiatorType: string; transferSize: number };
    const perf = (globalThis as any).performance;
    const nav = perf.getEntriesByType('navigation')[0] as Entry | undefined;
    const res = perf.getEntriesByType('resource') as Entry[];
    const w = { html: nav?.transferSize ?? 0, css: 0, js: 0, other: 0, total: 0, requests: 1 + res.length };
    for (const r of res) {
      if (r.initiatorType === 'link' || r.name.endsWith('.css')) w.css += r.transferSize;
      else if (r.initiatorType === 'script' || r.name.endsWith('.js')) w.js += r.transferSize;
      else w.other += r.transferSize;
    }
    w.total = w.html + w.css + w.js + w.other;
    return w;
  });
}
