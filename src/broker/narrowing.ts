/**
 * Approving with narrowing: an approver may grant less than a request
 * asked for (fewer capabilities, paths or refs, a shorter TTL), never more.
 *
 * Everything here is pure: grants are values computed from the request row,
 * the votes and an approver's {@link Narrowing}. decideRequest applies them
 * inside its one transaction; minting, the request view, the decision
 * webhook and the Telegram message read the stored result with
 * {@link grantOf}. See docs/narrowing.md.
 */
import { formatDuration } from '../lib/duration.ts';
import type { ErrorCode } from './errors.ts';
import type { RequestView } from '../wire/schemas.ts';
// Not the policy barrel (index.ts): `jit gate verify` loads this module and need not load the YAML policy loader.
import { evaluateGate, evaluateVault } from './policy/evaluate.ts';
import type { PolicySet } from './policy/types.ts';
import type { GateScope, RequestRow, VaultScope } from './rows.ts';

export interface VaultGrant {
  resource: 'vault';
  /** One entry per path, in request order; every entry has at least one capability. */
  vault_paths: { path: string; capabilities: string[] }[];
  ttl_seconds: number;
}

export interface GateGrant {
  resource: 'gate';
  repo: string;
  refs: string[];
  ttl_seconds: number;
}

/** What a credential may do: a subset of the request's scope, and a TTL no longer than the request's. */
export type Grant = VaultGrant | GateGrant;

/**
 * What an approver takes away from the grant in front of them. Drops name
 * items of the request (a capability is dropped from every path); `ttlSeconds`
 * is the new TTL. An empty narrowing approves the grant as it is.
 */
export interface Narrowing {
  ttlSeconds?: number | undefined;
  dropCapabilities?: readonly string[] | undefined;
  dropPaths?: readonly string[] | undefined;
  dropRefs?: readonly string[] | undefined;
}

export type NarrowingResult =
  | { ok: true; grant: Grant }
  | {
      ok: false;
      /** NOT_REQUESTED: names something the request never asked for; WIDENS: more than allowed; EMPTY: nothing left; NOT_APPLICABLE: refs on a Vault request or paths on a gate one. */
      reason: 'NOT_REQUESTED' | 'WIDENS' | 'EMPTY' | 'NOT_APPLICABLE';
      message: string;
    };

export function isEmptyNarrowing(n: Narrowing | undefined): boolean {
  return !n || (n.ttlSeconds === undefined && !n.dropCapabilities?.length && !n.dropPaths?.length && !n.dropRefs?.length);
}

/** A grant from a stored scope: duplicate paths merged, duplicate capabilities and refs removed, empty paths dropped. */
export function normalizeGrant(resource: 'vault' | 'gate', scope: unknown, ttlSeconds: number): Grant {
  if (resource === 'gate') {
    const s = scope as Partial<GateScope>;
    return { resource: 'gate', repo: String(s.repo ?? ''), refs: [...new Set((s.refs ?? []).map(String))], ttl_seconds: ttlSeconds };
  }
  const s = scope as Partial<VaultScope>;
  const byPath = new Map<string, string[]>();
  for (const p of s.vault_paths ?? []) {
    const caps = byPath.get(p.path) ?? [];
    for (const c of p.capabilities) if (!caps.includes(c)) caps.push(c);
    byPath.set(p.path, caps);
  }
  return {
    resource: 'vault',
    vault_paths: [...byPath].filter(([, caps]) => caps.length > 0).map(([path, capabilities]) => ({ path, capabilities })),
    ttl_seconds: ttlSeconds,
  };
}

/** Everything the request asked for (its TTL is the one policy already clamped at request time). */
export function requestedGrant(row: Pick<RequestRow, 'resource' | 'scope' | 'ttl_seconds'>): Grant {
  return normalizeGrant(row.resource, JSON.parse(row.scope), row.ttl_seconds);
}

/** Statuses a request can only reach through an approval (by an approver or by tier-1 policy). */
const APPROVED_ONCE = new Set<RequestRow['status']>(['approved', 'issued', 'expired', 'revoked', 'failed']);

/**
 * What was granted, once the request was approved; null while pending and
 * for requests never approved (denied, timed out, cancelled). Requests
 * approved by tier-1 policy, or before narrowing existed, have no stored
 * grant: they were granted what they asked.
 */
export function grantOf(row: RequestRow): Grant | null {
  if (row.granted_scope != null && row.granted_ttl_seconds != null) return normalizeGrant(row.resource, JSON.parse(row.granted_scope), row.granted_ttl_seconds);
  if (row.decided_at !== null && row.decided_by !== 'timeout' && APPROVED_ONCE.has(row.status)) return requestedGrant(row);
  return null;
}

/**
 * The grant a credential is minted from: the stored grant when an approver
 * set one, else the request's own scope (tier 1, or approved as asked).
 */
export function grantToMint(row: RequestRow): Grant {
  if (row.granted_scope != null && row.granted_ttl_seconds != null) return normalizeGrant(row.resource, JSON.parse(row.granted_scope), row.granted_ttl_seconds);
  return requestedGrant(row);
}

/** The scope part of a grant, in the request's own JSON shape (`{vault_paths}` or `{repo, refs}`). */
export function scopeOf(grant: Grant): VaultScope | GateScope {
  return grant.resource === 'vault' ? { vault_paths: grant.vault_paths.map((p) => ({ path: p.path, capabilities: [...p.capabilities] })) } : { repo: grant.repo, refs: [...grant.refs] };
}

/** `{vault_paths|repo+refs, ttl_seconds}`: how a grant appears in the API, webhooks and the audit log. */
export type GrantJson = NonNullable<RequestView['granted']>;

export function grantJson(grant: Grant): GrantJson {
  return { ...scopeOf(grant), ttl_seconds: grant.ttl_seconds };
}

export function isEmptyGrant(grant: Grant): boolean {
  return grant.resource === 'vault' ? grant.vault_paths.length === 0 : grant.refs.length === 0;
}

/** What both grants allow (the order of `a` is kept); used to fold tier-3 votes. */
export function intersectGrants(a: Grant, b: Grant): Grant {
  const ttl = Math.min(a.ttl_seconds, b.ttl_seconds);
  if (a.resource === 'gate' || b.resource === 'gate') {
    if (a.resource !== 'gate' || b.resource !== 'gate' || a.repo !== b.repo) return { resource: 'gate', repo: a.resource === 'gate' ? a.repo : '', refs: [], ttl_seconds: ttl };
    return { resource: 'gate', repo: a.repo, refs: a.refs.filter((r) => b.refs.includes(r)), ttl_seconds: ttl };
  }
  const other = new Map(b.vault_paths.map((p) => [p.path, p.capabilities]));
  const paths = a.vault_paths
    .map((p) => ({ path: p.path, capabilities: p.capabilities.filter((c) => other.get(p.path)?.includes(c)) }))
    .filter((p) => p.capabilities.length > 0);
  return { resource: 'vault', vault_paths: paths, ttl_seconds: ttl };
}

/** Whether `inner` allows nothing that `outer` does not (every pair, and the TTL). */
export function grantWithin(inner: Grant, outer: Grant): boolean {
  if (inner.ttl_seconds > outer.ttl_seconds) return false;
  if (inner.resource === 'gate' || outer.resource === 'gate') {
    return inner.resource === 'gate' && outer.resource === 'gate' && inner.repo === outer.repo && inner.refs.every((r) => outer.refs.includes(r));
  }
  const caps = new Map(outer.vault_paths.map((p) => [p.path, p.capabilities]));
  return inner.vault_paths.every((p) => p.capabilities.every((c) => caps.get(p.path)?.includes(c)));
}

export function sameGrant(a: Grant, b: Grant): boolean {
  return grantWithin(a, b) && grantWithin(b, a);
}

/**
 * The most a vote may approve now: the request, cut down by every approval
 * already cast (tier 3). Each vote approves at most what it was shown, and
 * what it was shown was already within the earlier votes, so this is the
 * latest vote's grant; folding all of them keeps it right even if that
 * invariant were ever broken.
 */
export function ceilingOf(requested: Grant, approveVotes: readonly { grant_scope: string | null; grant_ttl_seconds: number | null }[]): Grant {
  let ceiling = requested;
  for (const v of approveVotes) {
    if (v.grant_scope === null || v.grant_ttl_seconds === null) continue; // a vote from before narrowing: the whole request
    ceiling = intersectGrants(ceiling, normalizeGrant(requested.resource, JSON.parse(v.grant_scope), v.grant_ttl_seconds));
  }
  return ceiling;
}

const q = JSON.stringify;

/**
 * Applies an approver's narrowing to the grant currently on offer.
 *
 * Security: the result is always within `ceiling` (itself within the
 * request). Anything naming an item the request never had is refused, not
 * ignored, so a typo in `--drop-capability` cannot silently approve more
 * than the approver meant, and a TTL longer than the ceiling is refused
 * rather than clamped. Dropping an item the ceiling already lacks (an
 * earlier tier-3 vote dropped it) changes nothing.
 */
export function applyNarrowing(requested: Grant, ceiling: Grant, n: Narrowing): NarrowingResult {
  const fail = (reason: Extract<NarrowingResult, { ok: false }>['reason'], message: string): NarrowingResult => ({ ok: false, reason, message });
  const ttl = n.ttlSeconds;
  if (ttl !== undefined) {
    if (!Number.isSafeInteger(ttl) || ttl <= 0) return fail('WIDENS', `the TTL must be a positive whole number of seconds, got ${ttl}`);
    if (ttl > requested.ttl_seconds) return fail('WIDENS', `a TTL of ${formatDuration(ttl)} is longer than the request's ${formatDuration(requested.ttl_seconds)}; narrowing can only shorten it`);
    if (ttl > ceiling.ttl_seconds) return fail('WIDENS', `a TTL of ${formatDuration(ttl)} is longer than the ${formatDuration(ceiling.ttl_seconds)} already approved; a later approver can only shorten it`);
  }
  const newTtl = ttl ?? ceiling.ttl_seconds;

  if (requested.resource === 'vault' && ceiling.resource === 'vault') {
    if (n.dropRefs?.length) return fail('NOT_APPLICABLE', 'refs can only be dropped from gate requests; this is a Vault request');
    const requestedCaps = new Set(requested.vault_paths.flatMap((p) => p.capabilities));
    const requestedPaths = new Set(requested.vault_paths.map((p) => p.path));
    for (const c of n.dropCapabilities ?? []) {
      if (!requestedCaps.has(c)) return fail('NOT_REQUESTED', `capability ${q(c)} was not requested (requested: ${[...requestedCaps].join(', ')})`);
    }
    for (const p of n.dropPaths ?? []) {
      if (!requestedPaths.has(p)) return fail('NOT_REQUESTED', `path ${q(p)} was not requested`);
    }
    const dropCaps = new Set(n.dropCapabilities ?? []);
    const dropPaths = new Set(n.dropPaths ?? []);
    const paths = ceiling.vault_paths
      .filter((p) => !dropPaths.has(p.path))
      .map((p) => ({ path: p.path, capabilities: p.capabilities.filter((c) => !dropCaps.has(c)) }))
      .filter((p) => p.capabilities.length > 0);
    if (paths.length === 0) return fail('EMPTY', 'this narrowing leaves nothing to grant (every path or capability would be dropped); deny the request instead');
    return { ok: true, grant: { resource: 'vault', vault_paths: paths, ttl_seconds: newTtl } };
  }
  if (requested.resource === 'gate' && ceiling.resource === 'gate') {
    if (n.dropCapabilities?.length || n.dropPaths?.length) return fail('NOT_APPLICABLE', 'capabilities and paths can only be dropped from Vault requests; this is a gate request (drop refs instead)');
    for (const r of n.dropRefs ?? []) {
      if (!requested.refs.includes(r)) return fail('NOT_REQUESTED', `ref ${q(r)} was not requested`);
    }
    const drop = new Set(n.dropRefs ?? []);
    const refs = ceiling.refs.filter((r) => !drop.has(r));
    if (refs.length === 0) return fail('EMPTY', 'this narrowing leaves nothing to grant (every ref would be dropped); deny the request instead');
    return { ok: true, grant: { resource: 'gate', repo: ceiling.repo, refs, ttl_seconds: newTtl } };
  }
  return fail('NOT_APPLICABLE', 'the grant and the request are for different resources');
}

/** What `granted` leaves out of `requested`, item by item. */
export interface GrantDifference {
  /** Whole paths (or refs) not granted. */
  droppedPaths: string[];
  droppedRefs: string[];
  /** Capabilities not granted on paths that are still granted. */
  droppedCapabilities: { path: string; capabilities: string[] }[];
  /** Set when the TTL was shortened. */
  ttl?: { requested: number; granted: number };
}

export function grantDifference(requested: Grant, granted: Grant): GrantDifference {
  const diff: GrantDifference = { droppedPaths: [], droppedRefs: [], droppedCapabilities: [] };
  if (granted.ttl_seconds < requested.ttl_seconds) diff.ttl = { requested: requested.ttl_seconds, granted: granted.ttl_seconds };
  if (requested.resource === 'gate') {
    const kept = granted.resource === 'gate' ? granted.refs : [];
    diff.droppedRefs = requested.refs.filter((r) => !kept.includes(r));
    return diff;
  }
  const kept = new Map(granted.resource === 'vault' ? granted.vault_paths.map((p) => [p.path, p.capabilities]) : []);
  for (const p of requested.vault_paths) {
    const caps = kept.get(p.path);
    if (!caps) diff.droppedPaths.push(p.path);
    else {
      const gone = p.capabilities.filter((c) => !caps.includes(c));
      if (gone.length > 0) diff.droppedCapabilities.push({ path: p.path, capabilities: gone });
    }
  }
  return diff;
}

/** The difference in the audit log's JSON form (only non-empty parts). */
export function differenceJson(d: GrantDifference): Record<string, unknown> {
  return {
    ...(d.droppedPaths.length ? { dropped_paths: d.droppedPaths } : {}),
    ...(d.droppedCapabilities.length ? { dropped_capabilities: d.droppedCapabilities } : {}),
    ...(d.droppedRefs.length ? { dropped_refs: d.droppedRefs } : {}),
    ...(d.ttl ? { ttl_seconds: { requested: d.ttl.requested, granted: d.ttl.granted } } : {}),
  };
}

/** `update on a/b; path c/d; TTL 30m → 5m` — one line for CLI output, callback answers and webhook messages. */
export function describeDifference(d: GrantDifference): string {
  const parts = [
    ...d.droppedCapabilities.map((c) => `${c.capabilities.join(', ')} on ${c.path}`),
    ...d.droppedPaths.map((p) => `path ${p}`),
    ...d.droppedRefs.map((r) => `ref ${r}`),
    ...(d.ttl ? [`TTL ${formatDuration(d.ttl.requested)} → ${formatDuration(d.ttl.granted)}`] : []),
  ];
  return parts.join('; ');
}

export type PolicyCheck = { ok: true; grant: Grant; clampedFromTtl?: number } | { ok: false; code: ErrorCode; message: string };

/**
 * Re-evaluates a grant against the policy in force at approval time.
 *
 * Security: the request was checked against the policy of its own time;
 * an operator may have added a `deny` or raised a tier since. So the grant
 * an approver is about to approve is evaluated again: a pair that policy
 * now denies or no longer covers refuses the approval, a tier higher than
 * the one the request is being decided at refuses it too (narrowing never
 * raises the tier under one policy, but a changed policy could), and a
 * smaller `max_ttl` shortens the grant. Each refusal names the cause; the
 * approver may narrow the offending pair away or deny.
 */
export function checkGrantAgainstPolicy(policy: PolicySet, row: Pick<RequestRow, 'agent_name' | 'required_tier'>, grant: Grant): PolicyCheck {
  const decision =
    grant.resource === 'vault'
      ? evaluateVault(policy, row.agent_name, grant.vault_paths, grant.ttl_seconds)
      : evaluateGate(policy, row.agent_name, grant.repo, grant.refs, grant.ttl_seconds);
  if (!decision.ok) return { ok: false, code: decision.code, message: `the policy in force no longer allows this grant: ${decision.message}` };
  if (decision.requiredTier > row.required_tier) {
    return {
      ok: false,
      code: 'FORBIDDEN',
      message: `the policy in force requires tier ${decision.requiredTier} for this grant, but the request is decided at tier ${row.required_tier}; deny it (the agent can ask again) or narrow it`,
    };
  }
  if (decision.ttlSeconds < grant.ttl_seconds) return { ok: true, grant: { ...grant, ttl_seconds: decision.ttlSeconds }, clampedFromTtl: grant.ttl_seconds };
  return { ok: true, grant };
}
