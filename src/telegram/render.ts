import { formatDuration } from '../lib/duration.ts';
import { inertText } from '../lib/inert-text.ts';
import { ceilingOf, describeDifference, grantDifference, grantOf, requestedGrant, sameGrant, type Grant } from '../broker/narrowing.ts';
import type { GateScope, RequestRow, RequestStatus, VaultScope } from '../broker/rows.ts';
import { FINAL_STATUSES } from '../wire/schemas.ts';
import { TELEGRAM_TEXT_LIMIT, cut, ellipsize, escapeHtml, formatTime, visibleLength } from './html.ts';
import { ITEM_BUTTONS_PER_PAGE, buttonLabel, draftGrant, openPanelData, pageCount, pageRange, panelData, ttlChoices, type DraftNarrowing } from './narrowing-panel.ts';

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
  /** The request's page in the console (when JIT_PUBLIC_URL is set). */
  consoleUrl?: string | undefined;
  /** Approving it needs a passkey step-up in the console (JIT_PASSKEY_TIER): an Approve tap here is answered with the link, not counted. */
  needsStepUp?: boolean | undefined;
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
  /**
   * False when the request is too large to show whole in one message: the
   * message says so and offers only Deny, and the handlers refuse to
   * approve it from Telegram whatever button data arrives.
   */
  shownWhole: boolean;
}

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

/**
 * `Alice (telegram:111)`, or the bare identity when no name is known. A
 * registered approver (`approver:<id>`) shows as `alice (approver)`: the
 * operator chose that name and it is unique, unlike a Telegram display name.
 */
export function approverLabel(identity: string, names?: ReadonlyMap<string, string>): string {
  const name = names?.get(identity);
  if (name && identity.startsWith('approver:')) return `${name} (approver)`;
  return name ? `${name} (${identity})` : identity;
}

interface Knobs {
  /** Characters of the agent's reason shown (after inertText); 0 = a pointer to `jit requests show` instead. */
  reasonMax: number;
  /** Characters of the decision / revocation reason shown. */
  outcomeReasonMax: number;
  /**
   * How a narrowed grant is shown: `list` repeats its items below the
   * request; `marks` strikes out (✂️) what it leaves out in the request's
   * own list, so a large request is not listed twice.
   */
  grantForm: 'list' | 'marks';
  /** Policy rule names and voter names listed (false: counts only). */
  names: boolean;
}

/** Shown from the reason however long the message: enough to read what the agent says. */
const MIN_REASON = 200;

/**
 * Text someone else wrote (the agent's reason and session key, an
 * approver's reason, a path), ready for HTML: control, bidi and invisible
 * characters become visible escapes (inertText), then HTML is escaped.
 */
export const shownText = (text: string) => escapeHtml(inertText(text));

/** shownText on one line (⏎ for its newlines), so it cannot draw lines of its own in a list. */
export const shownLine = (text: string) => shownText(text).replaceAll('\n', ' ⏎ ');

/**
 * The approval message of a request: the outcome (who, when, why) above
 * the full original request, or the request with Approve / Deny while it
 * is pending. Everything is HTML-escaped and agent-written text is inert.
 *
 * Security (SPEC §10): every requested pair is always listed; nothing is
 * ever replaced by "… and N more". The agent's reason sits in its own
 * quoted block under a heading that says who wrote it, after the
 * request's fields, so no reason can pass for them.
 *
 * To fit Telegram's 4096 characters the message gives up, in this order:
 * the length of the outcome reason, the second listing of a narrowed grant
 * (struck-out marks in the request's list instead), the agent's reason
 * (down to 200 characters), the names of policy rules and voters, and
 * finally the reasons (a pointer to `jit requests show`). The request
 * limits (REQUEST_LIMITS in src/wire/schemas.ts) keep the largest
 * possible request within 4096 characters with all of that given up
 * (test/unit/telegram/render.test.ts renders that worst case).
 */
export function renderApproval(view: ApprovalView): RenderedApproval {
  const { request } = view;
  const reasonLength = inertText(request.reason).length;
  const steps: ((k: Knobs) => Knobs)[] = [
    (k) => ({ ...k, outcomeReasonMax: 300 }),
    (k) => ({ ...k, grantForm: 'marks' }),
    (k) => {
      // The note about the shortening takes room too: settle in a few rounds.
      let next = k;
      for (let i = 0, o = over(k); i < 3 && o > 0 && next.reasonMax > MIN_REASON; i++, o = over(next)) {
        next = { ...next, reasonMax: Math.max(MIN_REASON, Math.min(next.reasonMax, reasonLength) - o - (next.reasonMax < reasonLength ? 0 : 100)) };
      }
      return next;
    },
    (k) => ({ ...k, names: false }),
    (k) => ({ ...k, reasonMax: 0, outcomeReasonMax: 0 }),
  ];
  // Each setting of the knobs is composed once, however often the steps below ask how far over it is.
  const composed = new Map<string, { html: string; over: number }>();
  const measure = (k: Knobs) => {
    const key = `${k.reasonMax}|${k.outcomeReasonMax}|${k.grantForm}|${k.names}`;
    let m = composed.get(key);
    if (!m) {
      const html = compose(view, k);
      composed.set(key, (m = { html, over: visibleLength(html) - TELEGRAM_TEXT_LIMIT }));
    }
    return m;
  };
  const over = (k: Knobs) => measure(k).over;
  let knobs: Knobs = { reasonMax: reasonLength, outcomeReasonMax: 2000, grantForm: 'list', names: true };
  for (const step of steps) {
    if (over(knobs) <= 0) break;
    knobs = step(knobs);
  }
  const pending = request.status === 'pending';
  const status = { status: request.status, final: FINAL_STATUSES.includes(request.status) };
  if (over(knobs) > 0) {
    // Only a request stored before the limits can get here. Its pairs are not cut: it is not shown, and not approvable here.
    return { html: tooLargeToShow(view, knobs), keyboard: pending ? [[{ text: '❌ Deny', callback_data: callbackData('deny', request.id) }]] : [], ...status, shownWhole: false };
  }
  const { html } = measure(knobs);
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
    ...status,
    shownWhole: true,
  };
}

/**
 * A request larger than REQUEST_LIMITS allows (stored before the limits
 * existed) cannot be shown whole in one message. Rather than show part of
 * it, the message says so and offers only Deny; it is reviewed with
 * `jit requests show` and approved with `jit approve`.
 */
function tooLargeToShow(view: ApprovalView, k: Knobs): string {
  const r = view.request;
  const items = scopeItems(r);
  const outcome = outcomeLines(view, { ...k, outcomeReasonMax: 0 });
  return [
    ...(outcome.length ? [outcome[0]!, ''] : []),
    `🔐 <b>${r.status === 'pending' ? 'Approval needed' : 'Request'} — tier ${r.required_tier}</b>`,
    `<b>Request:</b> <code>${r.id}</code>`,
    `<b>Agent:</b> <code>${shownText(r.agent_name)}</code>`,
    `⚠️ This request names ${items.lines.length} ${r.resource === 'gate' ? 'refs' : 'paths'}, more than one message can show in full (it was made before the request limits). Review it with <code>jit requests show ${r.id}</code> and decide with <code>jit approve</code> or <code>jit deny</code>; it cannot be approved here.`,
  ].join('\n');
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
    const pages = pageCount(items.length);
    const page = Math.min(draft.narrowing.page ?? 0, pages - 1);
    const first = page * ITEM_BUTTONS_PER_PAGE;
    items.forEach((item, index) => {
      if (index < first || index >= first + ITEM_BUTTONS_PER_PAGE || !inCeiling(item)) return;
      const drop = !dropped.includes(item);
      rows.push([{ text: `${drop ? '✂️ drop' : '↩️ keep'} ${buttonLabel(item)}`, callback_data: panelData(draft.id, { kind, drop, index }) }]);
    });
    if (pages > 1) {
      const range = (p: number) => pageRange(p, items.length);
      const nav: InlineButton[] = [];
      if (page > 0) nav.push({ text: `◀ ${kind}s ${range(page - 1)}`, callback_data: panelData(draft.id, { kind: 'page', page: page - 1 }) });
      if (page < pages - 1) nav.push({ text: `${kind}s ${range(page + 1)} ▶`, callback_data: panelData(draft.id, { kind: 'page', page: page + 1 }) });
      rows.push(nav);
    }
  }
  rows.push([
    { text: '✅ Approve as shown', callback_data: panelData(draft.id, { kind: 'approve', version: draft.version }) },
    { text: '↩️ Back', callback_data: panelData(draft.id, { kind: 'close' }) },
  ]);
  rows.push([{ text: '❌ Deny', callback_data: callbackData('deny', view.request.id) }]);
  return rows;
}

/**
 * A grant as message lines: its items (or, in the `marks` form, a pointer
 * to the struck-out marks in the request's list), its TTL (with the asked
 * one when shorter), and what was left out.
 */
function grantLines(requested: Grant, grant: Grant, k: Knobs): string[] {
  const lines: string[] = [];
  if (k.grantForm === 'list') {
    lines.push(
      ...(grant.resource === 'vault'
        ? grant.vault_paths.map((p) => `• <code>${shownText(p.path)}</code>: ${escapeHtml(p.capabilities.join(', '))}`)
        : grant.refs.map((r) => `• <code>${shownText(grant.repo)}</code> <code>${shownText(r)}</code>`)),
    );
  } else {
    const what = grant.resource === 'vault' ? 'paths' : 'refs';
    const n = grant.resource === 'vault' ? grant.vault_paths.length : grant.refs.length;
    const of = requested.resource === 'vault' ? requested.vault_paths.length : requested.refs.length;
    lines.push(`• the request's ${what} without what is struck out ✂️ in its list (${n} of ${of} ${what})`);
  }
  lines.push(`<b>TTL:</b> ${formatDuration(grant.ttl_seconds)}${grant.ttl_seconds < requested.ttl_seconds ? ` (asked ${formatDuration(requested.ttl_seconds)})` : ''}`);
  const left = describeDifference(grantDifference(requested, grant));
  if (left && k.grantForm === 'list') lines.push(`<b>Not granted:</b> ${shownText(left)}`);
  return lines;
}

/** The grant the message shows beside the request, when it is less than asked (what the panel, an earlier vote or the decision narrowed it to). */
function narrowedGrant(view: ApprovalView): Grant | undefined {
  const g = grantsOf(view);
  if (!g) return undefined;
  const shown = view.request.status === 'pending' ? (view.draft ? g.draft : g.ceiling) : g.granted;
  return shown && !sameGrant(shown, g.requested) ? shown : undefined;
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
    const head = `✂️ <b>Narrowing</b> — last change by ${who(view.draft.updatedBy, view, k)}`;
    if (!g.draft) return ['', head, '⚠️ As chosen, nothing would be granted: keep something, or tap ❌ Deny.'];
    return ['', head, '<b>✅ Approve as shown</b> grants exactly:', ...grantLines(g.requested, g.draft, k)];
  }
  if (!sameGrant(g.ceiling, g.requested)) return ['', '✂️ <b>Narrowed by an earlier approval</b> — ✅ Approve grants exactly:', ...grantLines(g.requested, g.ceiling, k)];
  return [];
}

/**
 * The request's list: one line per requested path (or ref), every one of
 * them. With `mark`, what that grant leaves out is struck out and the line
 * ends in ✂️.
 */
function scopeItems(request: RequestRow, mark?: Grant): { label: string; lines: string[] } {
  let scope: Partial<VaultScope & GateScope>;
  try {
    scope = JSON.parse(request.scope) as Partial<VaultScope & GateScope>;
  } catch {
    scope = {};
  }
  const strike = (html: string, struck: boolean) => (struck ? `<s>${html}</s>` : html);
  if (request.resource === 'gate') {
    const refs = scope.refs ?? [];
    const kept = (r: string) => !mark || (mark.resource === 'gate' && mark.refs.includes(r));
    return {
      label: `<b>Repository:</b> <code>${shownText(scope.repo ?? '?')}</code>\n<b>Refs (${refs.length}):</b>`,
      lines: refs.map((r) => `• ${strike(`<code>${shownText(r)}</code>`, !kept(r))}${kept(r) ? '' : ' ✂️'}`),
    };
  }
  const paths = scope.vault_paths ?? [];
  return {
    label: `<b>Vault paths (${paths.length}):</b>`,
    lines: paths.map((p) => {
      const granted = !mark ? p.capabilities : mark.resource === 'vault' ? (mark.vault_paths.find((g) => g.path === p.path)?.capabilities ?? []) : [];
      if (granted.length === 0) return `• <s><code>${shownText(p.path)}</code>: ${escapeHtml(p.capabilities.join(', '))}</s> ✂️`;
      const caps = p.capabilities.map((c) => strike(escapeHtml(c), !granted.includes(c))).join(', ');
      return `• <code>${shownText(p.path)}</code>: ${caps}${p.capabilities.every((c) => granted.includes(c)) ? '' : ' ✂️'}`;
    }),
  };
}

/** The agent's reason, quoted under a heading that says who wrote it. */
function reasonLines(r: RequestRow, k: Knobs): string[] {
  const reason = inertText(r.reason);
  const head = '💬 <b>Reason</b> <i>(written by the agent, quoted as sent)</i>:';
  if (k.reasonMax <= 0) return [head, `(${reason.length} characters, too long to show here; see <code>jit requests show ${r.id}</code>)`];
  if (reason.length <= k.reasonMax) return [head, `<blockquote>${escapeHtml(reason)}</blockquote>`];
  const note = ` (reason shortened: ${reason.length} characters in all; see <code>jit requests show ${r.id}</code>)`;
  return [head, `<blockquote>${escapeHtml(cut(reason, k.reasonMax))}…</blockquote>${note}`];
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
  lines.push(`<b>Agent:</b> <code>${shownText(r.agent_name)}</code>`);
  lines.push(`<b>Session:</b> ${r.session_key ? `<code>${shownText(r.session_key)}</code>` : '(none)'}`);
  lines.push(`<b>Tier:</b> ${tierText}`);

  const items = scopeItems(r, k.grantForm === 'marks' ? narrowedGrant(view) : undefined);
  lines.push(items.label, ...items.lines);

  lines.push(`<b>TTL:</b> ${formatDuration(r.ttl_seconds)}`);
  const rules = parseRules(r.rules);
  if (rules.length > 0) {
    const named = `${rules.slice(0, 8).map(shownText).join(', ')}${rules.length > 8 ? ` and ${rules.length - 8} more` : ''}`;
    const counted = `${rules.length} (see <code>jit requests show</code>)`;
    lines.push(`<b>Policy rules:</b> ${k.names || visibleLength(named) <= visibleLength(counted) ? named : counted}`);
  }
  lines.push(`<b>Requested:</b> ${formatTime(r.created_at)}`);
  if (r.approval_expires_at !== null) {
    lines.push(`<b>Times out:</b> ${formatTime(r.approval_expires_at)} (${formatDuration(Math.max(1, Math.round((r.approval_expires_at - r.created_at) / 1000)))} after the request)`);
  }
  if (view.consoleUrl) lines.push(`<b>Console:</b> <a href="${escapeHtml(view.consoleUrl)}">${escapeHtml(view.consoleUrl)}</a>`);
  if (r.status === 'pending' && view.needsStepUp) lines.push('🔑 Approving needs a passkey: approve in the console (an Approve tap here is not counted; Deny counts).');
  // The agent's own words come after every field of the request, quoted, so they cannot pass for one.
  lines.push('', ...reasonLines(r, k));
  const grant = pendingGrantLines(view, k);
  if (grant.length > 0) lines.push(...grant);
  if (r.required_tier === 3 || view.votes.length > 1) lines.push('', votesLine(view, k));
  return lines.join('\n');
}

function votesLine(view: ApprovalView, k: Knobs): string {
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
  const list = view.votes.map((v) => `${v.decision === 'approve' ? '✅' : '❌'}${k.names ? ` ${shownText(approverLabel(v.approver, view.names))}` : ''}${narrowedVote(v) ? ' ✂️' : ''}`);
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

/** Approvers by name and identity; by identity alone when the message is short of room. */
function who(identity: string | null, view: ApprovalView, k: Knobs): string {
  if (!identity) return 'unknown';
  return identity
    .split(', ')
    .map((id) => `<b>${shownText(k.names ? approverLabel(id, view.names) : id)}</b>`)
    .join(', ');
}

function outcomeLines(view: ApprovalView, k: Knobs): string[] {
  const r = view.request;
  const at = (ms: number | null) => (ms === null ? 'an unknown time' : formatTime(ms));
  // On one line, so a decision or revocation reason cannot draw lines of its own.
  const why = (text: string | null) => (text && k.outcomeReasonMax > 0 ? [`<i>Why:</i> ${shownLine(ellipsize(text, k.outcomeReasonMax))}`] : []);
  const approvedLine = () => `✅ <b>APPROVED</b> by ${who(r.decided_by, view, k)} at ${at(r.decided_at)}`;
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
      return [`❌ <b>DENIED</b> by ${who(r.decided_by, view, k)} at ${at(r.decided_at)}`, ...why(r.decision_reason)];
    case 'timed_out':
      return [`⌛ <b>TIMED OUT</b> at ${at(r.decided_at ?? r.updated_at)}: no decision before the approval deadline.`];
    case 'expired': {
      const lines = r.decided_by && r.decided_by !== 'policy' ? [approvedLine()] : [];
      const cause = r.failure ?? (view.credential ? 'the credential reached its expiry' : null);
      return [...lines, `⌛ <b>EXPIRED</b> at ${formatTime(r.updated_at)}${cause ? `: ${escapeHtml(cause)}` : ''}.`, ...(lines.length ? grantedLines(view, k) : [])];
    }
    case 'revoked': {
      const lines = r.decided_by && r.decided_by !== 'policy' && r.decided_at ? [approvedLine()] : [];
      const by = view.revokedBy ? ` by ${who(view.revokedBy.actor, view, k)}` : '';
      return [...lines, `🚫 <b>REVOKED</b>${by} at ${formatTime(view.revokedBy?.at ?? r.updated_at)}`, ...why(r.decision_reason), ...(lines.length ? grantedLines(view, k) : [])];
    }
    case 'failed':
      return [`⚠️ <b>FAILED</b> at ${formatTime(r.updated_at)}${r.failure ? `: ${escapeHtml(ellipsize(r.failure, 300))}` : ''}`];
  }
}
