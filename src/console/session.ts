import type { Context, MiddlewareHandler } from 'hono';
import { deleteCookie, getCookie, setCookie } from 'hono/cookie';
import { html } from 'hono/html';
import type { BrokerDeps } from '../broker/deps.ts';
import { BrokerError } from '../broker/errors.ts';
import * as passkeys from '../broker/passkeys.ts';
import { safeEqual } from '../lib/secrets.ts';
import { problemBody } from '../wire/error-codes.ts';
import type { ConsoleEnv } from './env.ts';
import { pageRenderer, titled } from './layout.ts';

/*
 * Console sessions as the browser carries them, and CSRF.
 *
 * The cookie `jit_console` holds the session id that finishEnrolment or
 * finishSignIn made (server-side, a new one at each sign-in: an id the
 * browser brings that the broker does not know is ignored and cleared, so
 * a planted id never becomes a session). Storage keeps only its hash;
 * sessionOf checks the idle and absolute timeouts and the approver.
 *
 * Every state change under /console needs the session's CSRF token, in the
 * form field `csrf` or the header `x-csrf-token` (constant-time compare),
 * and an Origin header, when the browser sends one, equal to the console's.
 * The sign-in and enrolment ceremonies have no session yet: they need the
 * console's Origin, and their WebAuthn challenge is single use.
 */

export const SESSION_COOKIE = 'jit_console';
export const CSRF_FIELD = 'csrf';
export const CSRF_HEADER = 'x-csrf-token';
/** Set by console.js on the live list's own reloads: no person's activity, so the session is not touched (and a lost session answers 401). */
export const LIVE_HEADER = 'x-console-live';

const LOOPBACK = new Set(['localhost', '127.0.0.1', '[::1]']);

/** How the console sets its cookie for this public URL: Secure unless plain http on the loopback interface. */
export function cookieSecure(publicUrl: string): boolean {
  const u = new URL(publicUrl);
  return !(u.protocol === 'http:' && LOOPBACK.has(u.hostname));
}

export function setSessionCookie(c: Context, publicUrl: string, session: passkeys.NewSession, now: number): void {
  setCookie(c, SESSION_COOKIE, session.id, {
    httpOnly: true,
    sameSite: 'Strict',
    path: '/console',
    secure: cookieSecure(publicUrl),
    maxAge: Math.max(1, Math.floor((session.expiresAt - now) / 1000)),
  });
}

export function clearSessionCookie(c: Context, publicUrl: string): void {
  deleteCookie(c, SESSION_COOKIE, { path: '/console', secure: cookieSecure(publicUrl), httpOnly: true, sameSite: 'Strict' });
}

/** A fetch or an event stream rather than a page load: answered 401 rather than sent to sign-in. */
export function isDataRequest(c: Context): boolean {
  const path = c.req.path;
  if (path.startsWith('/console/api/') || path === '/console/events' || isLiveRequest(c)) return true;
  return !(c.req.header('accept') ?? '').includes('text/html');
}

/** A request the page makes on its own (the live stream, its reloads): it does not restart the idle timeout. */
function isLiveRequest(c: Context): boolean {
  return c.req.path === '/console/events' || c.req.header(LIVE_HEADER) === '1';
}

/** A problem+json answer (the console's data endpoints answer like the API). */
export function problem(err: BrokerError, headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify(problemBody(err.code, err.message)), {
    status: err.status,
    headers: { 'content-type': 'application/problem+json', 'cache-control': 'no-store', ...headers },
  });
}

const STATE_CHANGING = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);

/** Whether an Origin header, if the browser sent one, is the console's own. */
function originAllowed(c: Context, origin: string, required: boolean): boolean {
  const sent = c.req.header('origin');
  if (sent === undefined) return !required;
  return sent === origin;
}

/**
 * The ceremony endpoints (no session yet): a state change only from the
 * console's own origin (browsers always send Origin on a fetch POST).
 */
export function requireOrigin(origin: string): MiddlewareHandler<ConsoleEnv> {
  return async (c, next) => {
    if (STATE_CHANGING.has(c.req.method) && !originAllowed(c, origin, true)) {
      return problem(new BrokerError('FORBIDDEN', `this request must come from the console's own page (Origin ${origin})`));
    }
    await next();
  };
}

/**
 * Everything behind it needs a valid session: without one, a page load is
 * sent to sign-in (303) and anything else answered 401. With one, `session`,
 * `csrf` and `page` are set; a state change then needs the CSRF token and
 * the console's Origin (403, nothing done, otherwise).
 */
export function requireSession(deps: BrokerDeps, origin: string): MiddlewareHandler<ConsoleEnv> {
  const publicUrl = deps.config.publicUrl;
  return async (c, next) => {
    const id = getCookie(c, SESSION_COOKIE);
    const session = id ? await passkeys.sessionOf(deps, id, { touch: !(c.req.method === 'GET' && isLiveRequest(c)) }) : undefined;
    if (!session) {
      if (id !== undefined) clearSessionCookie(c, publicUrl);
      const cleared = c.res.headers.get('set-cookie');
      const extra: Record<string, string> = cleared ? { 'set-cookie': cleared } : {};
      if ((c.req.method === 'GET' || c.req.method === 'HEAD') && !isDataRequest(c)) {
        return new Response(null, { status: 303, headers: { location: '/console/sign-in', 'cache-control': 'no-store', ...extra } });
      }
      if (isDataRequest(c)) return problem(new BrokerError('UNAUTHORIZED', 'sign in to the console first (no valid console session)'), extra);
      const page = pageRenderer(c, undefined);
      const res = await titled(page)('Signed out', signedOutBody(), { status: 401 });
      if (cleared) res.headers.append('set-cookie', cleared);
      return res;
    }
    c.set('session', session);
    c.set('csrf', session.csrf);
    c.set('page', pageRenderer(c, { name: session.approver.name, csrf: session.csrf }));
    if (STATE_CHANGING.has(c.req.method)) {
      if (!originAllowed(c, origin, false)) return refuse(c, `this request came from another site (Origin ${(c.req.header('origin') ?? '').slice(0, 100)}); nothing was changed`);
      const token = c.req.header(CSRF_HEADER) ?? (await csrfField(c));
      if (token === undefined || !safeEqual(token, session.csrf)) return refuse(c, 'the CSRF token is missing or wrong; nothing was changed (reload the page and try again)');
    }
    await next();
  };
}

/** The `csrf` field of a form body (urlencoded or multipart); Hono keeps the parsed body for the handler. */
async function csrfField(c: Context): Promise<string | undefined> {
  const type = c.req.header('content-type') ?? '';
  if (!type.startsWith('application/x-www-form-urlencoded') && !type.startsWith('multipart/form-data')) return undefined;
  let body: Record<string, unknown>;
  try {
    body = await c.req.parseBody({ all: true });
  } catch {
    return undefined;
  }
  const v = body[CSRF_FIELD];
  return typeof v === 'string' ? v : undefined;
}

async function refuse(c: Context<ConsoleEnv>, message: string): Promise<Response> {
  if (isDataRequest(c)) return problem(new BrokerError('FORBIDDEN', message));
  return titled(c.get('page'))('Refused', html`<p role="alert">${message}</p><p><a href="/console">Back to the console</a></p>`, { status: 403 });
}

function signedOutBody() {
  return html`<p role="alert">Your console session has ended (or you never signed in): nothing was changed.</p><p><a href="/console/sign-in">Sign in</a></p>`;
}
