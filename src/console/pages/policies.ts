import { Hono } from 'hono';
import { html } from 'hono/html';
import type { BrokerDeps } from '../../broker/deps.ts';
import { describePolicy, formatProblems, loadPolicyDir } from '../../broker/policy/index.ts';
import type { AgentPolicy, PolicySet } from '../../broker/policy/types.ts';
import { redactUrl } from '../../broker/webhook-retry.ts';
import type { ConsoleEnv } from '../env.ts';
import { notice, type Html } from './common.ts';
import { formatDuration } from '../../lib/duration.ts';

function webhookText(a: AgentPolicy): string {
  const w = a.webhook;
  if (!w) return '-';
  if (w.kind === 'standard') return `standard: ${redactUrl(w.url)}`;
  return `openclaw: ${w.url ? redactUrl(w.url) : 'OPENCLAW_HOOKS_URL'}`;
}

function policyHtml(p: PolicySet): Html {
  return html`<h2 id="p-agents">Agents</h2>
    <table aria-labelledby="p-agents">
      <thead><tr><th scope="col">Agent</th><th scope="col">Sessions</th><th scope="col">Default session</th><th scope="col">Webhook</th></tr></thead>
      <tbody>${[...p.agents.values()].map((a) => html`<tr><td>${a.name}</td><td>${a.sessions.join(', ') || '-'}</td><td>${a.defaultSession ?? '-'}</td><td>${webhookText(a)}</td></tr>`)}</tbody>
    </table>
    <h2 id="p-rules">Rules</h2>
    <table aria-labelledby="p-rules">
      <thead><tr><th scope="col">Rule</th><th scope="col">Agents</th><th scope="col">Resource</th><th scope="col">Grants</th><th scope="col">Tier</th><th scope="col">Max TTL</th><th scope="col">File</th></tr></thead>
      <tbody>
        ${p.rules.map(
          (r) => html`<tr><td>${r.name}</td><td>${r.agents.join(', ')}</td><td>${r.resource}</td>
            <td>${r.resource === 'vault' ? html`paths ${r.paths.join(', ')}; capabilities ${r.capabilities.join(', ')}` : html`repos ${r.repos.join(', ')}; refs ${r.refs.join(', ')}`}</td>
            <td>${r.tier}</td><td>${formatDuration(r.maxTtlSeconds)}</td><td>${r.file}</td></tr>`,
        )}
      </tbody>
    </table>
    <h2 id="p-deny">Deny list</h2>
    ${p.deny.length === 0
      ? html`<p>No deny entries.</p>`
      : html`<ul aria-labelledby="p-deny">${p.deny.map((d) => html`<li>${[d.paths.length ? `paths ${d.paths.join(', ')}` : '', d.repos.length ? `repos ${d.repos.join(', ')}` : '', d.refs.length ? `refs ${d.refs.join(', ')}` : ''].filter(Boolean).join('; ')} (${d.file})</li>`)}</ul>`}`;
}

/**
 * GET /policies: the policy in force (what this broker decides with) and
 * the check `jit policy check` runs, on the files as they are now: a broken
 * edit shows here before a reload (SIGHUP) would refuse it.
 */
export function policiesPage(deps: BrokerDeps): Hono<ConsoleEnv> {
  const app = new Hono<ConsoleEnv>();
  app.get('/policies', async (c) => {
    const dir = deps.config.policiesDir;
    const check = loadPolicyDir(dir);
    const inForce = deps.policies.loaded ? deps.policies.current() : undefined;
    return c.get('page')(
      'Policies',
      html`<h1>Policies</h1>
        <section aria-labelledby="p-check">
          <h2 id="p-check">Check of the policy files</h2>
          ${check.ok
            ? html`${notice('ok', html`<strong>OK</strong>: ${dir} (${describePolicy(check.policy)}).`)}
                ${(check.warnings ?? []).length > 0 ? html`<ul>${formatProblems(check.warnings ?? []).map((w) => html`<li>warning: ${w}</li>`)}</ul>` : ''}`
            : html`${notice('error', html`<strong>${check.problems.length} problem(s)</strong> in ${dir}; the broker keeps the policy it loaded last until they are fixed:`)}
                <ul>${formatProblems(check.problems).map((p) => html`<li>${p}</li>`)}</ul>`}
          <p>The same check as <code>jit policy check</code>. After editing the files, reload with SIGHUP (or restart).</p>
        </section>
        <section aria-labelledby="p-force">
          <h2 id="p-force">In force</h2>
          ${inForce ? html`<p>${describePolicy(inForce)}: ${inForce.files.join(', ')}</p>${policyHtml(inForce)}` : html`<p>No policy loaded.</p>`}
        </section>`,
    );
  });
  return app;
}
