import type { Hono } from 'hono';
import { html } from 'hono/html';
import { enrolmentApprover } from '../broker/approvers.ts';
import type { BrokerDeps } from '../broker/deps.ts';
import { BrokerError } from '../broker/errors.ts';
import * as passkeys from '../broker/passkeys.ts';
import type { ConsoleEnv } from './env.ts';
import { AuthenticationResponse, jsonBody, RegistrationResponse } from './forms.ts';
import { notice, titled } from './layout.ts';
import { requireOrigin, setSessionCookie } from './session.ts';

/*
 * The two ceremonies that start a session: enrolment (the one-time link an
 * operator's `jit approver add` printed: register a passkey) and sign-in
 * (an assertion of a registered passkey). The pages need nothing but their
 * button; console.js runs the WebAuthn ceremony against the JSON endpoints,
 * which carry it to the broker's verbs (every check is there).
 */

const NEEDS_JS = html`<noscript><p role="note">Passkeys need JavaScript: enable it for this page.</p></noscript>`;
const STATUS = html`<p id="ceremony-status" role="status" aria-live="polite"></p>`;

/**
 * How many sign-in ceremonies this process begins: `burst` at once, then
 * `perMinute`. Beginning one stores a challenge (5 minutes) before anyone is
 * known and needs only an Origin header, which any client can send; the
 * limit bounds what an unauthenticated caller can make the database hold
 * (burst + 5 x perMinute rows per broker). People sign in rarely.
 */
export interface SignInLimit {
  burst: number;
  perMinute: number;
  /** Monotonic milliseconds (performance.now by default; injected by tests). */
  now?: () => number;
}

export const DEFAULT_SIGN_IN_LIMIT: SignInLimit = { burst: 60, perMinute: 30 };

/** A token bucket: take() is false when the bucket is empty, with the seconds until the next token. */
function tokenBucket(limit: SignInLimit): { take(): { ok: true } | { ok: false; retryAfterSeconds: number } } {
  const now = limit.now ?? (() => performance.now());
  const perMs = limit.perMinute / 60_000;
  let tokens = limit.burst;
  let at = now();
  return {
    take() {
      const t = now();
      tokens = Math.min(limit.burst, tokens + (t - at) * perMs);
      at = t;
      if (tokens >= 1) {
        tokens -= 1;
        return { ok: true };
      }
      return { ok: false, retryAfterSeconds: Math.max(1, Math.ceil((1 - tokens) / perMs / 1000)) };
    },
  };
}

/** Registers the public ceremony routes on `app` (before the session middleware). */
export function ceremonyRoutes(app: Hono<ConsoleEnv>, deps: BrokerDeps, origin: string, signInLimit: SignInLimit = DEFAULT_SIGN_IN_LIMIT): void {
  const signIns = tokenBucket(signInLimit);
  const publicUrl = deps.config.publicUrl;
  app.use('/sign-in/*', requireOrigin(origin));
  app.use('/enrol/*', requireOrigin(origin));

  app.get('/sign-in', (c) =>
    titled(c.get('page'))(
      'Sign in',
      html`<p>Sign in with the passkey you registered from your enrolment link.</p>
<button type="button" data-ceremony="sign-in">Sign in</button>
${STATUS}${NEEDS_JS}`,
    ),
  );

  app.post('/sign-in/options', async (c) => {
    const taken = signIns.take();
    if (!taken.ok) {
      throw new BrokerError('RATE_LIMITED', 'too many sign-ins begun on this broker just now; try again shortly', { retryAfterSeconds: taken.retryAfterSeconds });
    }
    return c.json(await passkeys.beginSignIn(deps), 200, { 'cache-control': 'no-store' });
  });

  app.post('/sign-in/finish', async (c) => {
    const response = await jsonBody(c, AuthenticationResponse, 'sign-in');
    const session = await passkeys.finishSignIn(deps, response);
    setSessionCookie(c, publicUrl, session, deps.clock.now());
    return c.json({ ok: true, location: '/console' }, 200, { 'cache-control': 'no-store' });
  });

  app.get('/enrol/:token', async (c) => {
    const approver = await enrolmentApprover(deps, c.req.param('token'));
    if (!approver) {
      return titled(c.get('page'))(
        'Enrolment link not valid',
        notice('error', 'This enrolment link is unknown, already used or expired (links work once, for 15 minutes). Ask the operator for a new one: jit approver add NAME, after jit approver remove NAME.'),
        { status: 404 },
      );
    }
    return titled(c.get('page'))(
      'Register your passkey',
      html`<p>Approver <strong>${approver.name}</strong>: register a passkey on this device. You will sign in to the console with it, and confirm high-tier approvals with it.</p>
<button type="button" data-ceremony="enrol">Register passkey</button>
${STATUS}${NEEDS_JS}`,
    );
  });

  app.post('/enrol/:token/options', async (c) => {
    const { options } = await passkeys.beginEnrolment(deps, c.req.param('token'));
    return c.json(options, 200, { 'cache-control': 'no-store' });
  });

  app.post('/enrol/:token/finish', async (c) => {
    const response = await jsonBody(c, RegistrationResponse, 'passkey registration');
    const session = await passkeys.finishEnrolment(deps, c.req.param('token'), response);
    setSessionCookie(c, publicUrl, session, deps.clock.now());
    return c.json({ ok: true, location: '/console' }, 200, { 'cache-control': 'no-store' });
  });
}
