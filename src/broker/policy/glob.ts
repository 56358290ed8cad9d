import type { AgentPolicy } from './types.ts';

/**
 * Vault ACL glob match of a path, repo or ref against one pattern: exact
 * match, a trailing `*` makes the pattern a prefix (matching within and
 * across segments), a `+` segment matches exactly one segment. As in
 * Vault's `acl.go`, that segment may be empty: `team/+` matches `team/`,
 * which is how a LIST of `team` is checked, so a `deny` of `team/+` also
 * denies listing the names it protects. Requested values never have empty
 * segments; only that LIST check meets one. The pattern is assumed valid
 * (see `checkPattern`).
 */
export function vaultGlobMatch(pattern: string, value: string): boolean {
  if (!pattern.includes('+')) {
    return pattern.endsWith('*') ? value.startsWith(pattern.slice(0, -1)) : pattern === value;
  }
  const p = pattern.split('/');
  const v = value.split('/');
  for (let i = 0; i < p.length; i++) {
    const seg = p[i]!;
    const isLast = i === p.length - 1;
    if (isLast && seg.endsWith('*')) {
      return i < v.length && v[i]!.startsWith(seg.slice(0, -1));
    }
    if (i >= v.length) return false;
    if (seg !== '+' && seg !== v[i]) return false;
  }
  return p.length === v.length;
}

/**
 * Simple glob used for session keys and the `agents` lists of rules: `*`
 * matches any run of characters (including none), anywhere in the pattern;
 * everything else is literal. Linear-time (no regular expressions), so
 * hostile keys cannot make it backtrack.
 */
export function simpleGlobMatch(pattern: string, value: string): boolean {
  let p = 0;
  let v = 0;
  let starP = -1;
  let starV = 0;
  while (v < value.length) {
    if (p < pattern.length && pattern[p] === '*') {
      starP = p++;
      starV = v;
    } else if (p < pattern.length && pattern[p] === value[v]) {
      p++;
      v++;
    } else if (starP !== -1) {
      p = starP + 1;
      v = ++starV;
    } else {
      return false;
    }
  }
  while (p < pattern.length && pattern[p] === '*') p++;
  return p === pattern.length;
}

/**
 * Whether `key` is a session key the agent may target: it matches one of the
 * agent's `sessions` patterns. An unknown agent (undefined) may target none.
 */
export function sessionAllowed(agentPolicy: AgentPolicy | undefined, key: string): boolean {
  if (!agentPolicy || typeof key !== 'string' || key === '') return false;
  return agentPolicy.sessions.some((pattern) => simpleGlobMatch(pattern, key));
}

interface TrieNode<T> {
  children: Map<string, TrieNode<T>>;
  plus: TrieNode<T> | undefined;
  /** Patterns ending exactly at this node. */
  exact: T[];
  /** Patterns whose last segment is `literal*`, attached to the node before that segment. */
  prefix: Array<{ literal: string; value: T }>;
}

function node<T>(): TrieNode<T> {
  return { children: new Map(), plus: undefined, exact: [], prefix: [] };
}

/**
 * A set of Vault-glob patterns, each carrying a value, stored as a trie of
 * segments so that matching a value costs about the depth of the value, not
 * the number of patterns.
 */
export class PatternSet<T> {
  readonly #root: TrieNode<T> = node();
  #size = 0;

  /** Number of patterns added. */
  get size(): number {
    return this.#size;
  }

  /** Adds a (valid) pattern with its value. */
  add(pattern: string, value: T): void {
    const segments = pattern.split('/');
    let n = this.#root;
    for (let i = 0; i < segments.length; i++) {
      const seg = segments[i]!;
      if (i === segments.length - 1 && seg.endsWith('*')) {
        n.prefix.push({ literal: seg.slice(0, -1), value });
        this.#size++;
        return;
      }
      if (seg === '+') {
        n.plus ??= node();
        n = n.plus;
      } else {
        let next = n.children.get(seg);
        if (!next) {
          next = node();
          n.children.set(seg, next);
        }
        n = next;
      }
    }
    n.exact.push(value);
    this.#size++;
  }

  /**
   * Calls `visit` with the value of every pattern matching `value`; stops
   * early when `visit` returns true. Returns whether it stopped early.
   */
  forEachMatch(value: string, visit: (v: T) => boolean | void): boolean {
    if (this.#size === 0) return false;
    return walk(this.#root, value.split('/'), 0, visit);
  }

  /** The value of the first matching pattern found, or undefined. */
  firstMatch(value: string): T | undefined {
    let found: T | undefined;
    this.forEachMatch(value, (v) => {
      found = v;
      return true;
    });
    return found;
  }

  /** Whether any pattern matches `value`. */
  matches(value: string): boolean {
    return this.forEachMatch(value, () => true);
  }
}

function walk<T>(n: TrieNode<T>, segs: string[], i: number, visit: (v: T) => boolean | void): boolean {
  if (i === segs.length) {
    for (const v of n.exact) if (visit(v) === true) return true;
    return false;
  }
  const seg = segs[i]!;
  for (const p of n.prefix) {
    if (seg.startsWith(p.literal) && visit(p.value) === true) return true;
  }
  const child = n.children.get(seg);
  if (child && walk(child, segs, i + 1, visit)) return true;
  // `+` matches any one segment, the empty one too (Vault's acl.go: `team/+` matches `team/`).
  if (n.plus && walk(n.plus, segs, i + 1, visit)) return true;
  return false;
}
