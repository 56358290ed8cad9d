import { z } from 'zod';
import { PathCapabilities, RequestStatus, RequestView } from './schemas.ts';

/**
 * The decision events the broker pushes to an agent's session (SPEC §8),
 * as sent: the generic Standard Webhooks body and the OpenClaw
 * `/hooks/agent` call. Built by src/webhooks/payloads.ts; documented under
 * `webhooks` in GET /openapi.json.
 */

/** Decision events pushed to the agent's session (SPEC §8). */
export const DECISION_EVENTS = ['approved', 'denied', 'timed_out', 'revoked', 'expired'] as const;
export type DecisionEventType = (typeof DECISION_EVENTS)[number];
export type DecisionEventName = `jit.request.${DecisionEventType}`;

const Timestamp = z.iso.datetime();
const VaultScope = z.object({ vault_paths: z.array(PathCapabilities) });
const GateScope = z.object({ repo: z.string(), refs: z.array(z.string()) });
const Scope = z.union([VaultScope, GateScope]);
export type EventScope = z.infer<typeof Scope>;

/** The generic (Standard Webhooks) event body. Built only from request metadata: there is no field a secret could travel in. */
export const DecisionEvent = z
  .object({
    type: z.enum(DECISION_EVENTS.map((t) => `jit.request.${t}` as const) as [DecisionEventName, ...DecisionEventName[]]),
    id: z.string().meta({ description: 'Event id' }),
    request_id: z.string(),
    agent: z.string(),
    session_key: z.string().nullable(),
    status: RequestStatus,
    resource: z.enum(['vault', 'gate']),
    tier: z.number().int(),
    required_tier: z.number().int(),
    scope: Scope.meta({ description: 'What the agent asked for.' }),
    ttl_seconds: z.number().int(),
    granted: z
      .intersection(Scope, z.object({ ttl_seconds: z.number().int() }))
      .nullable()
      .meta({ description: 'What was approved, next to what was asked; null unless the request was approved. Less than asked when `narrowed`.' }),
    narrowed: z.boolean(),
    decided_by: z.string().nullable(),
    decided_at: Timestamp.nullable(),
    reason: z.string().nullable(),
    claim: z
      .object({ method: z.literal('POST'), url: z.string(), expires_at: Timestamp.nullable() })
      .optional()
      .meta({ description: 'Approvals only: the call that mints the credential, and its deadline.' }),
    occurred_at: Timestamp,
  })
  .meta({ id: 'DecisionEvent', description: 'A decision on a request, sent to a `standard` webhook target (Standard Webhooks signature, Ed25519 keys of /.well-known/jwks.json).' });
export type DecisionEvent = z.infer<typeof DecisionEvent>;

/** OpenClaw `POST /hooks/agent` body (SPEC §8). */
export const OpenClawAgentBody = z
  .object({
    message: z.string().meta({ description: 'The decision in words, with the exact claim call for an approval' }),
    name: z.literal('JIT broker'),
    sessionKey: z.string().optional(),
    wakeMode: z.literal('now'),
    deliver: z.literal(false),
    agentId: z.string().optional(),
    sessionMode: z.string().optional(),
  })
  .meta({ id: 'OpenClawAgentBody', description: 'A decision on a request, sent to an `openclaw` webhook target (OpenClaw POST /hooks/agent).' });
export type OpenClawAgentBody = z.infer<typeof OpenClawAgentBody>;

/**
 * The decision stream, GET /jit/requests/{id}/events (SPEC §14): each
 * event's `data:` is the request's view (the RequestView of GET
 * /jit/requests/{id}: one shape for a request's state everywhere) with
 * `status` the status that change moved it to; `decision.granted`,
 * `decision.narrowed` and `decision.reason` once decided. Its `id:` is
 * the change's audit seq (a decimal integer): send it back as
 * `Last-Event-ID` to resume. Lines starting with `:` are heartbeats.
 */
export const RequestStreamEventData = RequestView;
export type RequestStreamEventData = RequestView;

/** One event of the decision stream: its id (`id:`) and its data (`data:`, JSON). */
export interface RequestStreamEvent {
  seq: number;
  data: RequestStreamEventData;
}

/** The comment line the decision stream sends while idle (SSE comments are ignored by readers). */
export const STREAM_HEARTBEAT = ': heartbeat';
