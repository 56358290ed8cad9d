import type { OutboxRow } from '../storage/rows.ts';
import type { StorageDeps } from './deps.ts';

/*
 * Re-queueing a dead webhook delivery, and naming where a delivery goes
 * without its secrets: shared by `jit webhooks` (cli/) and the console's
 * webhooks page (console/), which may not import webhooks/.
 */

/** Removes user:password and the query string, for logs and listings (a URL may carry a token). */
export function redactUrl(url: string | null): string {
  if (!url) return '-';
  try {
    const u = new URL(url);
    return `${u.protocol}//${u.host}${u.pathname}${u.search ? '?…' : ''}`;
  } catch {
    return '(invalid URL)';
  }
}

/**
 * Where a row is sent, for listings (`jit webhooks list`, `jit requests
 * show`, the console): what the dispatcher will use (webhooks/outbox.ts,
 * resolveTargetUrl), named without secrets. An OpenClaw row the service
 * addresses goes to the service's OPENCLAW_HOOKS_URL, whatever URL an
 * earlier version stored in it.
 */
export function targetUrlLabel(row: Pick<OutboxRow, 'target' | 'url' | 'url_source'>): string {
  if (row.target === 'unresolved') return "(the agent's webhook in the service's policy, looked up when sent)";
  return row.target === 'openclaw' && row.url_source === 'config' ? 'OPENCLAW_HOOKS_URL' : redactUrl(row.url);
}

export type RequeueResult = { ok: true; row: OutboxRow; to: string } | { ok: false; code: 'NOT_FOUND' | 'CONFLICT'; why: string };

/**
 * Moves a dead delivery back to pending (attempts reset, due now) in one
 * transaction with its `webhook.requeued` audit entry, as `actor`. Refused
 * when the row is not dead (or changed meanwhile), and when it goes to the
 * service's OPENCLAW_HOOKS_URL but the service has none
 * (`serviceHasOpenClaw === false`; undefined when unknown).
 */
export async function requeueDeadDelivery(deps: Pick<StorageDeps, 'storage' | 'audit' | 'clock'>, id: string, actor: string, serviceHasOpenClaw: boolean | undefined): Promise<RequeueResult> {
  const row = await deps.storage.outbox.get(id);
  if (!row) return { ok: false, code: 'NOT_FOUND', why: `no webhook event ${id}` };
  if (row.state !== 'dead') return { ok: false, code: 'CONFLICT', why: `event ${row.id} is ${row.state}, not dead; only dead events are re-queued` };
  const toConfigured = row.target === 'openclaw' && row.url_source === 'config';
  if (toConfigured && serviceHasOpenClaw === false) {
    return { ok: false, code: 'CONFLICT', why: `event ${row.id} goes to OpenClaw but the service has no OPENCLAW_HOOKS_URL; set it in the service's environment and restart jit serve first` };
  }
  const now = deps.clock.now();
  const requeued = await deps.storage.transaction(async (tx) => {
    if (!(await tx.outbox.requeue(row.id, now))) return false;
    await deps.audit.append(tx, { event: 'webhook.requeued', actor, requestId: row.request_id, data: { event_id: row.id, type: row.type, previous_attempts: row.attempts } }, now);
    return true;
  });
  if (!requeued) return { ok: false, code: 'CONFLICT', why: `event ${row.id} changed meanwhile; not re-queued` };
  return { ok: true, row, to: toConfigured ? "the service's OPENCLAW_HOOKS_URL" : redactUrl(row.url) };
}
