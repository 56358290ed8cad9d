import type { Context } from 'hono';
import { html } from 'hono/html';
import type { HtmlEscapedString } from 'hono/utils/html';
import { z } from 'zod';
import { APPROVER_VOTER_PREFIX, approverVoter } from '../../broker/approvers.ts';
import type { Grant } from '../../broker/narrowing.ts';
import { inertText } from '../../lib/inert-text.ts';
import type { Storage } from '../../storage/storage.ts';
import type { ConsoleEnv } from '../env.ts';
import { notice } from '../layout.ts';

/*
 * What the reference pages share: times, agent-written text shown inertly,
 * scopes, the audit actor of the session, form and query parsing (zod,
 * strict; a refusal is a 4xx page saying what was wrong) and the CSRF check.
 */

export type Html = HtmlEscapedString | Promise<HtmlEscapedString>;
export type Ctx = Context<ConsoleEnv>;

/** A time as people read it in a table: ISO 8601 in UTC, to the second; `-` for none. */
export function when(ms: number | null | undefined): string {
  return ms === null || ms === undefined ? '-' : new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/**
 * Text an agent wrote on one line (a session key, a path, a ref), made inert
 * (src/lib/inert-text.ts) and escaped by `html`, in <code class="agent-text">
 * so it never looks like the page's own fields.
 */
export function agentText(text: string): Html {
  return html`<code class="agent-text">${inertText(text)}</code>`;
}

/** A reason an agent wrote, which may span lines: inert, escaped, in a <pre> that keeps its newlines (and wraps: the layout's `.reason`). */
export function agentBlock(text: string): Html {
  return html`<pre class="reason agent-text">${inertText(text)}</pre>`;
}

/** The layout's message box: role=status for outcomes, role=alert for refusals and warnings. */
export { notice };

/** A reason shortened to one line for a table cell (inert; the story page shows it whole). */
export function agentLine(text: string, max = 80): Html {
  const one = inertText(text).replace(/\n/g, ' ');
  return html`<span class="agent-text">${one.length > max ? `${one.slice(0, max - 1)}…` : one}</span>`;
}


/** A grant's pairs: every path with its capabilities, or the repo and every ref; none hidden. */
export function grantList(g: Grant): Html {
  if (g.resource === 'vault') {
    return html`<ul class="scope">${g.vault_paths.map((p) => html`<li>${agentText(p.path)} <span class="caps">[${p.capabilities.join(', ')}]</span></li>`)}</ul>`;
  }
  return html`<p>Repository ${agentText(g.repo)}</p><ul class="scope">${g.refs.map((r) => html`<li>${agentText(r)}</li>`)}</ul>`;
}

/** The audit actor of the session's approver: `approver:<id>`. */
export function actorOf(c: Ctx): string {
  return approverVoter(c.get('session').approver.id);
}

/** A voter or actor as shown: a registered approver's `approver:<id>` with their name (removed or not); anything else as written. */
export async function voterLabels(storage: Storage, keys: Iterable<string>): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const key of new Set(keys)) {
    if (!key.startsWith(APPROVER_VOTER_PREFIX)) continue;
    const row = await storage.approvers.get(key.slice(APPROVER_VOTER_PREFIX.length));
    if (row) out.set(key, `${row.name}${row.removed_at !== null ? ' (since removed)' : ''}`);
  }
  return out;
}

/** `key`, with the person's name when it is an approver's. */
export function voter(labels: Map<string, string>, key: string): Html {
  const name = labels.get(key);
  return name ? html`${name} <span class="id">(${key})</span>` : html`${inertText(key)}`;
}

/** An error page with its status: what was wrong, in one sentence, and a way back. */
export function problemPage(c: Ctx, status: 400 | 403 | 404 | 409 | 503, title: string, message: string, back?: { href: string; label: string }): Promise<Response> {
  return c.get('page')(
    title,
    html`<h1>${title}</h1>
      ${notice('error', message)}
      ${back ? html`<p><a href="${back.href}">${back.label}</a></p>` : ''}`,
    { status },
  );
}

/** The first zod issue as one line: `field: message`. */
function issueLine(err: z.ZodError): string {
  const issue = err.issues[0]!;
  if (issue.code === 'unrecognized_keys') return `unknown field${issue.keys.length === 1 ? '' : 's'} ${issue.keys.map((k) => `"${k}"`).join(', ')}`;
  return `${issue.path.join('.') || 'input'}: ${issue.message}`;
}

/** The query string through `schema` (strict: an unknown parameter is refused); the 400 page when it does not parse. */
export function parseQuery<T extends z.ZodType>(c: Ctx, schema: T, title: string): { ok: true; value: z.infer<T> } | { ok: false; response: Promise<Response> } {
  const r = schema.safeParse(c.req.query());
  if (r.success) return { ok: true, value: r.data };
  return { ok: false, response: problemPage(c, 400, title, `Bad search: ${issueLine(r.error)}.`) };
}

/**
 * A state-changing form: its body (urlencoded or multipart, one value per
 * field) through `schema`, which must accept `csrf` ({@link csrfSchema});
 * a body that does not parse is 400. The CSRF token itself was checked by
 * the console core's session middleware (session.ts) before any page runs.
 */
export async function parseForm<T extends z.ZodObject>(c: Ctx, schema: T, title: string): Promise<{ ok: true; value: z.infer<T> } | { ok: false; response: Response }> {
  let body: Record<string, unknown>;
  try {
    body = (await c.req.parseBody()) as Record<string, unknown>;
  } catch {
    return { ok: false, response: await problemPage(c, 400, title, 'The form could not be read: send it as application/x-www-form-urlencoded or multipart/form-data.') };
  }
  const r = schema.safeParse(body);
  if (r.success) return { ok: true, value: r.data };
  return { ok: false, response: await problemPage(c, 400, title, `The form was refused, nothing was changed: ${issueLine(r.error)}.`) };
}

/** The hidden CSRF field every state-changing form carries. */
export function csrfField(c: Ctx): Html {
  return html`<input type="hidden" name="csrf" value="${c.get('csrf')}">`;
}

/** A form's csrf field in a strict zod schema (checked by the session middleware; a fetch may send the header `x-csrf-token` instead). */
export const csrfSchema = { csrf: z.string().optional() };

/** An empty query value is no filter. */
export const optional = <T extends z.ZodType>(schema: T) => z.preprocess((v) => (v === '' ? undefined : v), schema.optional());
