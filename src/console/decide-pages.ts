import type { Context, Hono } from 'hono';
import { html } from 'hono/html';
import type { HtmlEscapedString } from 'hono/utils/html';
import { approverVoter } from '../broker/approvers.ts';
import { approvalsNeeded, type DecideOutcome } from '../broker/decide.ts';
import type { BrokerDeps } from '../broker/deps.ts';
import { BrokerError, ERROR_CODES } from '../broker/errors.ts';
import { ceilingOf, grantOf, requestedGrant, sameGrant, type Grant } from '../broker/narrowing.ts';
import * as passkeys from '../broker/passkeys.ts';
import type { RequestRow } from '../broker/rows.ts';
import { requestView } from '../broker/view.ts';
import { formatDuration } from '../lib/duration.ts';
import { isId } from '../lib/ids.ts';
import { inertText } from '../lib/inert-text.ts';
import type { ConsoleEnv } from './env.ts';
import { decisionForm } from './forms.ts';
import { htmlHeaders, notice, time, titled } from './layout.ts';
import { eventStream, type ChangeFeed, type LiveOptions } from './live.ts';
import { isDataRequest } from './session.ts';

/*
 * The pending requests and their decisions: GET /console (the list, live),
 * GET /console/api/pending (the list's fragment, for console.js),
 * GET /console/events (the live signal), GET /console/requests/:id (one
 * request: Approve with narrowing, Deny with a reason),
 * POST /console/requests/:id/decision and …/step-up. Decisions go through
 * decideInConsole, the same decideIn as Telegram and `jit approve`.
 */

/** At most this many pending requests are listed (the oldest deadlines first); the page says when there are more. */
const LIST_LIMIT = 200;

type Html = HtmlEscapedString | Promise<HtmlEscapedString>;

/** A request's figures for an approver: the whole request, nothing hidden. */
async function requestFacts(deps: BrokerDeps, row: RequestRow, voter: string) {
  const view = await requestView(deps, row);
  const votes = row.status === 'pending' ? await deps.storage.votes.of(row.id) : [];
  const approvals = row.status === 'pending' ? await deps.storage.votes.approvals(row.id) : [];
  const requested = requestedGrant(row);
  const ceiling = ceilingOf(requested, approvals);
  return {
    view,
    requested,
    ceiling,
    approvals: approvals.length,
    needed: approvalsNeeded(deps.config, row),
    voted: votes.some((v) => v.approver === voter),
    stepUp: passkeys.approvalNeedsStepUp(deps.config, row),
  };
}
type Facts = Awaited<ReturnType<typeof requestFacts>>;

/** Agent-written text, inert (no control, bidi or invisible characters) and escaped by the template. */
const inert = (s: string | null | undefined) => (s ? inertText(s) : '');

function scopeList(grant: Grant): Html {
  if (grant.resource === 'vault') {
    return html`<ul class="scope">${grant.vault_paths.map((p) => html`<li><code>${p.path}</code>: ${p.capabilities.join(', ')}</li>`)}</ul>`;
  }
  return html`<p>Repository <code>${grant.repo}</code></p><ul class="scope">${grant.refs.map((r) => html`<li><code>${r}</code></li>`)}</ul>`;
}

/** The facts under a heading: in the list, the request's id and a link to its page; on its page (whose title is the id), "What was asked". */
function facts(f: Facts, headingId: string, link: boolean): Html {
  const v = f.view;
  const row = html`<dl class="facts">
  <dt>Agent</dt><dd>${v.agent}</dd>
  <dt>Session</dt><dd><code>${inert(v.session_key)}</code></dd>
  <dt>Tier</dt><dd>${v.tier} (required tier ${v.required_tier})${f.stepUp ? html` · approving needs your passkey` : ''}</dd>
  <dt>Reason</dt><dd class="reason">${inert(v.reason) || html`<em>none given</em>`}</dd>
  <dt>${v.resource === 'vault' ? 'Paths' : 'Refs'}</dt><dd>${scopeList(f.requested)}</dd>
  <dt>TTL</dt><dd>${formatDuration(v.ttl_seconds)}</dd>
  <dt>Policy rules</dt><dd>${v.rules.length ? v.rules.map((r, i) => html`${i ? ', ' : ''}<code>${r}</code>`) : 'none'}</dd>
  <dt>Times out</dt><dd>${time(v.approval_expires_at ? Date.parse(v.approval_expires_at) : null)}</dd>
  ${f.needed > 1 ? html`<dt>Approvals</dt><dd>${f.approvals} of ${f.needed}${f.voted ? ' (you have voted)' : ''}</dd>` : ''}
  ${!sameGrant(f.ceiling, f.requested) ? html`<dt>On offer now</dt><dd>${scopeList(f.ceiling)} for ${formatDuration(f.ceiling.ttl_seconds)} (earlier approvals narrowed it)</dd>` : ''}
</dl>`;
  const heading = link ? html`Request <code>${v.id}</code> · <a href="/console/requests/${v.id}">details and narrowing</a>` : html`What was asked`;
  return html`<h2 id="${headingId}">${heading}</h2>${row}`;
}

function hidden(csrf: string, decision: 'approve' | 'deny') {
  return html`<input type="hidden" name="csrf" value="${csrf}"><input type="hidden" name="decision" value="${decision}">`;
}

const STEP_UP_NOTE = html`<p class="note">Approving this request needs a fresh passkey confirmation (step-up), which needs JavaScript. Deny works without it.</p>`;

/** One pending request in the list: its facts and its Approve and Deny buttons. */
function pendingItem(f: Facts, csrf: string): Html {
  const id = f.view.id;
  const h = `h-${id}`;
  return html`<article class="request" aria-labelledby="${h}">
${facts(f, h, true)}
${f.stepUp ? STEP_UP_NOTE : ''}
<div class="actions">
  <form method="post" action="/console/requests/${id}/decision"${f.stepUp ? html` data-step-up="/console/requests/${id}/step-up"` : ''}>
    ${hidden(csrf, 'approve')}<input type="hidden" name="assertion" value="">
    <button type="submit" class="approve" aria-describedby="${h}">Approve</button>
  </form>
  <form method="post" action="/console/requests/${id}/decision">
    ${hidden(csrf, 'deny')}
    <button type="submit" class="deny" aria-describedby="${h}">Deny</button>
  </form>
</div>
</article>`;
}

async function pendingRows(deps: BrokerDeps): Promise<{ rows: RequestRow[]; more: boolean }> {
  const rows = await deps.storage.requests.list({ status: 'pending', limit: LIST_LIMIT + 1 });
  const more = rows.length > LIST_LIMIT;
  const shown = rows.slice(0, LIST_LIMIT);
  shown.sort((a, b) => (a.approval_expires_at ?? Infinity) - (b.approval_expires_at ?? Infinity) || a.created_at - b.created_at);
  return { rows: shown, more };
}

/** The list's fragment: what GET /console shows and console.js swaps in on a change. */
async function pendingFragment(deps: BrokerDeps, c: Context<ConsoleEnv>): Promise<HtmlEscapedString> {
  const session = c.get('session');
  const voter = approverVoter(session.approver.id);
  const { rows, more } = await pendingRows(deps);
  const items = await Promise.all(rows.map(async (r) => pendingItem(await requestFacts(deps, r, voter), c.get('csrf'))));
  return html`<section id="pending" aria-label="Pending requests" data-live="/console/api/pending">
${rows.length === 0 ? html`<p>No pending requests.</p>` : html`<p>${rows.length} pending request${rows.length === 1 ? '' : 's'}, the soonest to time out first.</p>`}
${more ? notice('info', `Only the ${LIST_LIMIT} newest pending requests are listed; deny or decide some to see the rest.`) : ''}
${items}
</section>`;
}

function outcomeText(o: DecideOutcome): { kind: 'ok' | 'error' | 'info'; text: string; status: number } {
  switch (o.outcome) {
    case 'approved':
      return { kind: 'ok', text: `Approved${o.narrowed ? ' (narrowed)' : ''}: the agent can now claim its credential.`, status: 200 };
    case 'denied':
      return { kind: 'ok', text: 'Denied.', status: 200 };
    case 'vote_recorded':
      return { kind: 'ok', text: `Your approval is recorded: ${o.approvals} of ${o.needed} approvals; the request stays pending until ${o.needed} approvers agree.`, status: 200 };
    case 'already_decided':
      return { kind: 'info', text: `Already decided: the request is ${o.status.replace('_', ' ')}${o.decidedBy ? ` (by ${o.decidedBy})` : ''}. Nothing was changed.`, status: 409 };
    case 'already_voted':
      return { kind: 'info', text: `You have already voted on this request (${o.approvals} of ${o.needed} approvals). Nothing was changed.`, status: 409 };
    case 'refused':
      return { kind: 'error', text: `Refused: ${o.message.replace(/\.$/, '')}. Nothing was changed.`, status: ERROR_CODES[o.code].status };
  }
}

async function pendingRequest(deps: BrokerDeps, id: string): Promise<RequestRow> {
  const row = isId('req', id) ? await deps.storage.requests.get(id) : undefined;
  if (!row) throw new BrokerError('NOT_FOUND', `request ${id.slice(0, 40)} not found`);
  return row;
}

function narrowingForm(f: Facts, csrf: string): Html {
  const id = f.view.id;
  const g = f.ceiling;
  const caps = g.resource === 'vault' ? [...new Set(g.vault_paths.flatMap((p) => p.capabilities))] : [];
  return html`<form method="post" action="/console/requests/${id}/decision" class="decide"${f.stepUp ? html` data-step-up="/console/requests/${id}/step-up"` : ''}>
  ${hidden(csrf, 'approve')}<input type="hidden" name="assertion" value="">
  <fieldset>
    <legend>Narrow before approving (optional)</legend>
    ${
      g.resource === 'vault'
        ? html`${g.vault_paths.map((p, i) => html`<p><input type="checkbox" name="drop_path" value="${p.path}" id="dp-${i}"> <label for="dp-${i}">Drop path <code>${p.path}</code></label></p>`)}
    ${caps.map((cap, i) => html`<p><input type="checkbox" name="drop_capability" value="${cap}" id="dc-${i}"> <label for="dc-${i}">Drop capability <code>${cap}</code> (from every path)</label></p>`)}`
        : html`${g.refs.map((r, i) => html`<p><input type="checkbox" name="drop_ref" value="${r}" id="dr-${i}"> <label for="dr-${i}">Drop ref <code>${r}</code></label></p>`)}`
    }
    <p><label for="ttl">TTL (at most ${formatDuration(g.ttl_seconds)}; seconds or e.g. 15m, 1h; empty keeps it)</label>
    <input type="text" name="ttl" id="ttl" inputmode="text" autocomplete="off" placeholder="${formatDuration(g.ttl_seconds)}"></p>
  </fieldset>
  ${f.stepUp ? STEP_UP_NOTE : ''}
  <button type="submit" class="approve">Approve</button>
</form>
<form method="post" action="/console/requests/${id}/decision" class="decide">
  ${hidden(csrf, 'deny')}
  <p><label for="reason">Reason for denying (optional, shown to the agent)</label>
  <textarea name="reason" id="reason" maxlength="1000" rows="2"></textarea></p>
  <button type="submit" class="deny">Deny</button>
</form>`;
}

export function decideRoutes(app: Hono<ConsoleEnv>, deps: BrokerDeps, feed: ChangeFeed, live: LiveOptions): void {
  app.get('/', async (c) =>
    titled(c.get('page'))(
      'Pending requests',
      html`<p><a href="/console/credentials">Live credentials</a> · <a href="/console/history">Request history</a></p>
<p id="live-status" role="status" aria-live="polite" class="note">This list updates itself while the page is open (reload to update it without JavaScript).</p>
${await pendingFragment(deps, c)}`,
    ),
  );

  // The fragment is HTML too (with forms and the CSRF token): the pages' headers, CSP and no framing included, should a browser open it.
  app.get('/api/pending', async (c) => new Response((await pendingFragment(deps, c)).toString(), { headers: htmlHeaders() }));

  app.get('/events', (c) => {
    const session = c.get('session');
    return eventStream(c, feed, live, () => passkeys.sessionStillValid(deps, session));
  });

  app.get('/requests/:id', async (c) => {
    const row = await pendingRequest(deps, c.req.param('id'));
    const f = await requestFacts(deps, row, approverVoter(c.get('session').approver.id));
    const h = `h-${row.id}`;
    if (row.status !== 'pending') {
      const v = f.view;
      const granted = grantOf(row);
      return titled(c.get('page'))(
        `Request ${row.id}`,
        html`${notice('info', `This request is ${row.status.replace('_', ' ')}${v.decision ? ` (decided by ${v.decision.approver})` : ''}: there is nothing to decide.`)}
${facts(f, h, false)}
${granted ? html`<h2>Granted</h2>${scopeList(granted)}<p>TTL ${formatDuration(granted.ttl_seconds)}${v.narrowed ? ' (narrowed)' : ''}</p>` : ''}
<p><a href="/console/requests/${row.id}/story">The request's whole story</a> · <a href="/console">Pending requests</a></p>`,
      );
    }
    return titled(c.get('page'))(
      `Request ${row.id}`,
      html`<article class="request" aria-labelledby="${h}">${facts(f, h, false)}</article>
${narrowingForm(f, c.get('csrf'))}
<p><a href="/console/requests/${row.id}/story">The request's whole story</a> · <a href="/console">Pending requests</a></p>`,
    );
  });

  app.post('/requests/:id/step-up', async (c) => {
    const row = await pendingRequest(deps, c.req.param('id'));
    const form = await decisionForm(c, 'approve');
    if (form.decision !== 'approve') throw new BrokerError('BAD_REQUEST', 'only an approval needs a step-up; deny needs none');
    const options = await passkeys.beginStepUp(deps, c.get('session'), { kind: 'approve', requestId: row.id, narrowing: form.narrowing });
    return c.json(options, 200, { 'cache-control': 'no-store' });
  });

  app.post('/requests/:id/decision', async (c) => {
    const row = await pendingRequest(deps, c.req.param('id'));
    const form = await decisionForm(c);
    const outcome = await passkeys.decideInConsole(deps, c.get('session'), row.id, form);
    const shown = outcomeText(outcome);
    if (isDataRequest(c)) return c.json({ outcome: outcome.outcome, message: shown.text, status: outcome.request.status }, shown.status as 200);
    return titled(c.get('page'))(
      shown.kind === 'error' ? 'Decision refused' : 'Decision',
      html`${notice(shown.kind, shown.text)}
<p>Request <code>${row.id}</code> of agent ${row.agent_name}.</p>
<p><a href="/console/requests/${row.id}">Back to the request</a> · <a href="/console">Pending requests</a></p>`,
      { status: shown.status },
    );
  });
}
