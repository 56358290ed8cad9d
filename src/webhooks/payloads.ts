import { describeDifference, grantDifference, grantOf, normalizeGrant, requestedGrant, sameGrant, scopeOf } from '../broker/narrowing.ts';
import type { WebhookTarget } from '../broker/policy/types.ts';
import type { RequestRow } from '../broker/rows.ts';
import { formatDuration } from '../lib/duration.ts';
import type { DecisionEvent, DecisionEventType, EventScope as Scope, OpenClawAgentBody } from '../wire/events.ts';

export type { DecisionEvent, DecisionEventName, OpenClawAgentBody } from '../wire/events.ts';

const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());

/**
 * What an outbox row holds (`body_format = 'facts'`): the event as decided,
 * with nothing that depends on where or how it is sent. The claim call's URL
 * (JIT_PUBLIC_URL), the OpenClaw message, the target URL and the token are
 * added by the dispatcher at delivery, with the service's configuration, so
 * a decision written by `jit approve` from any shell is sent exactly as one
 * made in the service (SPEC §10).
 */
export interface EventFacts {
  event: Omit<DecisionEvent, 'claim'> & { claim?: { method: 'POST'; expires_at: string | null } };
  /** Whether a credential was issued for the request when the event happened (the wording of revoked/expired). */
  credential_issued: boolean;
  /** The agent's policy entry at decision time: OpenClaw `agentId` / `sessionMode`. */
  openclaw?: { agentId?: string; sessionMode?: string };
}

export function buildEventFacts(input: {
  id: string;
  request: RequestRow;
  type: DecisionEventType;
  at: number;
  /** The agent's webhook entry; undefined when it cannot be known yet (an `unresolved` outbox row, {@link withTargetFacts} adds it). */
  target: WebhookTarget | undefined;
  credentialIssued: boolean;
}): EventFacts {
  const { request: r, target } = input;
  const granted = grantOf(r);
  const event: EventFacts['event'] = {
    type: `jit.request.${input.type}`,
    id: input.id,
    request_id: r.id,
    agent: r.agent_name,
    session_key: r.session_key,
    status: r.status,
    resource: r.resource,
    tier: r.tier,
    required_tier: r.required_tier,
    scope: JSON.parse(r.scope) as Scope,
    ttl_seconds: r.ttl_seconds,
    granted: granted ? { ...scopeOf(granted), ttl_seconds: granted.ttl_seconds } : null,
    narrowed: granted ? !sameGrant(granted, requestedGrant(r)) : false,
    decided_by: r.decided_by,
    decided_at: iso(r.decided_at),
    reason: r.decision_reason,
    ...(input.type === 'approved' ? { claim: { method: 'POST' as const, expires_at: iso(r.claim_expires_at) } } : {}),
    occurred_at: new Date(input.at).toISOString(),
  };
  const facts: EventFacts = { event, credential_issued: input.credentialIssued };
  return target ? withTargetFacts(facts, target) : facts;
}

/** `facts` with what the agent's webhook entry adds: OpenClaw's `agentId` / `sessionMode`. */
export function withTargetFacts(facts: EventFacts, target: WebhookTarget): EventFacts {
  const { openclaw: _, ...rest } = facts;
  const openclaw = target.kind === 'openclaw' ? { ...(target.agentId ? { agentId: target.agentId } : {}), ...(target.sessionMode ? { sessionMode: target.sessionMode } : {}) } : {};
  return { ...rest, ...(Object.keys(openclaw).length > 0 ? { openclaw } : {}) };
}

/** The event with its claim call addressed at `publicUrl` (`claim` keeps its place: the key order is the documented one). */
export function decisionEvent(facts: EventFacts, publicUrl: string): DecisionEvent {
  const { claim, ...rest } = facts.event;
  return claim ? { ...facts.event, claim: { method: claim.method, url: claimUrl(publicUrl, rest.request_id), expires_at: claim.expires_at } } : rest;
}

/** The exact body sent for stored facts: the generic event, or the OpenClaw `/hooks/agent` call. */
export function renderEventBody(facts: EventFacts, target: 'openclaw' | 'standard', publicUrl: string): string {
  const event = decisionEvent(facts, publicUrl);
  return JSON.stringify(target === 'openclaw' ? buildOpenClawBody(event, facts.openclaw ?? {}, { credentialIssued: facts.credential_issued }) : event);
}

export function claimUrl(publicUrl: string, requestId: string): string {
  return `${publicUrl.replace(/\/+$/, '')}/jit/requests/${encodeURIComponent(requestId)}/claim`;
}

const MAX_SCOPE_LINES = 40;
const MAX_REASON = 500;

function describeScope(scope: Scope): string {
  if ('vault_paths' in scope) {
    const lines = scope.vault_paths.slice(0, MAX_SCOPE_LINES).map((p) => `  - vault ${p.path} [${p.capabilities.join(', ')}]`);
    if (scope.vault_paths.length > MAX_SCOPE_LINES) lines.push(`  - ... and ${scope.vault_paths.length - MAX_SCOPE_LINES} more paths`);
    return lines.join('\n');
  }
  const refs = scope.refs.slice(0, MAX_SCOPE_LINES).map((ref) => `  - push ${scope.repo} ${ref}`);
  if (scope.refs.length > MAX_SCOPE_LINES) refs.push(`  - ... and ${scope.refs.length - MAX_SCOPE_LINES} more refs`);
  return refs.join('\n');
}

function quoted(text: string | null): string {
  if (!text) return '';
  const t = text.length > MAX_REASON ? `${text.slice(0, MAX_REASON)}…` : text;
  return ` Reason: ${JSON.stringify(t)}.`;
}

/**
 * The text an agent reads in its session. It names the request, the
 * outcome, what was granted and until when, and for an approval the exact
 * claim call. The agent's token appears only as the `$JIT_AGENT_TOKEN`
 * placeholder: the broker never has it in the clear.
 */
export function openClawMessage(event: DecisionEvent, opts: { credentialIssued: boolean }): string {
  const head = `[jit-broker] Request ${event.request_id} (${event.resource}, tier ${event.required_tier})`;
  const scope = describeScope(event.scope);
  // Once approved, everything after speaks of what was granted, which may be less than was asked.
  const granted = event.granted ? describeScope(event.granted) : scope;
  const ttl = formatDuration(event.granted?.ttl_seconds ?? event.ttl_seconds);
  switch (event.type) {
    case 'jit.request.approved':
      return [
        `${head} was APPROVED by ${event.decided_by ?? 'an approver'} at ${event.decided_at ?? event.occurred_at}.${quoted(event.reason)}`,
        ...(event.narrowed && event.granted ? [`The approver NARROWED it: granted less than you asked (not granted: ${narrowingText(event)}).`] : []),
        `Granted once claimed, valid for ${ttl} from the claim:`,
        granted,
        `Claim it before ${event.claim?.expires_at ?? 'the claim window ends'} with exactly this call (your agent token in $JIT_AGENT_TOKEN):`,
        `curl -sS -X POST -H "Authorization: Bearer $JIT_AGENT_TOKEN" ${event.claim?.url ?? ''}`,
        'The 201 response carries the credential once; a second claim gets 409, a claim after the deadline gets 410.',
      ].join('\n');
    case 'jit.request.denied':
      return [`${head} was DENIED by ${event.decided_by ?? 'an approver'} at ${event.decided_at ?? event.occurred_at}.${quoted(event.reason)}`, 'Nothing was granted. Requested:', scope].join('\n');
    case 'jit.request.timed_out':
      return [`${head} TIMED OUT at ${event.occurred_at}: no approver decided in time.`, 'Nothing was granted. Send a new request if you still need:', scope].join('\n');
    case 'jit.request.revoked':
      return [
        `${head} was REVOKED at ${event.occurred_at}.${quoted(event.reason)}`,
        opts.credentialIssued ? 'The credential issued for it no longer works:' : 'It can no longer be claimed:',
        granted,
      ].join('\n');
    case 'jit.request.expired':
      return opts.credentialIssued
        ? [`${head}: the credential EXPIRED at ${event.occurred_at} and no longer works:`, granted, 'Send a new request if you still need access.'].join('\n')
        : [`${head}: the approval EXPIRED at ${event.occurred_at} because it was not claimed in time. Nothing was issued for:`, granted].join('\n');
  }
}

function narrowingText(event: DecisionEvent): string {
  const text = describeDifference(grantDifference(normalizeGrant(event.resource, event.scope, event.ttl_seconds), normalizeGrant(event.resource, event.granted!, event.granted!.ttl_seconds)));
  return text.length > MAX_REASON ? `${text.slice(0, MAX_REASON)}…` : text;
}

export function buildOpenClawBody(event: DecisionEvent, target: { agentId?: string; sessionMode?: string }, opts: { credentialIssued: boolean }): OpenClawAgentBody {
  return {
    message: openClawMessage(event, opts),
    name: 'JIT broker',
    ...(event.session_key ? { sessionKey: event.session_key } : {}),
    wakeMode: 'now',
    deliver: false,
    ...(target.agentId ? { agentId: target.agentId } : {}),
    ...(target.sessionMode ? { sessionMode: target.sessionMode } : {}),
  };
}
