import { Hono } from 'hono';
import { html } from 'hono/html';
import { z } from 'zod';
import { AGENT_NAME } from '../../broker/agents.ts';
import type { BrokerDeps } from '../../broker/deps.ts';
import { RequestStatus } from '../../wire/schemas.ts';
import type { ConsoleEnv } from '../env.ts';
import { agentLine, optional, parseQuery, when } from './common.ts';

export const HISTORY_PAGE_SIZE = 50;

const STATUSES = RequestStatus.options;

/** `<created_at>.<id>` of the last row shown: the next page starts after it. */
const CURSOR = /^(\d{1,15})\.([A-Za-z0-9_-]{1,100})$/;

const Query = z
  .object({
    agent: optional(z.string().regex(AGENT_NAME, 'not an agent name')),
    status: optional(RequestStatus),
    q: optional(z.string().max(200, 'at most 200 characters')),
    before: optional(z.string().regex(CURSOR, 'not a page cursor')),
  })
  .strict();

/** GET /history: every request, newest first, searchable by agent, status and text, paged. */
export function historyPage(deps: BrokerDeps): Hono<ConsoleEnv> {
  const app = new Hono<ConsoleEnv>();
  app.get('/history', async (c) => {
    const parsed = parseQuery(c, Query, 'Request history');
    if (!parsed.ok) return parsed.response;
    const { agent, status, q, before } = parsed.value;
    const m = before ? CURSOR.exec(before) : null;
    const rows = await deps.storage.requests.list({
      ...(agent ? { agentName: agent } : {}),
      ...(status ? { status } : {}),
      ...(q ? { search: q } : {}),
      ...(m ? { before: { createdAt: Number(m[1]), id: m[2]! } } : {}),
      limit: HISTORY_PAGE_SIZE + 1,
    });
    const shown = rows.slice(0, HISTORY_PAGE_SIZE);
    const last = shown[shown.length - 1];
    const next = rows.length > HISTORY_PAGE_SIZE && last ? new URLSearchParams({ ...(agent ? { agent } : {}), ...(status ? { status } : {}), ...(q ? { q } : {}), before: `${last.created_at}.${last.id}` }) : undefined;
    const filtered = Boolean(agent || status || q);
    return c.get('page')(
      'Request history',
      html`<h1>Request history</h1>
        <form method="get" action="/console/history" role="search">
          <p><label for="h-agent">Agent</label> <input id="h-agent" type="text" name="agent" value="${agent ?? ''}" autocomplete="off"></p>
          <p><label for="h-status">Status</label>
            <select id="h-status" name="status">
              <option value=""${status ? '' : ' selected'}>Any</option>
              ${STATUSES.map((s) => html`<option value="${s}"${s === status ? ' selected' : ''}>${s}</option>`)}
            </select></p>
          <p><label for="h-q">Search</label> <input id="h-q" name="q" type="text" inputmode="search" value="${q ?? ''}" aria-describedby="h-q-help">
            <span id="h-q-help">in request ids, agent names, session keys and reasons</span></p>
          <p><button type="submit">Search</button>${filtered ? html` <a href="/console/history">Clear the search</a>` : ''}</p>
        </form>
        ${shown.length === 0
          ? html`<p>${filtered || before ? 'No request matches.' : 'No requests yet.'}</p>`
          : html`<h2 id="h-results">${before ? 'Older requests' : 'Newest requests'}${filtered ? ' matching the search' : ''}, newest first</h2>
            <ol class="history" aria-labelledby="h-results">
              ${shown.map(
                (r) => html`<li class="request">
                  <p><a href="/console/requests/${r.id}/story"><code>${r.id}</code></a></p>
                  <p><strong>${r.status}</strong> · agent ${r.agent_name} · tier ${r.required_tier} · created ${when(r.created_at)}</p>
                  <p>${agentLine(r.reason, 160)}</p>
                </li>`,
              )}
            </ol>`}
        <nav aria-label="History pages">
          ${before ? html`<a href="/console/history?${new URLSearchParams({ ...(agent ? { agent } : {}), ...(status ? { status } : {}), ...(q ? { q } : {}) }).toString()}">Newest</a>` : ''}
          ${next ? html` <a href="/console/history?${next.toString()}" rel="next">Older requests</a>` : ''}
        </nav>`,
    );
  });
  return app;
}
