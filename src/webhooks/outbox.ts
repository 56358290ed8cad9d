import { createAuditLog, type AuditLog } from '../broker/audit.ts';
import { redactUrl, targetUrlLabel } from '../broker/webhook-retry.ts';
import type { OutboxRow, OutboxRowTarget, OutboxTargetKind, RequestRow } from '../storage/rows.ts';
import type { Storage, Transaction } from '../storage/storage.ts';
import type { DecisionEventType, DecisionSink } from '../broker/events.ts';
import type { PolicySet, WebhookTarget } from '../broker/policy/types.ts';
import type { Config } from '../config/config.ts';
import type { IdGenerator } from '../lib/ids.ts';
import type { Logger } from '../lib/logger.ts';
import { buildEventFacts, withTargetFacts, type DecisionEventName, type EventFacts } from './payloads.ts';

export { redactUrl, targetUrlLabel };
export type { ClaimParams, NewOutboxRow, OutboxRow, OutboxState } from '../storage/rows.ts';
export type TargetKind = OutboxTargetKind;
/** 'unresolved': written without the policy (invalid files); the service's dispatcher addresses it from its own ({@link addressUnresolved}). */
export type RowTarget = OutboxRowTarget;

/**
 * Addresses up to `limit` rows written without a policy from the agent's
 * `webhook` in `policy` (the service's, loaded): as if written with it. A
 * row whose agent has no webhook is deleted (it would not have been
 * written); one whose URL carries user:password is dead, audited. Runs
 * inside the caller's transaction (the dispatcher's claim), before rows
 * are leased. Returns what it did, for the log.
 */
export async function addressUnresolved(
  tx: Transaction,
  audit: Pick<AuditLog, 'append'>,
  policy: PolicySet,
  now: number,
  limit = 100,
): Promise<{ addressed: string[]; dropped: string[]; dead: string[] }> {
  const done = { addressed: [] as string[], dropped: [] as string[], dead: [] as string[] };
  for (const row of await tx.outbox.unresolved(limit)) {
    if (row.state !== 'pending') continue;
    const facts = JSON.parse(row.body) as EventFacts;
    const target = policy.agents.get(facts.event.agent)?.webhook;
    if (!target) {
      if (await tx.outbox.dropUnresolved(row.id)) done.dropped.push(row.id);
      continue;
    }
    const a = addressOf(target);
    const changed = await tx.outbox.address(
      row.id,
      {
        target: target.kind,
        url: a.url,
        url_source: a.url === null ? 'config' : 'policy',
        body: JSON.stringify(withTargetFacts(facts, target)),
        state: a.problem ? 'dead' : 'pending',
        last_error: a.problem ?? null,
      },
      now,
    );
    if (!changed) continue;
    if (a.problem) {
      await deadOnArrival(tx, audit, { id: row.id, requestId: row.request_id, type: row.type, target: target.kind }, now);
      done.dead.push(row.id);
    } else done.addressed.push(row.id);
  }
  return done;
}

/** `{base}/agent`, unless `base` already ends in `/agent`. */
function openClawAgentUrl(base: string): string {
  return /\/agent\/?$/.test(new URL(base).pathname) ? base : `${base.replace(/\/+$/, '')}/agent`;
}

/**
 * Where an event is sent, decided when it is sent, by the service. An
 * OpenClaw event without a URL of its own in policy (`url_source` 'config')
 * goes to the service's OPENCLAW_HOOKS_URL plus `/agent`, whoever wrote the
 * row and whatever URL an earlier version stored in it; any other event goes
 * to the URL taken from the policy when the decision was made. Only operator
 * configuration is ever consulted, never request input, so no agent can make
 * the broker call a URL of its choosing.
 */
export function resolveTargetUrl(
  row: Pick<OutboxRow, 'target' | 'url' | 'url_source'>,
  config: Pick<Config, 'openclaw'>,
): { url: string; problem?: undefined } | { url?: undefined; problem: string } {
  if (row.target === 'unresolved') return { problem: "the agent's webhook target was not looked up in the service's policy" };
  if (row.target === 'openclaw' && row.url_source === 'config') {
    if (config.openclaw) return { url: openClawAgentUrl(config.openclaw.hooksUrl) };
    return { problem: "OPENCLAW_HOOKS_URL is not set in the service's environment, so this OpenClaw event cannot be sent; set it, restart jit serve, then run \"jit webhooks retry <id>\"" };
  }
  if (row.url) return { url: row.url };
  return { problem: 'no URL recorded for this event' };
}

/**
 * The only origin (scheme, host and port) the OpenClaw hooks token may go
 * to: the configured OpenClaw's; undefined when there is no token (or the
 * URL does not parse), so it goes nowhere. A per-agent webhook URL in a
 * policy file pointing elsewhere never gets it, so a policy entry (or a
 * typo in one) cannot hand the gateway's token to another server.
 */
export function hooksTokenOrigin(config: Pick<Config, 'openclaw'>): string | undefined {
  if (!config.openclaw?.hooksToken) return undefined;
  try {
    return new URL(config.openclaw.hooksUrl).origin;
  } catch {
    return undefined;
  }
}

export interface OutboxSinkDeps {
  storage: Storage;
  /**
   * The policy store (only `current()` is used): the agent's `webhook`
   * decides the target. Undefined when the policy files are invalid (a CLI
   * revocation goes ahead anyway): every event is then written `unresolved`
   * and the service's dispatcher addresses it from its own policy.
   */
  policies: { current(): PolicySet } | undefined;
  ids: IdGenerator;
  log: Logger;
  /** Called once a deliverable row is committed (never for a rolled-back one); the dispatcher's `notify`. */
  notify?: () => void;
}

/**
 * The DecisionSink that feeds the webhook outbox. `record` writes in the
 * broker's deciding transaction, so the event is committed with the
 * decision or not at all.
 *
 * The row holds the event's facts and the policy's target; it needs no
 * configuration, so the service and an operator command in any shell write
 * the same row. The service's dispatcher resolves OPENCLAW_HOOKS_URL, adds
 * the token and renders the body with JIT_PUBLIC_URL when it sends.
 *
 * An agent without a `webhook` in policy gets no row. A policy URL carrying
 * user:password gets a row that is dead from the start (fetch refuses such
 * URLs, and the outbox must not hold the password), with the reason; the
 * decision itself is never blocked by a webhook problem.
 */
export function createOutboxSink(deps: OutboxSinkDeps): DecisionSink {
  const audit = createAuditLog(deps.storage);

  return {
    async record(tx: Transaction, request: RequestRow, type: DecisionEventType, at: number): Promise<void> {
      let target: WebhookTarget | undefined;
      if (deps.policies) {
        try {
          target = deps.policies.current().agents.get(request.agent_name)?.webhook;
        } catch (err) {
          deps.log.error({ err, request_id: request.id, event: type }, 'no policy loaded: decision webhook not recorded');
          return;
        }
        if (!target) return;
      }

      const credentialIssued = (await tx.credentials.activeCount(request.id)) > 0;
      const id = deps.ids.next('evt');
      const facts = buildEventFacts({ id, request, type, at, target, credentialIssued });
      const { url, problem }: { url: string | null; problem?: string } = target ? addressOf(target) : { url: null };
      const inserted = await tx.outbox.insert({
        id,
        request_id: request.id,
        type: facts.event.type,
        target: target?.kind ?? 'unresolved',
        url,
        url_source: url === null ? 'config' : 'policy',
        session_key: request.session_key,
        body_format: 'facts',
        body: JSON.stringify(facts),
        state: problem ? 'dead' : 'pending',
        next_attempt_at: at,
        last_error: problem ?? null,
        created_at: at,
      });
      if (!inserted) return;
      if (problem) {
        await deadOnArrival(tx, audit, { id, requestId: request.id, type: facts.event.type, target: target!.kind }, at);
        deps.log.warn({ event_id: id, request_id: request.id, type: facts.event.type }, `decision webhook not sent: ${problem}`);
        return;
      }
      // The dispatcher is woken once the row is committed (it claims from the database): never for a rolled-back one.
      tx.afterCommit(() => deps.notify?.());
    },
  };
}

/**
 * Where an event for the agent's `target` goes: the policy's URL (OpenClaw's
 * with `/agent`), or null for OpenClaw without one (the service's
 * OPENCLAW_HOOKS_URL, resolved when sent). A URL carrying user:password is
 * stored without them and the event is dead from the start, with the reason
 * (fetch refuses such URLs, and the outbox must not hold the password).
 */
function addressOf(target: WebhookTarget): { url: string | null; problem?: string } {
  if (target.kind === 'openclaw' && !target.url) return { url: null };
  const url = target.kind === 'standard' ? target.url : openClawAgentUrl(target.url!);
  const u = new URL(url);
  if (!u.username && !u.password) return { url };
  u.username = '';
  u.password = '';
  return { url: u.toString(), problem: 'webhook URL contains user:password credentials; put them nowhere in the URL (use OPENCLAW_HOOKS_TOKEN for OpenClaw)' };
}

/** The audit entry of an event that is dead when written (its target cannot be sent to). */
async function deadOnArrival(tx: Transaction, audit: Pick<AuditLog, 'append'>, e: { id: string; requestId: string; type: DecisionEventName; target: TargetKind }, at: number): Promise<void> {
  await audit.append(tx, { event: 'webhook.dead', actor: 'broker', requestId: e.requestId, data: { event_id: e.id, type: e.type, target: e.target, reason: 'not_configured', attempts: 0 } }, at);
}
