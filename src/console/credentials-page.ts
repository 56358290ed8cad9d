import type { Hono } from 'hono';
import { html } from 'hono/html';
import { approverVoter } from '../broker/approvers.ts';
import type { BrokerDeps } from '../broker/deps.ts';
import { BrokerError } from '../broker/errors.ts';
import { grantToMint } from '../broker/narrowing.ts';
import * as passkeys from '../broker/passkeys.ts';
import { revokeRequest } from '../broker/revoke.ts';
import { credentialState } from '../broker/view.ts';
import { isId } from '../lib/ids.ts';
import type { ConsoleEnv } from './env.ts';
import { decisionForm } from './forms.ts';
import { notice, time, titled } from './layout.ts';

/*
 * GET /console/credentials: the credentials that still work (and those
 * being revoked), each with "Revoke"; "Revoke all" needs a step-up (a
 * passkey assertion over { kind: 'revoke-all' }). Never a token, nor a
 * Vault token's accessor (an identifier that can revoke it: the audit and
 * story pages leave it out too; `jit credentials` on the host has it); a
 * gate credential by its jti.
 */

export function credentialRoutes(app: Hono<ConsoleEnv>, deps: BrokerDeps): void {
  app.get('/credentials', async (c) => {
    const csrf = c.get('csrf');
    const rows = await deps.storage.credentials.inUse();
    const body = html`<p>Credentials that still work, soonest expiry first. Revoking one ends it in Vault at once (a gate credential is refused from then on).</p>
${
  rows.length === 0
    ? html`<p>No live credentials.</p>`
    : html`<table class="cards">
<caption>Live credentials</caption>
<thead><tr><th scope="col">Request</th><th scope="col">Agent</th><th scope="col">Type</th><th scope="col">State</th><th scope="col">Gate jti</th><th scope="col">Expires</th><th scope="col">Scope</th><th scope="col">Action</th></tr></thead>
<tbody>
${rows.map(({ credential: cr, request: r }) => {
  const g = grantToMint(r);
  const rid = `cr-${r.id}`;
  return html`<tr>
<th scope="row" id="${rid}"><a href="/console/requests/${r.id}/story"><code>${r.id}</code></a></th>
<td data-label="Agent">${r.agent_name}</td><td data-label="Type">${cr.type}</td><td data-label="State">${credentialState(cr)}</td><td data-label="Gate jti">${cr.jti ? html`<code>${cr.jti}</code>` : '-'}</td><td data-label="Expires">${time(cr.expires_at)}</td>
<td data-label="Scope">${g.resource === 'vault' ? g.vault_paths.map((p) => html`<code>${p.path}</code> (${p.capabilities.join(', ')}) `) : html`<code>${g.repo}</code> ${g.refs.map((ref) => html`<code>${ref}</code> `)}`}</td>
<td><form method="post" action="/console/credentials/${r.id}/revoke"><input type="hidden" name="csrf" value="${csrf}"><button type="submit" aria-describedby="${rid}">Revoke</button></form></td>
</tr>`;
})}
</tbody>
</table>`
}
<h2>Revoke all</h2>
<p>Ends every live credential and cancels every approved request not yet claimed (pending requests stay for you to deny). Needs a fresh passkey confirmation (step-up), which needs JavaScript.</p>
<form method="post" action="/console/credentials/revoke-all" data-step-up="/console/credentials/revoke-all/step-up">
<input type="hidden" name="csrf" value="${csrf}"><input type="hidden" name="assertion" value="">
<button type="submit" class="deny">Revoke all</button>
</form>`;
    return titled(c.get('page'))('Live credentials', body);
  });

  app.post('/credentials/revoke-all/step-up', async (c) => c.json(await passkeys.beginStepUp(deps, c.get('session'), { kind: 'revoke-all' }), 200, { 'cache-control': 'no-store' }));

  app.post('/credentials/revoke-all', async (c) => {
    const form = await decisionForm(c, 'approve');
    if (!form.assertion) throw new BrokerError('FORBIDDEN', 'revoke-all needs a fresh passkey confirmation (step-up): use the "Revoke all" button with JavaScript enabled; nothing was changed');
    const outcomes = await passkeys.revokeAllInConsole(deps, c.get('session'), { assertion: form.assertion });
    const count = (r: string) => outcomes.filter((o) => o.result === r).length;
    const text = `Revoke all: ${count('revoked')} revoked, ${count('vault_pending')} recorded with the Vault clean-up still to do (retried by the broker), ${count('raced')} changed meanwhile (run it again), ${count('skipped')} already ended.`;
    return titled(c.get('page'))('Revoke all', html`${notice('ok', text)}<p><a href="/console/credentials">Live credentials</a></p>`);
  });

  app.post('/credentials/:id/revoke', async (c) => {
    const id = c.req.param('id');
    const row = isId('req', id) ? await deps.storage.requests.get(id) : undefined;
    if (!row) throw new BrokerError('NOT_FOUND', `request ${id.slice(0, 40)} not found`);
    const actor = approverVoter(c.get('session').approver.id);
    let text: string;
    try {
      const view = await revokeRequest(deps, row, actor, 'revoked in the console');
      text = view.status === 'revoked' ? `Revoked request ${row.id}: its credential no longer works.` : `Request ${row.id} is ${view.status}: nothing to revoke.`;
    } catch (err) {
      if (!(err instanceof BrokerError && err.code === 'VAULT_UNAVAILABLE')) throw err;
      text = `Revocation of ${row.id} is recorded, but Vault could not be reached; the broker retries the clean-up.`;
    }
    return titled(c.get('page'))('Revoke', html`${notice('ok', text)}<p><a href="/console/credentials">Live credentials</a></p>`);
  });
}
