import { DurationError, parseDurationSeconds, rfc3339 } from '../duration.ts';
import { VaultHttpError, badRequest } from '../envelope.ts';
import type { LogicalResponse } from '../envelope.ts';
import { NON_ASSIGNABLE_POLICIES } from '../policy.ts';
import { boolField, intField, stringField, stringListField } from '../router.ts';
import type { Route, VaultRequest } from '../router.ts';
import type { DevVaultState } from '../state.ts';
import { TokenStoreError } from '../token-store.ts';
import type { TokenEntry } from '../token-store.ts';

/**
 * Vault's `policyutil.SanitizePolicies`: trim, lowercase, drop empties,
 * `root` swallows everything else, optionally add `default`, then dedupe
 * and sort.
 */
export function sanitizePolicies(policies: readonly string[], addDefault: boolean): string[] {
  let out: string[] = [];
  let hasDefault = false;
  for (const raw of policies) {
    const p = raw.trim().toLowerCase();
    if (p === '') continue;
    if (p === 'root') {
      out = ['root'];
      hasDefault = true;
      break;
    }
    if (p === 'default') hasDefault = true;
    out.push(p);
  }
  if (addDefault && !hasDefault) out.push('default');
  return [...new Set(out)].sort();
}

function duration(data: Record<string, unknown>, key: string): number {
  try {
    return parseDurationSeconds(data[key]);
  } catch (e) {
    if (e instanceof DurationError) throw badRequest(e.message);
    throw e;
  }
}

function metaField(data: Record<string, unknown>): Record<string, string> | null {
  const v = data['meta'];
  if (v === undefined || v === null) return null;
  if (typeof v !== 'object' || Array.isArray(v)) throw badRequest("Error decoding request: 'meta' expected a map");
  // Own properties: a key named `__proto__` is kept like any other.
  return Object.fromEntries(
    Object.entries(v).map(([k, val]) => {
      if (typeof val === 'string') return [k, val];
      if (typeof val === 'number' || typeof val === 'boolean') return [k, String(val)];
      throw badRequest(`Error decoding request: 'meta[${k}]' expected type 'string'`);
    }),
  );
}

function displayName(raw: string | undefined): string {
  if (!raw) return 'token';
  return `token-${raw}`.replace(/[^a-zA-Z0-9-]+/g, '-').replace(/-$/, '');
}

/** `auth/token/create` and `create-orphan`: Vault's handleCreateCommon, minus roles and batch tokens. */
function createToken(req: VaultRequest, state: DevVaultState, orphanEndpoint: boolean): LogicalResponse {
  const parent = req.token!;
  const d = req.data;
  if (req.useLimited) throw badRequest('restricted use token cannot generate child tokens');
  // Vault asks whether the caller holds sudo on the endpoint it called, so
  // sudo on auth/token/create-orphan is what lets a non-root token attach
  // policies it does not hold itself.
  const isSudo = req.acl!.hasSudo(req.path);

  const requested = stringListField(d, 'policies') ?? [];
  const noDefault = boolField(d, 'no_default_policy') ?? false;
  const noParent = boolField(d, 'no_parent') ?? false;
  const numUses = intField(d, 'num_uses') ?? 0;
  const customId = stringField(d, 'id');
  const type = stringField(d, 'type') ?? '';
  let renewable = boolField(d, 'renewable') ?? true;

  if (type === 'batch') throw badRequest('batch tokens are not supported by the development Vault');
  if (type !== '' && type !== 'service') throw badRequest("invalid 'token_type' value");
  if (numUses < 0) throw badRequest('number of uses cannot be negative');
  if (customId && !isSudo) throw badRequest('root or sudo privileges required to specify token id');

  let base: string[];
  let addDefault = false;
  if (requested.length === 0) {
    base = sanitizePolicies(parent.policies, false);
  } else if (!isSudo) {
    const held = sanitizePolicies(parent.policies, false);
    if (!sanitizePolicies(requested, false).every((p) => held.includes(p))) {
      throw badRequest('child policies must be subset of parent');
    }
    base = requested;
    addDefault = !noDefault && parent.policies.includes('default');
  } else {
    base = requested;
    addDefault = !noDefault;
  }
  let policies = sanitizePolicies(base, addDefault);
  if (noDefault) policies = policies.filter((p) => p !== 'default');
  for (const p of policies) {
    if (NON_ASSIGNABLE_POLICIES.includes(p)) throw badRequest(`cannot assign policy "${p}"`);
  }
  if (policies.includes('root') && !parent.policies.includes('root')) {
    throw badRequest('root tokens may not be created without parent token being root');
  }

  let orphan = orphanEndpoint;
  if (noParent) {
    if (!isSudo) throw badRequest('root or sudo privileges required to create orphan token');
    orphan = true;
  }

  const explicitMax = duration(d, 'explicit_max_ttl');
  if (explicitMax < 0) throw badRequest('explicit_max_ttl must be positive');
  const period = duration(d, 'period');
  if (period < 0) throw badRequest('period must be positive');
  if (period > 0 && !isSudo) throw badRequest('root or sudo privileges required to create periodic token');
  let ttl = duration(d, 'ttl');
  if (ttl < 0) throw badRequest('ttl must be positive');

  const warnings: string[] = [];
  let maxTtl = 0;
  let renewTtl = ttl;
  if (period > 0) {
    // A periodic token lives `period` at a time and has no maximum unless
    // explicit_max_ttl is set.
    const capped = state.tokens.calculateTtl(period, explicitMax);
    warnings.push(...capped.warnings.map((w) => w.replace(/^TTL/, 'period').replace('TTL value', 'period value')));
    ttl = capped.ttl;
    renewTtl = capped.ttl;
    maxTtl = explicitMax;
  } else if (ttl > 0 || !policies.includes('root')) {
    const calc = state.tokens.calculateTtl(ttl, explicitMax);
    warnings.push(...calc.warnings);
    ttl = calc.ttl;
    renewTtl = calc.ttl;
    maxTtl = calc.maxTtl;
  }
  if (ttl === 0 && explicitMax > 0) {
    ttl = explicitMax;
    maxTtl = explicitMax;
  }
  if (ttl === 0) {
    if (parent.expireMs !== null) throw badRequest('expiring root tokens cannot create non-expiring root tokens');
    renewable = false;
  }

  let created: TokenEntry;
  try {
    created = state.tokens.create({
      id: customId || undefined,
      policies,
      meta: metaField(d),
      displayName: displayName(stringField(d, 'display_name')),
      numUses,
      parent: orphan ? undefined : parent,
      path: `auth/token/${req.path.split('/')[2]}`,
      creationTtl: ttl,
      renewTtl,
      maxTtl,
      explicitMaxTtl: explicitMax,
      renewable,
      period: period > 0 ? period : undefined,
    });
  } catch (e) {
    if (e instanceof TokenStoreError) throw badRequest(e.message);
    throw e;
  }
  for (const p of policies) {
    if (p !== 'root' && !state.getPolicy(p)) warnings.push(`Policy "${p}" does not exist`);
  }
  return { data: null, auth: state.authBlock(created, ttl), warnings };
}

/** The `data` of a token lookup (Vault's handleLookup). */
export function lookupData(state: DevVaultState, t: TokenEntry, hideId: boolean): Record<string, unknown> {
  const data: Record<string, unknown> = {
    id: hideId ? '' : t.id,
    accessor: t.accessor,
    policies: [...t.policies],
    path: t.path,
    meta: t.meta ? { ...t.meta } : null,
    display_name: t.displayName,
    num_uses: t.numUses,
    orphan: t.parentHash === null,
    creation_time: Math.floor(t.creationMs / 1000),
    creation_ttl: t.creationTtl,
    expire_time: t.expireMs === null ? null : rfc3339(t.expireMs),
    ttl: state.tokens.remainingTtl(t),
    explicit_max_ttl: t.explicitMaxTtl,
    entity_id: '',
    type: 'service',
    renewable: t.renewable && t.expireMs !== null,
    issue_time: rfc3339(t.creationMs),
  };
  if (t.lastRenewalMs !== null) {
    data['last_renewal_time'] = Math.floor(t.lastRenewalMs / 1000);
    data['last_renewal'] = rfc3339(t.lastRenewalMs);
  }
  if (t.period) data['period'] = t.period;
  if (t.role) data['role'] = t.role;
  return data;
}

function accessorTarget(req: VaultRequest, state: DevVaultState): TokenEntry {
  const accessor = stringField(req.data, 'accessor');
  if (!accessor) throw badRequest('missing accessor');
  const t = state.tokens.getByAccessor(accessor);
  if (!t) throw badRequest('invalid accessor');
  return t;
}

function renew(req: VaultRequest, state: DevVaultState, target: TokenEntry, hideToken: boolean): LogicalResponse {
  const increment = duration(req.data, 'increment');
  try {
    const { ttl, warnings } = state.tokens.renew(target, increment);
    return { data: null, auth: state.authBlock(target, ttl, hideToken), warnings };
  } catch (e) {
    if (e instanceof TokenStoreError) throw badRequest(e.message);
    throw e;
  }
}

const tokenRoute = (name: string, handlers: Route['handlers'], extra: Partial<Route> = {}): Route => ({
  pattern: new RegExp(`^auth/token/${name}$`),
  mountType: 'token',
  handlers,
  ...extra,
});

/** The token store endpoints under `auth/token/`. */
export const tokenRoutes: Route[] = [
  tokenRoute('create', { update: (req, state) => createToken(req, state, false) }),
  tokenRoute('create-orphan', { update: (req, state) => createToken(req, state, true) }),
  tokenRoute('create/(?<role>.+)', {
    update: () => {
      throw badRequest('unknown role');
    },
  }),
  tokenRoute('lookup-self', { read: (req, state) => ({ data: lookupData(state, req.token!, false) }) }),
  tokenRoute(
    'lookup',
    Object.fromEntries(
      (['read', 'update'] as const).map((op) => [
        op,
        (req: VaultRequest, state: DevVaultState) => {
          const id = stringField(req.data, 'token') || req.headerToken;
          const t = id ? state.tokens.get(id) : undefined;
          if (!t) throw new VaultHttpError(403, ['bad token']);
          return { data: lookupData(state, t, false) };
        },
      ]),
    ),
  ),
  tokenRoute('lookup-accessor', {
    update: (req, state) => ({ data: lookupData(state, accessorTarget(req, state), true) }),
  }),
  tokenRoute('revoke-self', {
    update: (req, state) => {
      state.tokens.revoke(req.token!);
    },
  }),
  tokenRoute('revoke', {
    update: (req, state) => {
      const id = stringField(req.data, 'token');
      if (!id) throw badRequest('missing token ID');
      const t = state.tokens.get(id);
      if (t) state.tokens.revoke(t);
    },
  }),
  tokenRoute('revoke-accessor', {
    update: (req, state) => {
      const accessor = stringField(req.data, 'accessor');
      if (!accessor) throw badRequest('missing accessor');
      const t = state.tokens.getByAccessor(accessor);
      if (!t) return { data: null, warnings: ['No token found with this accessor'] };
      state.tokens.revoke(t);
      return null;
    },
  }),
  tokenRoute('revoke-orphan', {
    update: (req, state) => {
      const id = stringField(req.data, 'token');
      if (!id) throw badRequest('missing token ID');
      if (!req.acl!.hasSudo(req.path)) throw badRequest('root or sudo privileges required to revoke and orphan');
      const t = state.tokens.get(id);
      if (!t) throw badRequest('token to revoke not found');
      state.tokens.revokeOrphan(t);
    },
  }),
  tokenRoute('renew-self', { update: (req, state) => renew(req, state, req.token!, false) }),
  tokenRoute('renew', {
    update: (req, state) => {
      const id = stringField(req.data, 'token');
      if (!id) throw badRequest('missing token ID');
      const t = state.tokens.get(id);
      if (!t) throw badRequest('token not found');
      return renew(req, state, t, false);
    },
  }),
  tokenRoute('renew-accessor', { update: (req, state) => renew(req, state, accessorTarget(req, state), true) }),
  tokenRoute(
    'accessors/?',
    {
      list: (_req, state) => {
        const keys = state.tokens.all().map((t) => t.accessor);
        if (keys.length === 0) throw new VaultHttpError(404, []);
        return { data: { keys } };
      },
    },
    { sudo: true },
  ),
];
