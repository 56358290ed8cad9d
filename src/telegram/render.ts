import { formatDuration } from '../lib/duration.ts';
import { ceilingOf, describeDifference, grantDifference, grantOf, requestedGrant, sameGrant, type Grant } from '../broker/narrowing.ts';
import type { GateScope, RequestRow, RequestStatus, VaultScope } from '../broker/repository.ts';
import { TELEGRAM_TEXT_LIMIT, ellipsize, escapeHtml, formatTime, visibleLength } from './html.ts';
import { MAX_ITEM_BUTTONS, buttonLabel, draftGrant, openPanelData, panelData, ttlChoices, type DraftNarrowing } from './narrowing-panel.ts';

/** One approver's vote, as stored by decideRequest. */
export interface VoteView {
  approver: string;
  decision: 'approve' | 'deny';
  reason: string | null;
  at: number;
  /** What an approve vote approved (JSON like the request's scope); null for votes from before narrowing. */
  grant_scope?: string | null;
  grant_ttl_seconds?: number | null;
}

/** The narrowing panel open on a pending request. */
export interface DraftView {
  id: string;
  version: number;
  narrowing: DraftNarrowing;
  /** Identity of whoever changed it last (`telegram:<id>`). */
  updatedBy: string;
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
  /** The narrowing panel, while the request is pending and an approver opened it. */
  draft?: DraftView | undefined;
}

export interface InlineButton {
  text: string;
  callback_data: string;
}

export interface RenderedApproval {
  html: string;
  /** Approve / Deny / Narrow (or the narrowing panel) while pending; empty once decided (the buttons are removed). */
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
  const grants = grantsOf(view);
  return {
    html,
    keyboard: !pending
      ? []
      : view.draft && grants
        ? panelKeyboard(view, view.draft, grants)
        : [
            [
              { text: '✅ Approve', callback_data: callbackData('approve', request.id) },
              { text: '❌ Deny', callback_data: callbackData('deny', request.id) },
            ],
            [{ text: '✂️ Narrow…', callback_data: openPanelData(request.id) }],
          ],
    status: request.status,
    final: FINAL_STATUSES.includes(request.status),
  };
}

interface Grants {
  requested: Grant;
  /** The most an approval can grant now (tier 3: what earlier votes approved). */
  ceiling: Grant;
  /** What the open panel would grant; undefined when it would grant nothing. */
  draft?: Grant | undefined;
  /** What was granted, once approved. */
  granted: Grant | null;
}

function grantsOf(view: ApprovalView): Grants | undefined {
  try {
    const requested = requestedGrant(view.request);
    const ceiling = ceilingOf(
      requested,
      view.votes.filter((v) => v.decision === 'approve').map((v) => ({ grant_scope: v.grant_scope ?? null, grant_ttl_seconds: v.grant_ttl_seconds ?? null })),
    );
    const d = view.draft ? draftGrant(view.draft.narrowing, requested, ceiling) : undefined;
    return { requested, ceiling, draft: d?.ok ? d.grant : undefined, granted: grantOf(view.request) };
  } catch {
    return undefined; // an unreadable scope: the message still shows the request, without narrowing
  }
}

/**
 * The narrowing panel: TTL choices, drop/keep buttons for capabilities and
 * paths (or refs), then "Approve as shown" bound to the panel's version, so
 * a tap approves exactly the grant this keyboard was drawn with.
 */
function panelKeyboard(view: ApprovalView, draft: DraftView, g: Grants): InlineButton[][] {
  const rows: InlineButton[][] = [];
  const { requested, ceiling } = g;
  const shown = g.draft ?? ceiling;
  const choices = ttlChoices(ceiling.ttl_seconds);
  if (choices.length > 1) {
    rows.push(
      choices.map((s) => ({
        text: `${s === shown.ttl_seconds ? '✔️' : '⏱'} ${formatDuration(s)}${s === ceiling.ttl_seconds ? ' (full)' : ''}`,
        callback_data: panelData(draft.id, { kind: 'ttl', seconds: s }),
      })),
    );
  }
  if (requested.resource === 'vault' && ceiling.resource === 'vault') {
    const ceilingCaps = [...new Set(ceiling.vault_paths.flatMap((p) => p.capabilities))];
    if (ceilingCaps.length > 1) {
      const caps = ceilingCaps.map((c) =>
        draft.narrowing.dropCapabilities.includes(c)
          ? { text: `↩️ keep ${c}`, callback_data: panelData(draft.id, { kind: 'capability', drop: false, capability: c }) }
          : { text: `✂️ drop ${c}`, callback_data: panelData(draft.id, { kind: 'capability', drop: true, capability: c }) },
      );
      for (let i = 0; i < caps.length; i += 3) rows.push(caps.slice(i, i + 3));
    }
  }
  const items = requested.resource === 'vault' ? requested.vault_paths.map((p) => p.path) : requested.refs;
  const inCeiling = (item: string) => (ceiling.resource === 'vault' ? ceiling.vault_paths.some((p) => p.path === item) : ceiling.refs.includes(item));
  const dropped = requested.resource === 'vault' ? draft.narrowing.dropPaths : draft.narrowing.dropRefs;
  const kind = requested.resource === 'vault' ? ('path' as const) : ('ref' as const);
  // With one item left in the ceiling there is nothing to choose: dropping it would leave nothing.
  if (items.filter(inCeiling).length > 1) {
    items.forEach((item, index) => {
      if (index >= MAX_ITEM_BUTTONS || !inCeiling(item)) return;
      const drop = !dropped.includes(item);
      rows.push([{ text: `${drop ? '✂️ drop' : '↩️ keep'} ${buttonLabel(item)}`, callback_data: panelData(draft.id, { kind, drop, index }) }]);
    });
  }
  rows.push([
    { text: '✅ Approve as shown', callback_data: panelData(draft.id, { kind: 'approve', version: draft.version }) },
    { text: '↩️ Back', callback_data: panelData(draft.id, { kind: 'close' }) },
  ]);
  rows.push([{ text: '❌ Deny', callback_data: callbackData('deny', view.request.id) }]);
  return rows;
}

/** A grant as message lines: its items, its TTL (with the asked one when shorter), and what was left out. */
function grantLines(requested: Grant, grant: Grant, k: Knobs): string[] {
  const items =
    grant.resource === 'vault'
      ? grant.vault_paths.map((p) => `• <code>${escapeHtml(p.path)}</code>: ${escapeHtml(p.capabilities.join(', '))}`)
      : grant.refs.map((r) => `• <code>${escapeHtml(grant.repo)}</code> <code>${escapeHtml(r)}</code>`);
  const lines = items.slice(0, k.itemsShown);
  if (items.length > k.itemsShown) lines.push(`… and ${items.length - k.itemsShown} more`);
  lines.push(`<b>TTL:</b> ${formatDuration(grant.ttl_seconds)}${grant.ttl_seconds < requested.ttl_seconds ? ` (asked ${formatDuration(requested.ttl_seconds)})` : ''}`);
  const left = describeDifference(grantDifference(requested, grant));
  if (left) lines.push(`<b>Not granted:</b> ${escapeHtml(ellipsize(left, Math.max(100, Math.min(600, k.reasonMax))))}`);
  return lines;
}

/** After approval: what was granted, below the outcome. */
function grantedLines(view: ApprovalView, k: Knobs): string[] {
  const g = grantsOf(view);
  if (!g?.granted) return [];
  if (sameGrant(g.granted, g.requested)) return [`<b>Granted:</b> everything asked, TTL ${formatDuration(g.granted.ttl_seconds)}.`];
  return ['✂️ <b>NARROWED</b> — granted less than asked:', ...grantLines(g.requested, g.granted, k)];
}

/** While pending: the open panel's grant, or what earlier tier-3 votes narrowed the request to. */
function pendingGrantLines(view: ApprovalView, k: Knobs): string[] {
  const g = grantsOf(view);
  if (!g || view.request.status !== 'pending') return [];
  if (view.draft) {
    const head = `✂️ <b>Narrowing</b> — last change by ${who(view.draft.updatedBy, view)}`;
    if (!g.draft) return ['', head, '⚠️ As chosen, nothing would be granted: keep something, or tap ❌ Deny.'];
    return ['', head, '<b>✅ Approve as shown</b> grants exactly:', ...grantLines(g.requested, g.draft, k)];
  }
  if (!sameGrant(g.ceiling, g.requested)) return ['', '✂️ <b>Narrowed by an earlier approval</b> — ✅ Approve grants exactly:', ...grantLines(g.requested, g.ceiling, k)];
  return [];
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
  lines.push(...pendingGrantLines(view, k));
  if (r.required_tier === 3 || view.votes.length > 1) lines.push(votesLine(view));
  return lines.join('\n');
}

function votesLine(view: ApprovalView): string {
  const approvals = view.votes.filter((v) => v.decision === 'approve');
  const narrowedVote = (v: VoteView) => {
    if (v.decision !== 'approve' || !v.grant_scope || v.grant_ttl_seconds == null) return false;
    try {
      const requested = requestedGrant(view.request);
      return !sameGrant(ceilingOf(requested, [{ grant_scope: v.grant_scope, grant_ttl_seconds: v.grant_ttl_seconds }]), requested);
    } catch {
      return false;
    }
  };
  const list = view.votes.map((v) => `${v.decision === 'approve' ? '✅' : '❌'} ${escapeHtml(approverLabel(v.approver, view.names))}${narrowedVote(v) ? ' ✂️' : ''}`);
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
      return [approvedLine(), ...why(r.decision_reason), `⏳ Waiting for the agent to claim it${r.claim_expires_at ? ` (until ${formatTime(r.claim_expires_at)})` : ''}.`, ...grantedLines(view, k)];
    case 'issued': {
      const c = view.credential;
      return [approvedLine(), ...why(r.decision_reason), `🔑 <b>ISSUED</b>${c?.issued_at ? ` at ${formatTime(c.issued_at)}` : ''}${c ? `, expires ${formatTime(c.expires_at)}` : ''}.`, ...grantedLines(view, k)];
    }
    case 'denied':
      return [`❌ <b>DENIED</b> by ${who(r.decided_by, view)} at ${at(r.decided_at)}`, ...why(r.decision_reason)];
    case 'timed_out':
      return [`⌛ <b>TIMED OUT</b> at ${at(r.decided_at ?? r.updated_at)}: no decision before the approval deadline.`];
    case 'expired': {
      const lines = r.decided_by && r.decided_by !== 'policy' ? [approvedLine()] : [];
      const cause = r.failure ?? (view.credential ? 'the credential reached its expiry' : null);
      return [...lines, `⌛ <b>EXPIRED</b> at ${formatTime(r.updated_at)}${cause ? `: ${escapeHtml(cause)}` : ''}.`, ...(lines.length ? grantedLines(view, k) : [])];
    }
    case 'revoked': {
      const lines = r.decided_by && r.decided_by !== 'policy' && r.decided_at ? [approvedLine()] : [];
      const by = view.revokedBy ? ` by ${who(view.revokedBy.actor, view)}` : '';
      return [...lines, `🚫 <b>REVOKED</b>${by} at ${formatTime(view.revokedBy?.at ?? r.updated_at)}`, ...why(r.decision_reason), ...(lines.length ? grantedLines(view, k) : [])];
    }
    case 'failed':
      return [`⚠️ <b>FAILED</b> at ${formatTime(r.updated_at)}${r.failure ? `: ${escapeHtml(ellipsize(r.failure, 300))}` : ''}`];
  }
}
