import { Hono } from 'hono';
import { html } from 'hono/html';
import { z } from 'zod';
import { AGENT_NAME } from '../../broker/agents.ts';
import type { BrokerDeps } from '../../broker/deps.ts';
import { BrokerError } from '../../broker/errors.ts';
import { finishRevocations, removeAgentRevoking } from '../../broker/revoke.ts';
import type { ConsoleEnv } from '../env.ts';
import { actorOf, agentText, csrfField, csrfSchema, notice, optional, parseForm, problemPage, when, type Ctx } from './common.ts';

const AddForm = z
  .object({
    ...csrfSchema,
    name: z.string().regex(AGENT_NAME, 'an agent name is 1-63 characters of a-z, 0-9, ".", "_" or "-", starting with a letter or digit'),
    session: optional(z.string().min(1).max(200, 'at most 200 characters').regex(/^[\x21-\x7e]+$/, 'printable ASCII without spaces')),
  })
  .strict();

const RemoveForm = z.object({ ...csrfSchema }).strict();

/** What removing the agent would end now: its open requests by status. */
async function openOf(deps: BrokerDeps, name: string): Promise<OpenCounts> {
  return countOpen((await deps.storage.requests.open({ agentName: name })).map((r) => r.status));
}

type OpenCounts = { issued: number; approved: number; pending: number };

/** How many of these statuses are issued, approved and pending (what removing an agent ends). */
function countOpen(statuses: readonly string[]): OpenCounts {
  const n = (s: string) => statuses.filter((x) => x === s).length;
  return { issued: n('issued'), approved: n('approved'), pending: n('pending') };
}

const plural = (n: number, one: string, many: string) => `${n} ${n === 1 ? one : many}`;

function endsText(o: OpenCounts): string {
  return `${plural(o.issued, 'live credential', 'live credentials')} (revoked), ${plural(o.approved, 'approved request', 'approved requests')} (can no longer be claimed) and ${plural(o.pending, 'pending request', 'pending requests')} (can no longer be approved)`;
}

/** The answer page of an add: the token, this once, never cached. */
async function tokenPage(c: Ctx, name: string, sessionKey: string | null, token: string): Promise<Response> {
  c.header('Cache-Control', 'no-store');
  const res = await c.get('page')(
    `Agent ${name} added`,
    html`<h1>Agent ${name} added</h1>
      ${sessionKey ? html`<p>Default session key: ${agentText(sessionKey)}</p>` : ''}
      ${notice('info', html`<strong>This token is shown only this once.</strong> It is not stored anywhere and cannot be shown again: copy it now into the agent's secret store. If it is lost, remove the agent and add it again.`)}
      <p><label for="agent-token">Bearer token of ${name}</label></p>
      <p><input id="agent-token" type="text" readonly value="${token}" size="80" autocomplete="off" spellcheck="false"></p>
      <p><a href="/console/agents">Back to agents</a></p>`,
  );
  res.headers.set('Cache-Control', 'no-store');
  return res;
}

/** GET /agents (list, add form), POST /agents (add), GET and POST /agents/:name/remove (what it ends; remove). */
export function agentsPage(deps: BrokerDeps): Hono<ConsoleEnv> {
  const app = new Hono<ConsoleEnv>();

  app.get('/agents', async (c) => {
    const agents = await deps.agents.list();
    const open = await Promise.all(agents.map((a) => openOf(deps, a.name)));
    return c.get('page')(
      'Agents',
      html`<h1>Agents</h1>
        ${agents.length === 0
          ? html`<p>No agents yet.</p>`
          : html`<table>
              <thead><tr><th scope="col">Name</th><th scope="col">Default session key</th><th scope="col">Added</th><th scope="col">Open now</th><th scope="col">Remove</th></tr></thead>
              <tbody>
                ${agents.map(
                  (a, i) => html`<tr><td>${a.name}</td><td>${a.sessionKey ? agentText(a.sessionKey) : '-'}</td><td>${when(a.createdAt)}</td>
                    <td>${plural(open[i]!.issued, 'live credential', 'live credentials')}, ${open[i]!.approved} approved, ${open[i]!.pending} pending</td>
                    <td><a href="/console/agents/${a.name}/remove">Remove ${a.name}…</a></td></tr>`,
                )}
              </tbody>
            </table>`}
        <h2 id="add-agent">Add an agent</h2>
        <form method="post" action="/console/agents" aria-labelledby="add-agent">
          ${csrfField(c)}
          <p><label for="agent-name">Name</label> <input id="agent-name" type="text" name="name" required autocomplete="off" aria-describedby="agent-name-help">
            <span id="agent-name-help">1-63 characters of a-z, 0-9, ".", "_" or "-"</span></p>
          <p><label for="agent-session">Default session key (optional)</label> <input id="agent-session" type="text" name="session" autocomplete="off"></p>
          <p><button type="submit">Add agent</button> Its bearer token is shown once, on the next page.</p>
        </form>`,
    );
  });

  app.post('/agents', async (c) => {
    const form = await parseForm(c, AddForm, 'Add an agent');
    if (!form.ok) return form.response;
    try {
      const { agent, token } = await deps.agents.add(form.value.name, form.value.session, actorOf(c));
      return await tokenPage(c, agent.name, agent.sessionKey, token);
    } catch (err) {
      if (err instanceof BrokerError && (err.code === 'CONFLICT' || err.code === 'BAD_REQUEST')) {
        return problemPage(c, err.code === 'CONFLICT' ? 409 : 400, 'Agent not added', `${err.message}.`, { href: '/console/agents', label: 'Back to agents' });
      }
      throw err;
    }
  });

  app.get('/agents/:name/remove', async (c) => {
    const name = c.req.param('name');
    const agent = AGENT_NAME.test(name) ? await deps.agents.get(name) : undefined;
    if (!agent) return problemPage(c, 404, 'Agent not found', 'There is no agent of that name.', { href: '/console/agents', label: 'Back to agents' });
    const open = await openOf(deps, name);
    return c.get('page')(
      `Remove agent ${name}`,
      html`<h1>Remove agent ${name}</h1>
        <p>Removing <strong>${name}</strong> stops its token at once and ends everything it holds or may still get: now ${endsText(open)}. Each is audited and its webhook sent. This cannot be undone; to use the agent again, add it anew (it gets a new token).</p>
        <form method="post" action="/console/agents/${name}/remove">
          ${csrfField(c)}
          <p class="actions"><button type="submit" class="deny">Remove</button> <a href="/console/agents">Keep it</a></p>
        </form>`,
    );
  });

  app.post('/agents/:name/remove', async (c) => {
    const name = c.req.param('name');
    const form = await parseForm(c, RemoveForm, `Remove agent`);
    if (!form.ok) return form.response;
    if (!AGENT_NAME.test(name)) return problemPage(c, 404, 'Agent not found', 'There is no agent of that name.', { href: '/console/agents', label: 'Back to agents' });
    const actor = actorOf(c);
    const records = await removeAgentRevoking(deps, name, actor, actor);
    if (!records) return problemPage(c, 404, 'Agent not found', `There is no agent ${name} (already removed?). Nothing changed.`, { href: '/console/agents', label: 'Back to agents' });
    const finished = await finishRevocations(deps, records);
    const counts = countOpen(records.map((r) => r.was));
    const pendingVault = finished.filter((f) => f.result === 'vault_pending').length;
    return c.get('page')(
      `Agent ${name} removed`,
      html`<h1>Agent ${name} removed</h1>
        ${notice('ok', `Its token no longer works. Ended ${endsText(counts)}.`)}
        ${pendingVault > 0 ? notice('error', `${plural(pendingVault, 'Vault token', 'Vault tokens')} could not be revoked in Vault just now: the revocation is recorded and the broker's sweep retries until Vault accepts.`) : ''}
        ${records.length > 0
          ? html`<ul>${records.map((r) => html`<li><a href="/console/requests/${r.requestId}/story">${r.requestId}</a>: was ${r.was}</li>`)}</ul>`
          : ''}
        <p><a href="/console/agents">Back to agents</a></p>`,
    );
  });
  return app;
}
