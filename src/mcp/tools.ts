import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { z } from 'zod';
import { GRANTABLE_CAPABILITIES } from '../wire/capabilities.ts';
import { GateRequestBody, VaultRequestBody } from '../wire/schemas.ts';
import { describeRequest } from '../client/describe.ts';
import { JitApiError, JitUnreachableError } from '../client/errors.ts';
import type { JitClient } from '../client/jit-client.ts';
import type { IssuedResult, RequestResult, RequestView } from '../client/types.ts';

const TIERS = `Tiers: tier 1 = issued at once, in this result, if policy allows the request at tier 1. \
Tier 2 = a human approves it in Telegram: the result is "pending"; you get a decision webhook in your session \
(or call request_status later), then call claim_credential. Tier 3 = like tier 2 but a quorum of approvers must agree. \
Ask for the lowest tier that fits: the broker raises the tier when policy requires more (required_tier), never lowers it. \
Never ask for more paths, capabilities or TTL than the task needs, and give an honest, specific reason: the approver reads it.`;

const SECRET_NOTE = 'The secret is returned only this once: use it, do not log it or repeat it in chat, and call revoke_credential when done.';

/** Input of the request tools: the HTTP API's own schemas without `resource`, with descriptions for the model. */
export const VaultToolInput = VaultRequestBody.omit({ resource: true }).extend({
  tier: VaultRequestBody.shape.tier.describe('1, 2 or 3: the lowest tier that fits (see the tool description)'),
  reason: VaultRequestBody.shape.reason.describe('Why you need it, specifically; shown to the approver'),
  vault_paths: VaultRequestBody.shape.vault_paths.describe(
    `Exact Vault API paths (KV v2: "mount/data/…"; no wildcards, no leading "/") with the capabilities needed on each: ${GRANTABLE_CAPABILITIES.join(', ')}`,
  ),
  ttl: VaultRequestBody.shape.ttl.describe('Lifetime: seconds or "90s", "15m", "1h"; policy may shorten it. Ask for what the task needs'),
  session_key: VaultRequestBody.shape.session_key.describe('Session the decision webhook goes to; omit to use your default session'),
});

export const GateToolInput = GateRequestBody.omit({ resource: true }).extend({
  tier: GateRequestBody.shape.tier.describe('1, 2 or 3: the lowest tier that fits (see the tool description)'),
  reason: GateRequestBody.shape.reason.describe('Why you need to push, specifically; shown to the approver'),
  repo: GateRequestBody.shape.repo.describe('Repository as the git gate names it, e.g. "homelab/infra"'),
  refs: GateRequestBody.shape.refs.describe('Full ref names to push, e.g. ["refs/heads/agent/fix-dns"]'),
  ttl: GateRequestBody.shape.ttl.describe('Lifetime: seconds or "90s", "15m", "1h"; policy may shorten it'),
  session_key: GateRequestBody.shape.session_key.describe('Session the decision webhook goes to; omit to use your default session'),
});

const RequestIdInput = z.strictObject({
  request_id: z
    .string()
    .regex(/^req_[0-9a-z]{26}$/, 'request ids look like req_ followed by 26 lower-case letters and digits')
    .describe('The id returned by request_vault_credential or request_gate_credential (req_…)'),
});

/** Registers the broker's five tools on an MCP server. Every failure comes back as an `isError` result. */
export function registerJitTools(server: McpServer, client: JitClient, log: (line: string) => void): void {
  const guarded =
    <A>(name: string, run: (args: A) => Promise<CallToolResult>) =>
    async (args: A): Promise<CallToolResult> => {
      try {
        return await run(args);
      } catch (err) {
        log(`${name}: ${err instanceof Error ? `${err.name}: ${err.message}` : String(err)}`);
        return { isError: true, content: [{ type: 'text', text: errorText(err) }] };
      }
    };

  server.registerTool(
    'request_vault_credential',
    {
      title: 'Request a Vault credential',
      description: `Ask the JIT credential broker for a short-lived Vault token that grants exactly the listed paths and capabilities. ${TIERS}`,
      inputSchema: VaultToolInput,
    },
    guarded('request_vault_credential', async (args) => requestResult(await client.request({ resource: 'vault', ...args }))),
  );

  server.registerTool(
    'request_gate_credential',
    {
      title: 'Request a git push credential',
      description: `Ask the JIT credential broker for a short-lived signed credential that lets the git gate accept your push of the listed refs to one repository. ${TIERS}`,
      inputSchema: GateToolInput,
    },
    guarded('request_gate_credential', async (args) => requestResult(await client.request({ resource: 'gate', ...args }))),
  );

  server.registerTool(
    'request_status',
    {
      title: 'Status of a credential request',
      description:
        'The current state of one of your requests: pending, approved (awaiting claim_credential), issued, denied, timed_out, expired, revoked or failed, with the decision and credential metadata (never the secret). Use it when you have no decision webhook; do not poll it in a tight loop.',
      inputSchema: RequestIdInput,
      annotations: { readOnlyHint: true },
    },
    guarded('request_status', async ({ request_id }) => statusResult(await client.status(request_id))),
  );

  server.registerTool(
    'claim_credential',
    {
      title: 'Claim an approved credential',
      description:
        'After a tier 2/3 request was approved (decision webhook or request_status says "approved"), mint and return its credential. It can be claimed once, within the claim window; a second claim fails.',
      inputSchema: RequestIdInput,
    },
    guarded('claim_credential', async ({ request_id }) => issuedResult(await client.claim(request_id), 'Claimed')),
  );

  server.registerTool(
    'revoke_credential',
    {
      title: 'Revoke a credential',
      description:
        'End a credential as soon as the task is done (the token stops working at once), or cancel a request that is still pending or approved. Revoking twice is harmless.',
      inputSchema: RequestIdInput,
      annotations: { idempotentHint: true },
    },
    guarded('revoke_credential', async ({ request_id }) => {
      const view = await client.revoke(request_id);
      return result(`Request ${view.id} is ${view.status}${view.credential ? `; its credential is ${view.credential.state}` : ''}.`, view);
    }),
  );
}

function result(text: string, data: object): CallToolResult {
  return { content: [{ type: 'text', text: `${text}\n\n${JSON.stringify(data, null, 2)}` }], structuredContent: data as Record<string, unknown> };
}

function issuedResult(issued: IssuedResult, verb: string): CallToolResult {
  const c = issued.credential;
  const what =
    c.type === 'vault_token'
      ? `Vault token ${c.token} (accessor ${c.accessor}); send it as X-Vault-Token or VAULT_TOKEN`
      : `gate push credential ${c.credential} for ${c.repo} ${c.refs.join(' ')}`;
  return result(`${verb} ${issued.id} (tier ${issued.required_tier}): ${what}. Valid until ${issued.expires_at}. ${SECRET_NOTE}`, issued);
}

function requestResult(r: RequestResult): CallToolResult {
  if ('replayed' in r) return statusResult(r);
  if (r.status === 'issued') return issuedResult(r, 'Issued at once');
  const raised = r.required_tier !== r.tier ? ` You asked for tier ${r.tier}; policy requires tier ${r.required_tier}.` : '';
  const who = r.required_tier >= 3 ? 'A quorum of approvers' : 'An approver';
  return result(
    `Request ${r.id} is pending approval.${raised} ${who} decides in Telegram before ${r.approval_expires_at}. ` +
      `Wait for the decision webhook in your session (or call request_status later, not in a tight loop); once approved, call claim_credential with request_id "${r.id}". Do not submit the request again.`,
    r,
  );
}

function statusResult(view: RequestView): CallToolResult {
  const next: Record<string, string> = {
    pending: 'Still waiting for a decision; do not submit it again.',
    approved: `Approved: call claim_credential with request_id "${view.id}"${view.claim_expires_at ? ` before ${view.claim_expires_at}` : ''}.`,
    issued: 'Issued; the secret was returned once and cannot be shown again. Revoke it when done.',
    denied: 'Denied: do not ask again for the same thing unless the situation changed; ask the operator if unsure.',
    timed_out: 'Nobody decided in time; ask again only if still needed.',
    expired: 'Expired (or not claimed in time); ask again only if still needed.',
    revoked: 'Revoked; the credential no longer works.',
    failed: 'Failed to issue (see failure); ask again later.',
  };
  return result(`${describeRequest(view).join('\n')}\n${next[view.status] ?? ''}`, view);
}

/** A message a model can act on; the agent token is never part of it (the client scrubs it). */
export function errorText(err: unknown): string {
  if (err instanceof JitUnreachableError) {
    return `The JIT credential broker is unreachable: ${err.message}. Nothing was requested. Tell the operator if it persists; JIT_URL may be wrong.`;
  }
  if (err instanceof JitApiError) {
    const head = `${err.title} (HTTP ${err.status} ${err.code}): ${err.detail}`;
    const retry = err.retryAfterSeconds !== undefined ? ` Retry after ${err.retryAfterSeconds} seconds.` : '';
    switch (err.kind) {
      case 'policy_denied':
        return `${head}. Policy refuses this request; asking again unchanged will be refused again. Ask only for what policy allows, or ask the operator.`;
      case 'rate_limited':
        return `${head}.${retry || ' Retry later.'} Do not retry in a tight loop.`;
      case 'unavailable':
        return `${head}. Nothing was issued.${retry || ' Retry later.'}`;
      case 'unauthorized':
        return `${head}. The broker does not accept this MCP server's agent token (JIT_AGENT_TOKEN); the operator must fix the configuration.`;
      case 'not_found':
        return `${head}. No such request for this agent; check the request_id.`;
      case 'gone':
        return `${head}. Ask again if you still need the credential.`;
      case 'bad_request':
        return `${head}. Fix the arguments and try again.`;
      default:
        return `${head}.${retry}`;
    }
  }
  return `Unexpected error in the JIT MCP server: ${err instanceof Error ? err.message : String(err)}`;
}
