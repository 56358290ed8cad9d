import { Hono, type Context } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import { html } from 'hono/html';
import type { BrokerDeps } from '../broker/deps.ts';
import { BrokerError } from '../broker/errors.ts';
import * as passkeys from '../broker/passkeys.ts';
import { ceremonyRoutes, DEFAULT_SIGN_IN_LIMIT, type SignInLimit } from './ceremonies.ts';
import { credentialRoutes } from './credentials-page.ts';
import { decideRoutes } from './decide-pages.ts';
import type { ConsoleEnv } from './env.ts';
import { notice, pageRenderer, titled } from './layout.ts';
import { createChangeFeed } from './live.ts';
import { morePages } from './more-pages.ts';
import { clearSessionCookie, isDataRequest, problem, requireSession } from './session.ts';
import { loadStaticFiles, staticRoutes, type StaticFiles } from './static-files.ts';

/*
 * The operator console (SPEC §12): server-rendered HTML under /console,
 * mounted by the composition root (served-app.ts). It calls broker verbs
 * (passkeys.ts for the ceremonies, sessions and decisions; revoke.ts; the
 * storage reads the CLI's listings use) and never another adapter.
 */

export interface ConsoleOptions {
  /** How often the audit head is read while a console page listens for changes (ms). */
  livePollMs?: number;
  /** Heartbeat comments of /console/events while idle (ms). */
  heartbeatMs?: number;
  /** How long one /console/events stream lasts before the browser reconnects (ms). */
  streamLifetimeMs?: number;
  /** Sign-in ceremonies this process begins (each stores a challenge before anyone is known): a burst, then a steady rate. */
  signInLimit?: SignInLimit;
  /** The console's static files (a test passes a broken loader); loadStaticFiles by default. */
  loadStaticFiles?: () => StaticFiles;
}

/** Console requests carry forms and ceremony JSON: small. */
const MAX_CONSOLE_BODY = 64 * 1024;

/** The console app, to mount at /console. Logs, once, why the console is off when JIT_PUBLIC_URL cannot be a relying party. */
export function createConsole(deps: BrokerDeps, opts: ConsoleOptions = {}): Hono<ConsoleEnv> {
  const app = new Hono<ConsoleEnv>();
  const rp = passkeys.relyingPartyOf(deps.config.publicUrl);
  if (!rp.ok) {
    deps.log.warn({ public_url: deps.config.publicUrl }, `console: ${rp.message}`);
    app.all('*', (c) => unavailable(c, rp.message));
    return app;
  }
  let files: StaticFiles;
  try {
    files = (opts.loadStaticFiles ?? loadStaticFiles)();
  } catch (err) {
    // A broken install switches the console off, never the broker: Telegram and the CLI keep deciding.
    const message = 'the console is unavailable: its static files could not be read (a broken install; reinstall the broker: npm ci && npm run build)';
    deps.log.error({ err }, `console: ${message}`);
    app.all('*', (c) => unavailable(c, message));
    return app;
  }
  const origin = rp.rp.origin;
  app.use('*', bodyLimit({ maxSize: MAX_CONSOLE_BODY, onError: () => problem(new BrokerError('PAYLOAD_TOO_LARGE', `a console request body is at most ${MAX_CONSOLE_BODY} bytes`)) }));
  app.use('*', async (c, next) => {
    c.set('page', pageRenderer(c, undefined));
    await next();
  });
  app.onError((err, c) => consoleError(deps, err, c));

  // Public: the static files and the two ceremonies that start a session.
  staticRoutes(app, files);
  ceremonyRoutes(app, deps, origin, opts.signInLimit ?? DEFAULT_SIGN_IN_LIMIT);

  // Everything below needs a session, and a CSRF token for a state change.
  app.use('*', requireSession(deps, origin));
  app.post('/sign-out', async (c) => {
    await passkeys.endSession(deps, c.get('session'));
    clearSessionCookie(c, deps.config.publicUrl);
    return c.redirect('/console/sign-in', 303);
  });
  const feed = createChangeFeed(deps.storage, deps.log, opts.livePollMs ?? 1000);
  decideRoutes(app, deps, feed, { heartbeatMs: opts.heartbeatMs ?? 15_000, lifetimeMs: opts.streamLifetimeMs ?? 5 * 60_000 });
  credentialRoutes(app, deps);
  app.route('/', morePages(deps));
  // Last: a path no router above answers is the console's own 404 (a page with the CSP for a page load, problem+json for data),
  // not the API's problem+json (mounted sub-apps' notFound handlers are not used by the parent app).
  app.all('*', (c) => {
    throw new BrokerError('NOT_FOUND', `there is no console page at ${c.req.path.slice(0, 200)}`);
  });
  return app;
}

/** 503 with the one line an operator needs (every console route, page or data). */
async function unavailable(c: Context, message: string): Promise<Response> {
  if (isDataRequest(c)) return problem(new BrokerError('UNAVAILABLE', message));
  return titled(pageRenderer(c, undefined))('Console unavailable', html`${notice('error', message)}`, { status: 503 });
}

/** A verb's refusal as a page (or problem+json for data); anything else is logged and answered 500 without detail. */
async function consoleError(deps: BrokerDeps, err: Error, c: Context<ConsoleEnv>): Promise<Response> {
  let known: BrokerError;
  if (err instanceof BrokerError) known = err;
  else {
    (c.get('log' as never) as BrokerDeps['log'] | undefined ?? deps.log).error({ err }, 'console: unhandled error');
    known = new BrokerError('INTERNAL', 'internal error; the operator can find it in the broker log by X-Request-Id');
  }
  const retry = known.status === 503 || known.status === 429 || known.code === 'VAULT_UNAVAILABLE' ? String(known.extra.retryAfterSeconds ?? 5) : undefined;
  if (retry !== undefined) c.header('retry-after', retry);
  if (isDataRequest(c)) return problem(known, retry !== undefined ? { 'retry-after': retry } : {});
  const page = c.get('page') ?? pageRenderer(c, undefined);
  return titled(page)(known.status >= 500 ? 'Error' : known.status === 404 ? 'Not found' : 'Refused', html`${notice('error', known.message)}<p><a href="/console">Back to the console</a></p>`, { status: known.status });
}
