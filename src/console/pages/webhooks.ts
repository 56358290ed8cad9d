import { Hono } from 'hono';
import { html } from 'hono/html';
import { z } from 'zod';
import type { BrokerDeps } from '../../broker/deps.ts';
import { requeueDeadDelivery, targetUrlLabel } from '../../broker/webhook-retry.ts';
import type { ConsoleEnv } from '../env.ts';
import { actorOf, csrfField, csrfSchema, notice, optional, parseForm, parseQuery, problemPage, when } from './common.ts';

/** Dead deliveries listed on the page, newest first (`jit webhooks list --dead --limit N` shows more). */
export const DEAD_SHOWN = 200;

const EVENT_ID = /^[A-Za-z0-9_-]{1,100}$/;
const Query = z.object({ retried: optional(z.string().regex(EVENT_ID, 'not an event id')) }).strict();
const RetryForm = z.object({ ...csrfSchema }).strict();

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
          : html`<table>
              <caption>${total > dead.length ? `The newest ${dead.length} of ${total} dead deliveries` : `${total} dead deliveries`}, newest first</caption>
              <thead><tr><th scope="col">Event</th><th scope="col">Request</th><th scope="col">Type</th><th scope="col">To</th><th scope="col">Attempts</th><th scope="col">Last HTTP status</th><th scope="col">Last error</th><th scope="col">Dead since</th><th scope="col">Retry</th></tr></thead>
              <tbody>
                ${dead.map(
                  (d) => html`<tr><td>${d.id}</td><td><a href="/console/requests/${d.request_id}/story">${d.request_id}</a></td><td>${d.type}</td>
                    <td>${d.target}: ${targetUrlLabel(d)}</td><td>${d.attempts}</td><td>${d.last_status ?? '-'}</td><td>${d.last_error ?? '-'}</td><td>${when(d.updated_at)}</td>
                    <td><form method="post" action="/console/webhooks/${d.id}/retry">${csrfField(c)}<button type="submit" aria-label="Retry ${d.id}">Retry</button></form></td></tr>`,
                )}
              </tbody>
            </table>`}`,
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
