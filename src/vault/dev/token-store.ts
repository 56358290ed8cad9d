import { createHash, randomBytes } from 'node:crypto';
import type { Clock } from '../../lib/clock.ts';
import { humanDuration } from './duration.ts';

const BASE62 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';

/** A random base62 string from node:crypto (rejection sampling keeps it unbiased). */
export function randomBase62(length: number): string {
  let out = '';
  while (out.length < length) {
    for (const byte of randomBytes(length * 2)) {
      if (byte < 248 && out.length < length) out += BASE62[byte % 62];
    }
  }
  return out;
}

/** A service-token-shaped secret: `hvs.` followed by random base62. */
export function newTokenId(): string {
  return `hvs.${randomBase62(40)}`;
}

function hashId(id: string): string {
  return createHash('sha256').update(id).digest('hex');
}

/**
 * A token as the development Vault keeps it. `id` is the secret; it is
 * indexed only by its SHA-256, so lookups never compare secrets directly.
 */
export interface TokenEntry {
  readonly id: string;
  readonly accessor: string;
  readonly policies: readonly string[];
  readonly meta: Readonly<Record<string, string>> | null;
  readonly displayName: string;
  /** Remaining uses; 0 means unlimited. */
  numUses: number;
  readonly parentHash: string | null;
  readonly path: string;
  readonly creationMs: number;
  /** TTL in seconds given at creation (0 = never expires). */
  readonly creationTtl: number;
  /** TTL in seconds a plain renewal grants (the creation TTL, or the AppRole's token_ttl). */
  readonly renewTtl: number;
  /** Effective maximum lifetime in seconds from creation (0 = none). */
  readonly maxTtl: number;
  readonly explicitMaxTtl: number;
  readonly renewable: boolean;
  expireMs: number | null;
  lastRenewalMs: number | null;
  /** Periodic tokens: every renewal grants this many seconds. */
  readonly period?: number;
  readonly role?: string;
  /** For response-wrapping tokens: the wire response they wrap. */
  readonly wrapped?: WrappedResponse;
}

export interface WrappedResponse {
  body: string;
  creationPath: string;
  ttl: number;
  creationMs: number;
  wrappedAccessor?: string;
}

export type NewToken = Omit<
  TokenEntry,
  'id' | 'accessor' | 'numUses' | 'expireMs' | 'lastRenewalMs' | 'creationMs' | 'parentHash' | 'renewTtl'
> & {
  id?: string;
  numUses?: number;
  parent?: TokenEntry;
  renewTtl?: number;
};

export interface TtlLimits {
  defaultTtl: number;
  maxTtl: number;
}

/** The full expiry sweep runs at most this often (clock ms); lookups check expiry themselves. */
const SWEEP_INTERVAL_MS = 1_000;

/** Thrown by the store; the route turns it into a 400. */
export class TokenStoreError extends Error {}

/**
 * In-memory token store with Vault's lifetime rules: expiry by TTL against
 * the injected clock, a hard maximum lifetime, use-limited tokens, and
 * revocation of a token's whole tree of children (orphans are not children).
 */
export class TokenStore {
  private readonly byHash = new Map<string, TokenEntry>();
  private readonly byAccessor = new Map<string, string>();
  private readonly children = new Map<string, Set<string>>();
  /** When the last full expiry sweep ran (clock ms); see live(). */
  private lastSweepMs = Number.NEGATIVE_INFINITY;

  constructor(
    private readonly clock: Clock,
    readonly limits: TtlLimits,
  ) {}

  /**
   * Vault's `framework.CalculateTTL` for a new lease starting now: the
   * requested TTL (or the default), capped at the effective maximum with a
   * warning worded like Vault's.
   */
  calculateTtl(requested: number, explicitMax: number, backendMax = 0): { ttl: number; maxTtl: number; warnings: string[] } {
    let maxTtl = this.limits.maxTtl;
    if (backendMax > 0 && backendMax < maxTtl) maxTtl = backendMax;
    if (explicitMax > 0 && explicitMax < maxTtl) maxTtl = explicitMax;
    let ttl = requested > 0 ? requested : this.limits.defaultTtl;
    const warnings: string[] = [];
    if (ttl > maxTtl) {
      warnings.push(
        `TTL of "${humanDuration(ttl)}" exceeded the effective max_ttl of "${humanDuration(maxTtl)}"; TTL value is capped accordingly`,
      );
      ttl = maxTtl;
    }
    return { ttl, maxTtl, warnings };
  }

  create(spec: NewToken): TokenEntry {
    const now = this.clock.now();
    const id = spec.id ?? newTokenId();
    const hash = hashId(id);
    // An expired token not yet swept does not block its ID (live() revokes it).
    if (this.live(hash)) throw new TokenStoreError('cannot create a token with a duplicate ID');
    const { parent, ...rest } = spec;
    const entry: TokenEntry = {
      ...rest,
      id,
      accessor: randomBase62(24),
      numUses: spec.numUses ?? 0,
      parentHash: parent ? hashId(parent.id) : null,
      creationMs: now,
      renewTtl: spec.renewTtl ?? spec.creationTtl,
      expireMs: spec.creationTtl > 0 ? now + spec.creationTtl * 1000 : null,
      lastRenewalMs: null,
    };
    this.byHash.set(hash, entry);
    this.byAccessor.set(entry.accessor, hash);
    if (entry.parentHash) {
      const set = this.children.get(entry.parentHash) ?? new Set<string>();
      set.add(hash);
      this.children.set(entry.parentHash, set);
    }
    return entry;
  }

  /** The live token with this secret, or undefined (unknown, revoked or expired). */
  get(id: string): TokenEntry | undefined {
    return this.live(hashId(id));
  }

  /** The live token with this accessor, or undefined. */
  getByAccessor(accessor: string): TokenEntry | undefined {
    const hash = this.byAccessor.get(accessor);
    return hash === undefined ? undefined : this.live(hash);
  }

  /** Every live token (a fresh array; entries are the store's own). */
  all(): TokenEntry[] {
    this.sweep();
    return [...this.byHash.values()];
  }

  /** Whether the token is the parent of `child`. */
  isParentOf(parent: TokenEntry, child: TokenEntry): boolean {
    return child.parentHash === hashId(parent.id);
  }

  /** Revokes expired tokens and, with them, their children. */
  sweep(): void {
    const now = this.clock.now();
    this.lastSweepMs = now;
    for (const [hash, entry] of this.byHash) {
      if (entry.expireMs !== null && now >= entry.expireMs) this.revokeHash(hash);
    }
  }

  /**
   * The token stored under `hash` if it is live. What a full sweep would do
   * to it is done here and now: if it or any ancestor has expired, that
   * ancestor is revoked with its whole tree. The full sweep itself (which
   * only frees the memory of expired tokens nobody asks for) runs at most
   * once a second, so a request costs O(depth) rather than O(tokens).
   */
  private live(hash: string): TokenEntry | undefined {
    const now = this.clock.now();
    if (now - this.lastSweepMs >= SWEEP_INTERVAL_MS || now < this.lastSweepMs) this.sweep();
    const entry = this.byHash.get(hash);
    if (!entry) return undefined;
    // The highest expired token on the way to the root: revoking it takes everything below.
    let expired: string | null = null;
    for (let h: string | null = hash; h !== null; ) {
      const e = this.byHash.get(h);
      if (!e) break;
      if (e.expireMs !== null && now >= e.expireMs) expired = h;
      h = e.parentHash;
    }
    if (expired === null) return entry;
    this.revokeHash(expired);
    return undefined;
  }

  /** Revokes the token and every descendant. */
  revoke(entry: TokenEntry): void {
    this.revokeHash(hashId(entry.id));
  }

  /** Revokes the token but turns its children into orphans (`revoke-orphan`). */
  revokeOrphan(entry: TokenEntry): void {
    const hash = hashId(entry.id);
    for (const childHash of this.children.get(hash) ?? []) {
      const child = this.byHash.get(childHash);
      if (child) this.byHash.set(childHash, { ...child, parentHash: null });
    }
    this.children.delete(hash);
    this.remove(hash);
  }

  /**
   * Spends one use of a use-limited token. Returns true when that was the
   * last one: the current request still succeeds, then the caller revokes.
   */
  spendUse(entry: TokenEntry): boolean {
    if (entry.numUses <= 0) return false;
    entry.numUses -= 1;
    return entry.numUses === 0;
  }

  /**
   * Renews a token's lease: `increment` (or its renewal TTL) from now, capped
   * at creation + max TTL. Throws TokenStoreError when it cannot be renewed.
   */
  renew(entry: TokenEntry, increment: number): { ttl: number; warnings: string[] } {
    if (!entry.renewable || entry.expireMs === null) throw new TokenStoreError('lease is not renewable');
    const now = this.clock.now();
    let ttl = entry.period ?? (increment > 0 ? increment : entry.renewTtl > 0 ? entry.renewTtl : this.limits.defaultTtl);
    const warnings: string[] = [];
    if (entry.maxTtl > 0) {
      const maxValid = Math.floor((entry.creationMs + entry.maxTtl * 1000 - now) / 1000);
      if (maxValid <= 0) throw new TokenStoreError('past the max TTL, cannot renew');
      if (ttl > maxValid) {
        warnings.push(
          `TTL of "${humanDuration(ttl)}" exceeded the effective max_ttl of "${humanDuration(maxValid)}"; TTL value is capped accordingly`,
        );
        ttl = maxValid;
      }
    }
    entry.expireMs = now + ttl * 1000;
    entry.lastRenewalMs = now;
    return { ttl, warnings };
  }

  /** Remaining whole seconds of life (0 for a token that never expires). */
  remainingTtl(entry: TokenEntry): number {
    if (entry.expireMs === null) return 0;
    return Math.max(0, Math.floor((entry.expireMs - this.clock.now()) / 1000));
  }

  private revokeHash(hash: string): void {
    for (const childHash of this.children.get(hash) ?? []) this.revokeHash(childHash);
    this.children.delete(hash);
    this.remove(hash);
  }

  private remove(hash: string): void {
    const entry = this.byHash.get(hash);
    if (!entry) return;
    this.byHash.delete(hash);
    this.byAccessor.delete(entry.accessor);
    if (entry.parentHash) this.children.get(entry.parentHash)?.delete(hash);
  }
}
