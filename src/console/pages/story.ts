import { Hono } from 'hono';
import { html } from 'hono/html';
import type { BrokerDeps } from '../../broker/deps.ts';
import { describeDifference, grantDifference, grantOf, requestedGrant, sameGrant, type Grant } from '../../broker/narrowing.ts';
import type { RequestRow, VoteRow } from '../../broker/rows.ts';
import type { AuditRow } from '../../storage/rows.ts';
import { credentialState } from '../../broker/view.ts';
import { inertText } from '../../lib/inert-text.ts';
import type { ConsoleEnv } from '../env.ts';
import { agentBlock, agentText, grantList, problemPage, voter, voterLabels, when } from './common.ts';
import { formatDuration } from '../../lib/duration.ts';
import { isId } from '../../lib/ids.ts';
import { auditList } from './audit.ts';
import { deliveryItem } from './webhooks.ts';

/** A request's audit entries shown on its story (a request has a handful; a flood of refusals is coalesced by the log). */
const STORY_AUDIT_LIMIT = 500;

function voteGrant(v: VoteRow, row: RequestRow): Grant | null {
  if (v.decision !== 'approve' || v.grant_scope === null) return null;
  return grantOf({ ...row, granted_scope: v.grant_scope, granted_ttl_seconds: v.grant_ttl_seconds });
}

function decisionText(row: RequestRow): string {
  if (!row.decided_by) return row.status === 'pending' ? 'none yet' : '-';
  if (row.decided_by === 'timeout') return `timed out at ${when(row.decided_at)}`;
  return `${row.status === 'denied' ? 'denied' : 'approved'} by ${row.decided_by} at ${when(row.decided_at)}`;
}

/** GET /requests/:id/story: one request's whole story, read-only. */
export function storyPage(deps: BrokerDeps): Hono<ConsoleEnv> {
  const app = new Hono<ConsoleEnv>();
  app.get('/requests/:id/story', async (c) => {
    const id = c.req.param('id');
    const row = isId('req', id) ? await deps.storage.requests.get(id) : undefined;
    if (!row) return problemPage(c, 404, 'Request not found', `There is no request ${inertText(id)}.`, { href: '/console/history', label: 'Request history' });
    const [votes, cred, deliveries, entries] = await Promise.all([
      deps.storage.votes.of(id),
      deps.storage.credentials.forRequest(id),
      deps.storage.outbox.forRequest(id),
      deps.storage.audit.ofRequest(id, 0, STORY_AUDIT_LIMIT),
    ]);
    const labels = await voterLabels(deps.storage, [...votes.map((v) => v.approver), ...entries.map((e: AuditRow) => e.actor), ...(row.decided_by ? [row.decided_by] : [])]);
    const asked = requestedGrant(row);
    const granted = grantOf(row);
    const rules = JSON.parse(row.rules) as string[];
    const credState = credentialState(cred);
    return c.get('page')(
      `Request ${row.id}`,
      html`<h1>Request <code>${row.id}</code></h1>
        ${row.status === 'pending' ? html`<p>This request is pending: <a href="/console/requests/${row.id}">decide it</a>.</p>` : ''}
        <section aria-labelledby="s-request">
          <h2 id="s-request">The request</h2>
          <dl class="facts">
            <dt>Status</dt><dd>${row.status}</dd>
            <dt>Agent</dt><dd>${row.agent_name}</dd>
            <dt>Session key</dt><dd>${row.session_key === null ? '- (the agent default)' : agentText(row.session_key)}</dd>
            <dt>Tier</dt><dd>asked ${row.tier}, required ${row.required_tier}</dd>
            <dt>Reason (written by the agent)</dt><dd>${agentBlock(row.reason)}</dd>
            <dt>Asked (${asked.resource === 'vault' ? `${asked.vault_paths.length} path${asked.vault_paths.length === 1 ? '' : 's'} with capabilities` : `${asked.refs.length} ref${asked.refs.length === 1 ? '' : 's'}`})</dt><dd>${grantList(asked)}</dd>
            <dt>TTL asked</dt><dd>${formatDuration(asked.ttl_seconds)}</dd>
            <dt>Rules matched</dt><dd>${rules.length ? rules.join(', ') : '-'}</dd>
            <dt>Created</dt><dd>${when(row.created_at)}</dd>
            ${row.status === 'pending' ? html`<dt>Times out</dt><dd>${when(row.approval_expires_at)}</dd>` : ''}
            ${row.status === 'approved' && row.claim_expires_at !== null ? html`<dt>Claim by</dt><dd>${when(row.claim_expires_at)}</dd>` : ''}
            <dt>Granted</dt><dd>${
              !granted
                ? row.status === 'pending' ? 'nothing yet (pending)' : 'nothing'
                : sameGrant(granted, asked)
                  ? `as asked, TTL ${formatDuration(granted.ttl_seconds)}`
                  : html`<strong>narrowed</strong>: ${grantList(granted)} TTL ${formatDuration(granted.ttl_seconds)}. Not granted: ${inertText(describeDifference(grantDifference(asked, granted)))}`
            }</dd>
            <dt>Decision</dt><dd>${decisionText(row)}${row.decision_reason && row.status !== 'revoked' ? html`; reason: ${agentText(row.decision_reason)}` : ''}</dd>
            ${row.status === 'revoked' ? html`<dt>Revoked</dt><dd>at ${when(row.updated_at)}${row.decision_reason ? html`; reason: ${agentText(row.decision_reason)}` : ''}</dd>` : ''}
            ${row.failure ? html`<dt>Failure</dt><dd>${row.failure}</dd>` : ''}
          </dl>
        </section>
        <section aria-labelledby="s-votes">
          <h2 id="s-votes">Votes</h2>
          ${votes.length === 0
            ? html`<p>No votes.</p>`
            : html`<table><thead><tr><th scope="col">Who</th><th scope="col">When</th><th scope="col">Decision</th><th scope="col">Narrowing</th><th scope="col">Reason</th></tr></thead><tbody>
                ${votes.map((v) => {
                  const g = voteGrant(v, row);
                  return html`<tr><td>${voter(labels, v.approver)}</td><td>${when(v.at)}</td><td>${v.decision}</td>
                    <td>${g && !sameGrant(g, asked) ? `${inertText(describeDifference(grantDifference(asked, g)))} not approved` : v.decision === 'approve' ? 'as asked' : '-'}</td>
                    <td>${v.reason ? agentText(v.reason) : '-'}</td></tr>`;
                })}
              </tbody></table>`}
        </section>
        <section aria-labelledby="s-credential">
          <h2 id="s-credential">Credential</h2>
          ${!cred || credState === 'none'
            ? html`<p>None.</p>`
            : html`<dl class="facts">
                <dt>Type</dt><dd>${cred.type === 'vault_token' ? 'Vault token' : 'gate push credential'}</dd>
                <dt>State</dt><dd>${credState === 'revoking' ? 'revoking (Vault clean-up pending)' : credState}</dd>
                <dt>Issued</dt><dd>${when(cred.issued_at)}</dd>
                <dt>Expires</dt><dd>${when(cred.expires_at)}</dd>
                ${cred.ended_at ? html`<dt>Ended</dt><dd>${when(cred.ended_at)} (${cred.end_reason ?? '-'})</dd>` : ''}
              </dl>`}
        </section>
        <section aria-labelledby="s-webhooks">
          <h2 id="s-webhooks">Webhook deliveries</h2>
          ${deliveries.length === 0
            ? html`<p>None.</p>`
            : html`<ol class="deliveries" aria-labelledby="s-webhooks">${deliveries.map((d) => deliveryItem(d, d.state === 'dead' ? { retry: html`<p><a href="/console/webhooks">Retry it on the dead webhooks page</a></p>` } : {}))}</ol>`}
        </section>
        <section aria-labelledby="s-audit">
          <h2 id="s-audit">Audit entries</h2>
          ${entries.length === 0
            ? html`<p>None.</p>`
            : html`${auditList(entries, labels, 's-audit', false)}
              ${entries.length === STORY_AUDIT_LIMIT ? html`<p>The first ${STORY_AUDIT_LIMIT} entries are shown; the <a href="/console/audit">audit log</a> has them all.</p>` : ''}`}
        </section>`,
    );
  });
  return app;
}
