import type { Context } from 'hono';
import { html } from 'hono/html';
import type { HtmlEscapedString } from 'hono/utils/html';
import type { PageRenderer } from './env.ts';

/*
 * The console's one page layout and the headers every HTML answer carries.
 * Pages are server-rendered with hono/html's `html` template, which escapes
 * every interpolated string; the only scripts are two static files served
 * from /console/static (no inline script or style: see CONTENT_SECURITY_POLICY).
 */

/** No inline script or style, nothing from elsewhere, no framing, forms post only to us. */
export const CONTENT_SECURITY_POLICY =
  "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/** Headers of every HTML answer of the console. */
export function htmlHeaders(): Record<string, string> {
  return {
    'content-type': 'text/html; charset=utf-8',
    'content-security-policy': CONTENT_SECURITY_POLICY,
    // Pages show live state and carry the CSRF token: never stored, never shown from history.
    'cache-control': 'no-store',
    'x-content-type-options': 'nosniff',
    'x-frame-options': 'DENY',
    // The enrolment page's URL holds its token: no Referer leaves the console. (Not no-referrer:
    // with it, Chromium sends `Origin: null` on form posts, which the Origin check refuses.)
    'referrer-policy': 'same-origin',
  };
}

/** Who is signed in, for the navigation (absent on the sign-in and enrolment pages). */
export interface LayoutUser {
  name: string;
  csrf: string;
}

const NAV: readonly [string, string][] = [
  ['/console', 'Pending'],
  ['/console/credentials', 'Credentials'],
  ['/console/history', 'History'],
  ['/console/agents', 'Agents'],
  ['/console/audit', 'Audit'],
  ['/console/webhooks', 'Webhooks'],
  ['/console/keys', 'Keys'],
  ['/console/policies', 'Policies'],
];

/**
 * The page renderer of one request: the layout (title, navigation, the
 * signed-in approver and the "Sign out" button) around `body`, as a whole
 * HTML response. `body` brings its own h1 (see {@link titled}).
 */
export function pageRenderer(c: Context, user: LayoutUser | undefined): PageRenderer {
  return async (title, body, init) => {
    const current = c.req.path;
    const nav = user
      ? html`<nav aria-label="Console">
  <ul class="nav">
    ${NAV.map(([href, label]) => html`<li><a href="${href}"${current === href ? html` aria-current="page"` : ''}>${label}</a></li>`)}
  </ul>
  <form method="post" action="/console/sign-out" class="sign-out">
    <input type="hidden" name="csrf" value="${user.csrf}">
    <span class="who">Signed in as <strong>${user.name}</strong></span>
    <button type="submit">Sign out</button>
  </form>
</nav>`
      : '';
    const doc = await html`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${title} · jit-broker console</title>
<link rel="stylesheet" href="/console/static/console.css">
<link rel="icon" href="/console/static/favicon.svg" type="image/svg+xml">
${user ? html`<meta name="csrf-token" content="${user.csrf}">` : ''}
<script src="/console/static/webauthn.js" defer></script>
<script src="/console/static/console.js" defer></script>
</head>
<body>
<header class="top">
  <p class="brand"><a href="/console">jit-broker console</a></p>
  ${nav}
</header>
<main id="main">
${await body}
</main>
</body>
</html>
`;
    return new Response(doc.toString(), { status: init?.status ?? 200, headers: htmlHeaders() });
  };
}

/** A renderer whose pages start with their title as the h1 (the core's pages; the reference pages write their own). */
export function titled(render: PageRenderer): PageRenderer {
  return async (title, body, init) => render(title, html`<h1>${title}</h1>
${await body}`, init);
}

/** A message box (role=status for outcomes, role=alert for refusals). */
export function notice(kind: 'ok' | 'error' | 'info', text: string | HtmlEscapedString | Promise<HtmlEscapedString>) {
  return html`<div class="notice notice-${kind}" role="${kind === 'error' ? 'alert' : 'status'}">${text}</div>`;
}

/** An ISO time, machine-readable and shown in UTC. */
export function time(ms: number | null | undefined) {
  if (ms === null || ms === undefined) return html`<span>never</span>`;
  const iso = new Date(ms).toISOString();
  return html`<time datetime="${iso}">${iso.replace('T', ' ').replace(/\.\d{3}Z$/, ' UTC')}</time>`;
}
