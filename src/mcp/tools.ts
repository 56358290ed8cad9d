import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import type { CallToolResult, ServerNotification } from '@modelcontextprotocol/sdk/types.js';
import { z } from 'zod';
import { GRANTABLE_CAPABILITIES } from '../wire/capabilities.ts';
import { GateRequestBody, VaultRequestBody } from '../wire/schemas.ts';
import { describeDecision, describeRequest } from '../client/describe.ts';
import { JitApiError, JitStreamLostError, JitUnreachableError, JitWaitTimeoutError } from '../client/errors.ts';
import type { JitClient, WaitProgress } from '../client/jit-client.ts';
import type { IssuedResult, RequestResult, RequestView } from '../client/types.ts';

const TIERS = `Tiers: tier 1 = issued at once, in this result, if policy allows the request at tier 1. \
Tier 2 = a human approves it in Telegram: when your client asked for progress notifications this call waits for the decision \
(progress is reported while pending) and returns it; otherwise the result is "pending": call wait_for_decision, which returns \
as soon as the approver decides (or rely on the decision webhook in your session). Once approved, call claim_credential. Tier 3 = like tier 2 but a quorum of approvers must agree. \
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

const RequestId = z
  .string()
  .regex(/^req_[0-9a-z]{26}$/, 'request ids look like req_ followed by 26 lower-case letters and digits')
  .describe('The id returned by request_vault_credential or request_gate_credential (req_…)');

const WaitInput = z.strictObject({
  request_id: RequestId,
  timeout_seconds: z
    .number()
    .int()
    .min(1)
    .max(3600)
    .optional()
    .describe('Give up after this long if still pending (default 300); without progress notifications keep it under your client\'s request timeout'),
});

/** The longest a request tool waits for a decision (it follows the request's approval deadline, at most this). */
const MAX_REQUEST_WAIT_MS = 3_600_000;

/** What an MCP tool callback receives beside its arguments (the SDK's RequestHandlerExtra, the parts used here). */
interface ToolExtra {
  signal: AbortSignal;
  _meta?: { progressToken?: string | number } & Record<string, unknown>;
  sendNotification: (notification: ServerNotification) => Promise<void>;
}

const RequestIdInput = z.strictObject({ request_id: RequestId });

/** Registers the broker's six tools on an MCP server. Every failure comes back as an `isError` result. */
export function registerJitTools(server: McpServer, client: JitClient, log: (line: string) => void): void {
  const guarded =
    <A>(name: string, run: (args: A, extra: ToolExtra) => Promise<CallToolResult>) =>
    async (args: A, extra: ToolExtra): Promise<CallToolResult> => {
      try {
        return await run(args, extra);
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
    guarded('request_vault_credential', async (args, extra) => requested(client, await client.request({ resource: 'vault', ...args }), extra)),
  );

  server.registerTool(
    'request_gate_credential',
    {
      title: 'Request a git push credential',
      description: `Ask the JIT credential broker for a short-lived signed credential that lets the git gate accept your push of the listed refs to one repository. ${TIERS}`,
      inputSchema: GateToolInput,
    },
    guarded('request_gate_credential', async (args, extra) => requested(client, await client.request({ resource: 'gate', ...args }), extra)),
  );

  server.registerTool(
    'request_status',
    {
      title: 'Status of a credential request',
      description:
        'The current state of one of your requests: pending, approved (awaiting claim_credential), issued, denied, timed_out, expired, revoked or failed, with the decision and credential metadata (never the secret). To wait for a decision, call wait_for_decision instead of calling this repeatedly.',
      inputSchema: RequestIdInput,
      annotations: { readOnlyHint: true },
    },
    guarded('request_status', async ({ request_id }) => statusResult(await client.status(request_id))),
  );

  server.registerTool(
    'wait_for_decision',
    {
      title: 'Wait for the decision on a request',
      description:
        'Waits until a pending request is decided and returns the decision: approved (with what was granted, and whether the approver narrowed it; then call claim_credential), denied (with the reason), timed_out, or issued/revoked/expired. It follows the broker\'s decision stream, so it returns as soon as the approver decides; it sends progress notifications while pending if your client asked for them. An already decided request returns at once. If it is still pending at timeout_seconds, call it again.',
      inputSchema: WaitInput,
      annotations: { readOnlyHint: true },
    },
    guarded('wait_for_decision', async ({ request_id, timeout_seconds }, extra) => {
      const timeoutMs = (timeout_seconds ?? 300) * 1000;
      try {
        return decidedResult(await waitWithProgress(client, request_id, extra, timeoutMs));
      } catch (err) {
        if (!(err instanceof JitWaitTimeoutError)) throw err;
        return result(`Request ${request_id} is still pending after ${Math.round(err.waitedMs / 1000)} s. Call wait_for_decision again; do not submit the request again.`, (err.request as object | undefined) ?? { id: request_id, status: 'pending' });
      }
    }),
  );

  server.registerTool(
    'claim_credential',
    {
      title: 'Claim an approved credential',
      description:
        'After a tier 2/3 request was approved (wait_for_decision, the decision webhook or request_status says "approved"), mint and return its credential. It can be claimed once, within the claim window; a second claim fails.',
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

/**
 * A request's answer: a pending request is followed to its decision when
 * the caller gave a progress token (it is told of progress and its
 * timeout is reset by each notification); otherwise it is returned
 * pending, for wait_for_decision.
 */
async function requested(client: JitClient, r: RequestResult, extra: ToolExtra): Promise<CallToolResult> {
  if (r.status !== 'pending' || extra._meta?.progressToken === undefined) return requestResult(r);
  const deadline = r.approval_expires_at ? Date.parse(r.approval_expires_at) - Date.now() + 30_000 : MAX_REQUEST_WAIT_MS;
  try {
    return decidedResult(await waitWithProgress(client, r.id, extra, Math.min(Math.max(deadline, 60_000), MAX_REQUEST_WAIT_MS)));
  } catch (err) {
    if (err instanceof JitWaitTimeoutError || err instanceof JitStreamLostError) return requestResult(r);
    throw err;
  }
}

/** waitForDecision, with an MCP progress notification for each sign of life while pending (when the caller gave a progress token). */
async function waitWithProgress(client: JitClient, id: string, extra: ToolExtra, timeoutMs: number) {
  const token = extra._meta?.progressToken;
  let progress = 0;
  const onProgress = (p: WaitProgress) => {
    if (token === undefined) return;
    progress++;
    extra.sendNotification({ method: 'notifications/progress', params: { progressToken: token, progress, message: progressMessage(p) } }).catch(() => {});
  };
  return client.waitForDecision(id, { signal: extra.signal, timeoutMs, onProgress });
}

function progressMessage(p: WaitProgress): string {
  const waited = `${Math.round(p.elapsedMs / 1000)} s`;
  if (p.kind === 'reconnecting') return `Request ${p.id} is pending; the decision stream dropped, reconnecting (attempt ${p.attempt}).`;
  const who = p.request && p.request.required_tier >= 3 ? 'a quorum of approvers' : 'an approver';
  return `Request ${p.id} is pending (${waited}): waiting for ${who}${p.request?.approval_expires_at ? ` until ${p.request.approval_expires_at}` : ''}.`;
}

function decidedResult(view: RequestView): CallToolResult {
  return statusResult(view, `Request ${view.id} ${describeDecision(view)}.`);
}

function requestResult(r: RequestResult): CallToolResult {
  if ('replayed' in r) return statusResult(r);
  if (r.status === 'issued') return issuedResult(r, 'Issued at once');
  const raised = r.required_tier !== r.tier ? ` You asked for tier ${r.tier}; policy requires tier ${r.required_tier}.` : '';
  const who = r.required_tier >= 3 ? 'A quorum of approvers' : 'An approver';
  return result(
    `Request ${r.id} is pending approval.${raised} ${who} decides in Telegram before ${r.approval_expires_at}. ` +
      `Call wait_for_decision with request_id "${r.id}" (it returns as soon as it is decided), or wait for the decision webhook in your session; once approved, call claim_credential with request_id "${r.id}". Do not submit the request again.`,
    r,
  );
}

function statusResult(view: RequestView, headline?: string): CallToolResult {
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
  return result(`${headline ? `${headline}\n` : ''}${describeRequest(view).join('\n')}\n${next[view.status] ?? ''}`, view);
}

/** A message a model can act on; the agent token is never part of it (the client scrubs it). */
export function errorText(err: unknown): string {
  if (err instanceof JitUnreachableError) {
    return `The JIT credential broker is unreachable: ${err.message}. Nothing was requested. Tell the operator if it persists; JIT_URL may be wrong.`;
  }
  if (err instanceof JitStreamLostError) {
    return `Lost the broker's decision stream for request ${err.requestId} (${err.cause instanceof Error ? err.cause.message : 'reconnects failed'}); it is still pending. Call wait_for_decision again later; do not submit the request again.`;
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
