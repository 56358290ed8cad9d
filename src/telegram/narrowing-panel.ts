/**
 * The narrowing panel of an approval message: buttons that cut the grant
 * down (shorter TTL, drop a capability, a path or a ref) before the final
 * "Approve as shown". The choice being composed lives in the database
 * (`telegram_narrowing`, see store.ts); buttons carry only a short panel id
 * and one action, inside Telegram's 64-byte callback data.
 *
 * Every action is idempotent (drop and keep are separate buttons, TTLs are
 * absolute), and every action is checked against the request before it is
 * applied: an action the panel would never offer (a TTL longer than the
 * grant, a capability or path the request never had) is refused as forged.
 */
import { GRANTABLE_CAPABILITIES } from '../broker/policy/index.ts';
import { applyNarrowing, type Grant, type Narrowing, type NarrowingResult } from '../broker/narrowing.ts';
import { formatDuration } from '../lib/duration.ts';

/** The panel's choice so far, relative to the request (drops name request items). */
export interface DraftNarrowing {
  ttlSeconds?: number | undefined;
  dropCapabilities: string[];
  dropPaths: string[];
  dropRefs: string[];
  /** Which page of drop/keep buttons the panel shows (0 = the first ITEM_BUTTONS_PER_PAGE items); display only, not part of the grant. */
  page?: number | undefined;
}

export const EMPTY_DRAFT: DraftNarrowing = { dropCapabilities: [], dropPaths: [], dropRefs: [] };

/** Shorter TTLs the panel offers besides the grant's own TTL (5 min, 15 min, 1 h). */
export const TTL_CHOICES_SECONDS = [300, 900, 3600] as const;

/**
 * Drop/keep buttons per page of the panel. A request has up to 32 paths
 * (or refs, REQUEST_LIMITS in src/wire/schemas.ts); the panel pages
 * through them with ◀ / ▶ so every one of them can be dropped.
 */
export const ITEM_BUTTONS_PER_PAGE = 8;

/** Pages of drop/keep buttons for `items` items. */
export const pageCount = (items: number) => Math.max(1, Math.ceil(items / ITEM_BUTTONS_PER_PAGE));
/** The items a page of buttons shows, 1-based: `9–16`. */
export const pageRange = (page: number, items: number) => `${page * ITEM_BUTTONS_PER_PAGE + 1}–${Math.min(items, (page + 1) * ITEM_BUTTONS_PER_PAGE)}`;

const DRAFT_ID = /^[a-z2-7]{10}$/;

export type PanelAction =
  | { kind: 'ttl'; seconds: number }
  | { kind: 'capability'; drop: boolean; capability: string }
  | { kind: 'path'; drop: boolean; index: number }
  | { kind: 'ref'; drop: boolean; index: number }
  | { kind: 'page'; page: number }
  | { kind: 'approve'; version: number }
  | { kind: 'close' };

/**
 * Callback data of panel buttons: `g:<panel id>:<action>` with action
 * `t:<seconds>`, `-c:<capability>` / `+c:<capability>`, `-p:<index>` /
 * `+p:<index>`, `-r:<index>` / `+r:<index>`, `pg:<page>`, `ok:<version>` or
 * `x`; at most 25 bytes. The open button is `n:<request id>` (34 bytes).
 */
export function panelData(draftId: string, action: PanelAction): string {
  switch (action.kind) {
    case 'ttl':
      return `g:${draftId}:t:${action.seconds}`;
    case 'capability':
      return `g:${draftId}:${action.drop ? '-' : '+'}c:${action.capability}`;
    case 'path':
      return `g:${draftId}:${action.drop ? '-' : '+'}p:${action.index}`;
    case 'ref':
      return `g:${draftId}:${action.drop ? '-' : '+'}r:${action.index}`;
    case 'page':
      return `g:${draftId}:pg:${action.page}`;
    case 'approve':
      return `g:${draftId}:ok:${action.version}`;
    case 'close':
      return `g:${draftId}:x`;
  }
}

export const PANEL_DATA = /^g:([a-z2-7]{10}):(t:[1-9]\d{0,8}|[+-]c:[a-z]{1,10}|[+-][pr]:\d{1,3}|pg:\d{1,2}|ok:[1-9]\d{0,8}|x)$/;

export function parsePanelData(data: string): { draftId: string; action: PanelAction } | undefined {
  const m = PANEL_DATA.exec(data);
  if (!m) return undefined;
  const [, draftId, op] = m as unknown as [string, string, string];
  if (!DRAFT_ID.test(draftId)) return undefined;
  if (op === 'x') return { draftId, action: { kind: 'close' } };
  const [head, value] = op.split(':') as [string, string];
  if (head === 't') return { draftId, action: { kind: 'ttl', seconds: Number(value) } };
  if (head === 'ok') return { draftId, action: { kind: 'approve', version: Number(value) } };
  if (head === 'pg') return { draftId, action: { kind: 'page', page: Number(value) } };
  const drop = head[0] === '-';
  if (head[1] === 'c') return { draftId, action: { kind: 'capability', drop, capability: value } };
  return { draftId, action: { kind: head[1] === 'p' ? 'path' : 'ref', drop, index: Number(value) } };
}

/** `n:<request id>`: the button that opens the panel. */
export const openPanelData = (requestId: string) => `n:${requestId}`;
export const OPEN_PANEL_DATA = /^n:(req_[0-9a-z]{26})$/;

/** The TTLs offered for a grant whose TTL is `ceilingTtl`: the shorter standard choices, then the grant's own. */
export function ttlChoices(ceilingTtl: number): number[] {
  return [...TTL_CHOICES_SECONDS.filter((s) => s < ceilingTtl), ceilingTtl];
}

/** The panel's choice as a narrowing of `ceiling` (a TTL chosen before the ceiling shrank is capped by it). */
export function draftToNarrowing(draft: DraftNarrowing, ceiling: Grant): Narrowing {
  const ttl = draft.ttlSeconds === undefined ? undefined : Math.min(draft.ttlSeconds, ceiling.ttl_seconds);
  return {
    ...(ttl !== undefined && ttl !== ceiling.ttl_seconds ? { ttlSeconds: ttl } : {}),
    dropCapabilities: draft.dropCapabilities,
    dropPaths: draft.dropPaths,
    dropRefs: draft.dropRefs,
  };
}

/** What "Approve as shown" would grant now. */
export function draftGrant(draft: DraftNarrowing, requested: Grant, ceiling: Grant): NarrowingResult {
  return applyNarrowing(requested, ceiling, draftToNarrowing(draft, ceiling));
}

export type ActionResult =
  /** `changed` false: the action was already in effect (a repeated tap). */
  | { ok: true; draft: DraftNarrowing; changed: boolean; answer: string }
  /** `forged`: no panel of this request would ever offer this action (audited). */
  | { ok: false; forged: boolean; answer: string };

const capsOf = (g: Grant) => (g.resource === 'vault' ? [...new Set(g.vault_paths.flatMap((p) => p.capabilities))] : []);

/**
 * Applies one panel action (not approve/close) to the draft. `requested`
 * bounds what may be named at all; `ceiling` is the most that can still be
 * granted (tier 3: what earlier votes approved).
 */
export function applyPanelAction(draft: DraftNarrowing, action: PanelAction, requested: Grant, ceiling: Grant): ActionResult {
  const forged = (what: string): ActionResult => ({ ok: false, forged: true, answer: `Refused: ${what}. This attempt has been recorded.` });
  const next = (d: DraftNarrowing, changed: boolean, answer: string): ActionResult => {
    if (!changed) return { ok: true, draft, changed: false, answer };
    const result = draftGrant(d, requested, ceiling);
    if (!result.ok) {
      return result.reason === 'EMPTY'
        ? { ok: false, forged: false, answer: 'That would leave nothing to grant. To refuse the request, tap ❌ Deny.' }
        : { ok: false, forged: false, answer: `Refused: ${result.message}` };
    }
    return { ok: true, draft: d, changed: true, answer };
  };

  switch (action.kind) {
    case 'ttl': {
      if (action.seconds > ceiling.ttl_seconds) return forged(`a TTL of ${formatDuration(action.seconds)} is longer than this grant allows (${formatDuration(ceiling.ttl_seconds)})`);
      if (!ttlChoices(ceiling.ttl_seconds).includes(action.seconds)) return forged(`${formatDuration(action.seconds)} is not one of the TTLs offered`);
      const ttl = action.seconds === ceiling.ttl_seconds ? undefined : action.seconds;
      const current = draft.ttlSeconds === undefined ? undefined : Math.min(draft.ttlSeconds, ceiling.ttl_seconds);
      return next({ ...draft, ttlSeconds: ttl }, current !== ttl, `TTL: ${formatDuration(action.seconds)}`);
    }
    case 'capability': {
      const cap = action.capability;
      if (requested.resource !== 'vault' || !(GRANTABLE_CAPABILITIES as readonly string[]).includes(cap) || !capsOf(requested).includes(cap)) {
        return forged(`capability "${cap}" is not part of this request`);
      }
      const dropped = draft.dropCapabilities.includes(cap);
      if (action.drop) {
        if (dropped || !capsOf(ceiling).includes(cap)) return next(draft, false, `${cap} is not granted`);
        return next({ ...draft, dropCapabilities: [...draft.dropCapabilities, cap] }, true, `Dropped ${cap}`);
      }
      if (!capsOf(ceiling).includes(cap)) return { ok: false, forged: false, answer: `${cap} was dropped by an earlier approval; it cannot be added back.` };
      if (!dropped) return next(draft, false, `${cap} is granted`);
      return next({ ...draft, dropCapabilities: draft.dropCapabilities.filter((c) => c !== cap) }, true, `Kept ${cap}`);
    }
    case 'path':
    case 'ref': {
      const items = requested.resource === 'vault' ? (action.kind === 'path' ? requested.vault_paths.map((p) => p.path) : null) : action.kind === 'ref' ? requested.refs : null;
      if (!items) return forged(`this request has no ${action.kind}s to drop`);
      const item = items[action.index];
      if (item === undefined) return forged(`there is no ${action.kind} ${action.index + 1} in this request`);
      const inCeiling = ceiling.resource === 'vault' ? ceiling.vault_paths.some((p) => p.path === item) : ceiling.refs.includes(item);
      const key = action.kind === 'path' ? 'dropPaths' : 'dropRefs';
      const dropped = draft[key].includes(item);
      const label = `${action.kind} ${buttonLabel(item, 60)}`;
      if (action.drop) {
        if (dropped || !inCeiling) return next(draft, false, `${label} is not granted`);
        return next({ ...draft, [key]: [...draft[key], item] }, true, `Dropped ${label}`);
      }
      if (!inCeiling) return { ok: false, forged: false, answer: `${label} was dropped by an earlier approval; it cannot be added back.` };
      if (!dropped) return next(draft, false, `${label} is granted`);
      return next({ ...draft, [key]: draft[key].filter((x) => x !== item) }, true, `Kept ${label}`);
    }
    case 'page': {
      const items = requested.resource === 'vault' ? requested.vault_paths.length : requested.refs.length;
      if (action.page >= pageCount(items)) return forged(`there is no page ${action.page + 1} of buttons for this request`);
      const answer = `${requested.resource === 'vault' ? 'Paths' : 'Refs'} ${pageRange(action.page, items)} of ${items}`;
      // Display only: not checked against the ceiling, which another approver's vote may have shrunk to
      // exactly what this draft drops (then every grant check says "nothing to grant", and the approver
      // could not page back to keep an item).
      if ((draft.page ?? 0) === action.page) return { ok: true, draft, changed: false, answer };
      return { ok: true, draft: { ...draft, page: action.page }, changed: true, answer };
    }
    case 'approve':
    case 'close':
      throw new Error(`applyPanelAction: ${action.kind} is handled by the caller`);
  }
}

/** A path or ref for a button: its tail, so the distinguishing end stays visible. */
export function buttonLabel(item: string, max = 28): string {
  return item.length <= max ? item : `…${item.slice(item.length - max + 1)}`;
}
