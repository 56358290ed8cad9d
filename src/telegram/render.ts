import { formatDuration } from '../lib/duration.ts';
import type { GateScope, RequestRow, RequestStatus, VaultScope } from '../broker/repository.ts';
import { TELEGRAM_TEXT_LIMIT, ellipsize, escapeHtml, formatTime, visibleLength } from './html.ts';

/** One approver's vote, as stored by decideRequest. */
export interface VoteView {
  approver: string;
  decision: 'approve' | 'deny';
  reason: string | null;
  at: number;
}

/** Everything the approval message shows about one request. */
export interface ApprovalView {
  request: RequestRow;
  votes: VoteView[];
  /** Distinct approvals this request needs (1 for tier 2, JIT_TIER3_QUORUM for tier 3). */
  quorum: number;
  /** Display names of approver identities (`telegram:<id>` → "Alice"), when known. */
  names?: ReadonlyMap<string, string>;
  /** Who revoked it and when (from the audit log), for revoked requests. */
  revokedBy?: { actor: string; at: number } | undefined;
  credential?: { issued_at: number | null; expires_at: number; ended_at: number | null } | undefined;
}

export interface InlineButton {
  text: string;
  callback_data: string;
}

export interface RenderedApproval {
  html: string;
  /** Approve / Deny while pending; empty once decided (the buttons are removed). */
  keyboard: InlineButton[][];
  status: RequestStatus;
  /** No later state can change this message (denied, timed out, expired, revoked, failed). */
  final: boolean;
}

export const FINAL_STATUSES: readonly RequestStatus[] = ['denied', 'timed_out', 'expired', 'revoked', 'failed'];

const APPROVE = 'a';
const DENY = 'd';

/**
 * Callback data of the buttons: `a:<request id>` / `d:<request id>`, 32
 * bytes, inside Telegram's 64-byte limit. The data is only a hint of what
 * was tapped: who may decide is checked against TELEGRAM_APPROVERS and the
 * decision itself goes through decideRequest.
 */
export function callbackData(decision: 'approve' | 'deny', requestId: string): string {
  return `${decision === 'approve' ? APPROVE : DENY}:${requestId}`;
}

export function parseCallbackData(data: string): { decision: 'approve' | 'deny'; requestId: string } | undefined {
  const m = /^([ad]):(req_[0-9a-z]{26})$/.exec(data);
  if (!m) return undefined;
  return { decision: m[1] === APPROVE ? 'approve' : 'deny', requestId: m[2]! };
}

/** `Alice (telegram:111)`, or the bare identity when no name is known. */
export function approverLabel(identity: string, names?: ReadonlyMap<string, string>): string {
  const name = names?.get(identity);
  return name ? `${name} (${identity})` : identity;
}

interface Knobs {
  /** Characters of the agent's reason shown. */
  reasonMax: number;
  /** Paths (or refs) listed before "… and N more". */
  itemsShown: number;
  /** Characters of the decision / revocation reason shown. */
  outcomeReasonMax: number;
}

const MIN_REASON = 200;

/**
 * The approval message of a request: the outcome (who, when, why) above
 * the full original request, or the request with Approve / Deny while it
 * is pending. Everything is HTML-escaped.
 *
 * When the text would exceed Telegram's 4096 characters it is shortened in
 * this order: the outcome reason, then the agent's reason (down to 200
 * characters), then the path list ("… and N more"), then the reason
 * entirely. The request id, agent, tier, timeout and the number of paths
 * are never dropped.
 */
export function renderApproval(view: ApprovalView): RenderedApproval {
  const { request } = view;
  const items = scopeItems(request);
  let knobs: Knobs = { reasonMax: request.reason.length, itemsShown: items.lines.length, outcomeReasonMax: 2000 };
  let html = compose(view, knobs);

  let over = visibleLength(html) - TELEGRAM_TEXT_LIMIT;
  if (over > 0) {
    knobs = { ...knobs, outcomeReasonMax: 300 };
    html = compose(view, knobs);
    over = visibleLength(html) - TELEGRAM_TEXT_LIMIT;
  }
  if (over > 0 && request.reason.length > MIN_REASON) {
    // ellipsize's note adds up to ~30 characters; take them off too.
    knobs = { ...knobs, reasonMax: Math.max(MIN_REASON, request.reason.length - over - 40) };
    html = compose(view, knobs);
    over = visibleLength(html) - TELEGRAM_TEXT_LIMIT;
  }
  while (over > 0 && knobs.itemsShown > 0) {
    knobs = { ...knobs, itemsShown: knobs.itemsShown - 1 };
    html = compose(view, knobs);
    over = visibleLength(html) - TELEGRAM_TEXT_LIMIT;
  }
  if (over > 0) {
    knobs = { ...knobs, reasonMax: 0, outcomeReasonMax: 0 };
    html = compose(view, knobs);
  }

  const pending = request.status === 'pending';
  return {
    html,
    keyboard: pending
      ? [[
          { text: '✅ Approve', callback_data: callbackData('approve', request.id) },
          { text: '❌ Deny', callback_data: callbackData('deny', request.id) },
        ]]
      : [],
    status: request.status,
    final: FINAL_STATUSES.includes(request.status),
  };
}

function scopeItems(request: RequestRow): { label: string; lines: string[] } {
  let scope: Partial<VaultScope & GateScope>;
  try {
    scope = JSON.parse(request.scope) as Partial<VaultScope & GateScope>;
  } catch {
    scope = {};
  }
  if (request.resource === 'gate') {
    const refs = scope.refs ?? [];
    return {
      label: `<b>Repository:</b> <code>${escapeHtml(scope.repo ?? '?')}</code>\n<b>Refs (${refs.length}):</b>`,
      lines: refs.map((r) => `• <code>${escapeHtml(r)}</code>`),
    };
  }
  const paths = scope.vault_paths ?? [];
  return {
    label: `<b>Vault paths (${paths.length}):</b>`,
    lines: paths.map((p) => `• <code>${escapeHtml(p.path)}</code>: ${escapeHtml(p.capabilities.join(', '))}`),
  };
}

function compose(view: ApprovalView, k: Knobs): string {
  const { request: r } = view;
  const lines: string[] = [];
  const outcome = outcomeLines(view, k);
  if (outcome.length > 0) lines.push(...outcome, '');

  const tierText = r.tier === r.required_tier ? `${r.required_tier}` : `${r.required_tier} (agent asked for ${r.tier}; policy requires ${r.required_tier})`;
  const quorumText = r.required_tier === 3 ? `, ${view.quorum} distinct approvers` : '';
  lines.push(r.status === 'pending' ? `🔐 <b>Approval needed — tier ${r.required_tier}${quorumText}</b>` : `🔐 <b>Request — tier ${r.required_tier}${quorumText}</b>`);
  lines.push(`<b>Request:</b> <code>${r.id}</code>`);
  lines.push(`<b>Agent:</b> <code>${escapeHtml(r.agent_name)}</code>`);
  lines.push(`<b>Session:</b> ${r.session_key ? `<code>${escapeHtml(r.session_key)}</code>` : '(none)'}`);
  lines.push(`<b>Tier:</b> ${tierText}`);
  if (k.reasonMax > 0) lines.push(`<b>Reason:</b> ${escapeHtml(ellipsize(r.reason, k.reasonMax))}`);
  else lines.push(`<b>Reason:</b> (${r.reason.length} characters, too long to show; see <code>jit requests</code>)`);

  const items = scopeItems(r);
  lines.push(items.label);
  lines.push(...items.lines.slice(0, k.itemsShown));
  const hidden = items.lines.length - k.itemsShown;
  if (hidden > 0) lines.push(`… and ${hidden} more`);

  lines.push(`<b>TTL:</b> ${formatDuration(r.ttl_seconds)}`);
  const rules = parseRules(r.rules);
  if (rules.length > 0) {
    const shown = rules.slice(0, 8).map(escapeHtml).join(', ');
    lines.push(`<b>Policy rules:</b> ${shown}${rules.length > 8 ? ` and ${rules.length - 8} more` : ''}`);
  }
  lines.push(`<b>Requested:</b> ${formatTime(r.created_at)}`);
  if (r.approval_expires_at !== null) {
    lines.push(`<b>Times out:</b> ${formatTime(r.approval_expires_at)} (${formatDuration(Math.max(1, Math.round((r.approval_expires_at - r.created_at) / 1000)))} after the request)`);
  }
  if (r.required_tier === 3 || view.votes.length > 1) lines.push(votesLine(view));
  return lines.join('\n');
}

function votesLine(view: ApprovalView): string {
  const approvals = view.votes.filter((v) => v.decision === 'approve');
  const list = view.votes.map((v) => `${v.decision === 'approve' ? '✅' : '❌'} ${escapeHtml(approverLabel(v.approver, view.names))}`);
  return `<b>Votes:</b> ${approvals.length} of ${view.quorum} approvals${list.length ? ` — ${list.join(', ')}` : ''}`;
}

function parseRules(json: string): string[] {
  try {
    const v = JSON.parse(json) as unknown;
    return Array.isArray(v) ? v.map(String) : [];
  } catch {
    return [];
  }
}

function who(identity: string | null, view: ApprovalView): string {
  if (!identity) return 'unknown';
  return identity
    .split(', ')
    .map((id) => `<b>${escapeHtml(approverLabel(id, view.names))}</b>`)
    .join(', ');
}

function outcomeLines(view: ApprovalView, k: Knobs): string[] {
  const r = view.request;
  const at = (ms: number | null) => (ms === null ? 'an unknown time' : formatTime(ms));
  const why = (text: string | null) => (text && k.outcomeReasonMax > 0 ? [`<i>Why:</i> ${escapeHtml(ellipsize(text, k.outcomeReasonMax))}`] : []);
  const approvedLine = () => `✅ <b>APPROVED</b> by ${who(r.decided_by, view)} at ${at(r.decided_at)}`;
  switch (r.status) {
    case 'pending':
      return [];
    case 'approved':
      return [approvedLine(), ...why(r.decision_reason), `⏳ Waiting for the agent to claim it${r.claim_expires_at ? ` (until ${formatTime(r.claim_expires_at)})` : ''}.`];
    case 'issued': {
      const c = view.credential;
      return [approvedLine(), ...why(r.decision_reason), `🔑 <b>ISSUED</b>${c?.issued_at ? ` at ${formatTime(c.issued_at)}` : ''}${c ? `, expires ${formatTime(c.expires_at)}` : ''}.`];
    }
    case 'denied':
      return [`❌ <b>DENIED</b> by ${who(r.decided_by, view)} at ${at(r.decided_at)}`, ...why(r.decision_reason)];
    case 'timed_out':
      return [`⌛ <b>TIMED OUT</b> at ${at(r.decided_at ?? r.updated_at)}: no decision before the approval deadline.`];
    case 'expired': {
      const lines = r.decided_by && r.decided_by !== 'policy' ? [approvedLine()] : [];
      const cause = r.failure ?? (view.credential ? 'the credential reached its expiry' : null);
      return [...lines, `⌛ <b>EXPIRED</b> at ${formatTime(r.updated_at)}${cause ? `: ${escapeHtml(cause)}` : ''}.`];
    }
    case 'revoked': {
      const lines = r.decided_by && r.decided_by !== 'policy' && r.decided_at ? [approvedLine()] : [];
      const by = view.revokedBy ? ` by ${who(view.revokedBy.actor, view)}` : '';
      return [...lines, `🚫 <b>REVOKED</b>${by} at ${formatTime(view.revokedBy?.at ?? r.updated_at)}`, ...why(r.decision_reason)];
    }
    case 'failed':
      return [`⚠️ <b>FAILED</b> at ${formatTime(r.updated_at)}${r.failure ? `: ${escapeHtml(ellipsize(r.failure, 300))}` : ''}`];
  }
}
