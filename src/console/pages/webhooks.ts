import { Hono } from 'hono';
import { html } from 'hono/html';
import { z } from 'zod';
import type { BrokerDeps } from '../../broker/deps.ts';
import { requeueDeadDelivery, targetUrlLabel } from '../../broker/webhook-retry.ts';
import type { ConsoleEnv } from '../env.ts';
import type { OutboxRow } from '../../storage/rows.ts';
import { actorOf, csrfField, csrfSchema, notice, optional, parseForm, parseQuery, problemPage, when, type Html } from './common.ts';

/** Dead deliveries listed on the page, newest first (`jit webhooks list --dead --limit N` shows more). */
export const DEAD_SHOWN = 200;

const EVENT_ID = /^[A-Za-z0-9_-]{1,100}$/;
const Query = z.object({ retried: optional(z.string().regex(EVENT_ID, 'not an event id')) }).strict();
const RetryForm = z.object({ ...csrfSchema }).strict();

/** Where a delivery stands, in words. */
function deliveryState(d: OutboxRow): string {
  if (d.state === 'delivered') return `delivered ${when(d.delivered_at)}`;
  if (d.state === 'pending') return `pending, next attempt ${when(d.next_attempt_at)}`;
  if (d.state === 'dead') return `dead since ${when(d.updated_at)}`;
  return 'being sent';
}

/** One webhook delivery as a box (readable on a phone): event, type, state, attempts, last answer, target (no secret), last error. */
export function deliveryItem(d: OutboxRow, o: { request?: boolean; retry?: Html } = {}): Html {
  return html`<li class="request">
    <p><code>${d.id}</code> · ${d.type}${o.request ? html` · request <a href="/console/requests/${d.request_id}/story">${d.request_id}</a>` : ''}</p>
    <dl class="facts">
      <dt>State</dt><dd>${deliveryState(d)}</dd>
      <dt>Attempts</dt><dd>${d.attempts}</dd>
      <dt>Last HTTP status</dt><dd>${d.last_status ?? '-'}</dd>
      <dt>To</dt><dd>${d.target}: ${targetUrlLabel(d)}</dd>
      <dt>Last error</dt><dd>${d.last_error ?? '-'}</dd>
    </dl>
    ${o.retry ?? ''}
  </li>`;
}

/** GET /webhooks: dead deliveries, each with Retry; POST /webhooks/:id/retry moves one back to pending. */
export function webhooksPage(deps: BrokerDeps): Hono<ConsoleEnv> {
  const app = new Hono<ConsoleEnv>();
  app.get('/webhooks', async (c) => {
    const parsed = parseQuery(c, Query, 'Dead webhooks');
    if (!parsed.ok) return parsed.response;
    const { retried } = parsed.value;
    const [dead, total] = await Promise.all([deps.storage.outbox.list({ state: 'dead', limit: DEAD_SHOWN }), deps.storage.outbox.deadCount()]);
    return c.get('page')(
      'Dead webhooks',
      html`<h1>Dead webhooks</h1>
        ${retried ? notice('ok', `Re-queued ${retried}: the broker sends it within a second or so.`) : ''}
        <p>A delivery is dead when its receiver kept failing until the retries ran out. Retry sends it again from the first attempt.</p>
        ${dead.length === 0
          ? html`<p>No dead webhook deliveries.</p>`
          : html`<h2 id="w-dead">${total > dead.length ? `The newest ${dead.length} of ${total} dead deliveries` : `${total} dead deliveries`}, newest first</h2>
            <ol class="deliveries" aria-labelledby="w-dead">
              ${dead.map((d) => deliveryItem(d, { request: true, retry: html`<form method="post" action="/console/webhooks/${d.id}/retry">${csrfField(c)}<button type="submit" aria-label="Retry ${d.id}">Retry</button></form>` }))}
            </ol>`}`,
    );
  });

  app.post('/webhooks/:id/retry', async (c) => {
    const id = c.req.param('id');
    const form = await parseForm(c, RetryForm, 'Retry a webhook');
    if (!form.ok) return form.response;
    if (!EVENT_ID.test(id)) return problemPage(c, 404, 'Webhook event not found', 'There is no webhook event with that id.', { href: '/console/webhooks', label: 'Dead webhooks' });
    // This process is the service: its own OPENCLAW_HOOKS_URL is what the dispatcher uses.
    const r = await requeueDeadDelivery(deps, id, actorOf(c), deps.config.openclaw !== undefined);
    if (!r.ok) {
      return problemPage(c, r.code === 'NOT_FOUND' ? 404 : 409, r.code === 'NOT_FOUND' ? 'Webhook event not found' : 'Not re-queued', `${r.why}.`, { href: '/console/webhooks', label: 'Dead webhooks' });
    }
    return c.redirect(`/console/webhooks?retried=${encodeURIComponent(id)}`, 303);
  });
  return app;
}
