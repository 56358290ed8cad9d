import type { HtmlEscapedString } from 'hono/utils/html';
import type { ConsoleSession } from '../broker/passkeys.ts';

/*
 * What the console's core (app, session, layout: src/console/app.ts …) gives
 * its page modules (decide-pages.ts, credentials-page.ts, pages/*.ts). Pages
 * are Hono routers of ConsoleEnv mounted under /console behind the session
 * middleware, so `session` and `csrf` are always set for them; they render
 * with `page`.
 */

/** Renders a whole HTML page: the layout (navigation, sign-out) and its security headers (CSP …) around `body`, which brings its own h1. */
export type PageRenderer = (title: string, body: HtmlEscapedString | Promise<HtmlEscapedString>, init?: { status?: number }) => Promise<Response>;

export type ConsoleEnv = {
  Variables: {
    session: ConsoleSession;
    /** The session's CSRF token: every form that changes state carries it in a field named `csrf`. */
    csrf: string;
    page: PageRenderer;
  };
};
