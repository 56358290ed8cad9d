import { Cap } from './policy.ts';
import type { CapabilityName, ParsedPolicy } from './policy.ts';

/** The logical operation a request performs (Vault's logical.Operation). */
export type Operation = 'read' | 'list' | 'create' | 'update' | 'delete' | 'patch';

const OPERATION_CAP: Record<Operation, number> = {
  read: Cap.read,
  list: Cap.list,
  create: Cap.create,
  update: Cap.update,
  delete: Cap.delete,
  patch: Cap.patch,
};

interface Candidate {
  firstWildcard: number;
  isPrefix: boolean;
  wildcards: number;
  path: string;
  caps: number;
}

function merge(existing: number | undefined, added: number): number {
  if (existing === undefined) return added;
  // `deny` in any copy of the same pattern wins and erases everything else.
  if (existing & Cap.deny || added & Cap.deny) return Cap.deny;
  return existing | added;
}

/** Ordering from Vault's acl.go: returns true when `a` has lower priority than `b`. */
function lowerPriority(a: Candidate, b: Candidate): boolean {
  if (a.firstWildcard !== b.firstWildcard) return a.firstWildcard < b.firstWildcard;
  if (a.isPrefix !== b.isPrefix) return a.isPrefix;
  if (a.wildcards !== b.wildcards) return a.wildcards > b.wildcards;
  if (a.path.length !== b.path.length) return a.path.length < b.path.length;
  return a.path < b.path;
}

/**
 * An access-control list compiled from a token's policies, following
 * Vault's `vault/acl.go`: an exact rule wins outright; otherwise the longest
 * prefix (`*`) rule competes with every matching `+` rule and only the single
 * highest-priority rule counts — there is no fall-back to a less specific
 * rule. Capabilities of the same pattern in several policies are unioned,
 * unless one of them says `deny`.
 */
export class Acl {
  private readonly exact = new Map<string, number>();
  private readonly prefix = new Map<string, number>();
  private readonly segment = new Map<string, number>();

  private constructor(readonly isRoot: boolean) {}

  /** Builds the ACL; `root` among the policy names makes it a root ACL. */
  static fromPolicies(policyNames: readonly string[], policies: readonly ParsedPolicy[]): Acl {
    const acl = new Acl(policyNames.includes('root'));
    for (const policy of policies) {
      for (const rule of policy.rules) {
        const table = rule.hasSegmentWildcards ? acl.segment : rule.isPrefix ? acl.prefix : acl.exact;
        table.set(rule.path, merge(table.get(rule.path), rule.caps));
      }
    }
    return acl;
  }

  /** Whether `op` on `path` is allowed, and whether the matching rule grants sudo. */
  check(op: Operation, path: string): { allowed: boolean; sudo: boolean } {
    if (this.isRoot) return { allowed: true, sudo: true };
    const caps = this.capabilityBits(path, op === 'list');
    if (caps === undefined || caps & Cap.deny) return { allowed: false, sudo: false };
    return { allowed: (caps & OPERATION_CAP[op]) !== 0, sudo: (caps & Cap.sudo) !== 0 };
  }

  /**
   * The capabilities on `path` as `sys/capabilities-self` reports them:
   * `["root"]` for a root token, `["deny"]` when nothing is granted.
   * Evaluated like a LIST, as Vault does.
   */
  capabilities(path: string): string[] {
    if (this.isRoot) return ['root'];
    const caps = this.capabilityBits(path, true) ?? 0;
    if (caps & Cap.deny || caps === 0) return ['deny'];
    return (Object.keys(Cap) as CapabilityName[]).filter((name) => caps & Cap[name]).sort();
  }

  /** True when the token holds `sudo` on the path (root always does). */
  hasSudo(path: string): boolean {
    return this.isRoot || this.check('read', path).sudo;
  }

  private capabilityBits(rawPath: string, isList: boolean): number | undefined {
    let path = rawPath;
    while (path.startsWith('/')) path = path.slice(1);

    const exact = this.exact.get(path);
    if (exact !== undefined) return exact;
    if (isList) {
      const trimmed = this.exact.get(path.replace(/\/$/, ''));
      if (trimmed !== undefined) return trimmed;
      // Lists are checked without the trailing slash first, because a rule
      // ending in `*` may match the bare folder name.
      if (path.endsWith('/')) {
        const found = this.nonExact(path.slice(0, -1));
        if (found !== undefined) return found;
      }
    }
    return this.nonExact(path);
  }

  private nonExact(path: string): number | undefined {
    const candidates: Candidate[] = [];
    let longest: string | undefined;
    for (const p of this.prefix.keys()) {
      if (path.startsWith(p) && (longest === undefined || p.length > longest.length)) longest = p;
    }
    if (longest !== undefined) {
      const caps = this.prefix.get(longest)!;
      if (this.segment.size === 0) return caps;
      candidates.push({ firstWildcard: longest.length, isPrefix: true, wildcards: 0, path: longest, caps });
    }
    if (this.segment.size === 0) return undefined;

    const parts = path.split('/');
    for (const [full, caps] of this.segment) {
      if (full === '') continue;
      const isPrefix = full.endsWith('*');
      const pattern = isPrefix ? full.slice(0, -1) : full;
      const segs = pattern.split('/');
      if (parts.length < segs.length) continue;
      if (!isPrefix && segs.length !== parts.length) continue;
      let wildcards = 0;
      let matched = true;
      for (let i = 0; i < segs.length; i++) {
        const seg = segs[i]!;
        const part = parts[i]!;
        if (seg === '+') wildcards++;
        else if (seg === part) continue;
        else if (isPrefix && i === segs.length - 1 && part.startsWith(seg)) continue;
        else {
          matched = false;
          break;
        }
      }
      if (matched) candidates.push({ firstWildcard: full.indexOf('+'), isPrefix, wildcards, path: pattern, caps });
    }
    if (candidates.length === 0) return undefined;
    let best = candidates[0]!;
    for (const c of candidates.slice(1)) if (lowerPriority(best, c)) best = c;
    return best.caps;
  }
}
