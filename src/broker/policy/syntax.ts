/**
 * Syntax checks for what agents request (Vault paths, repositories, git
 * refs) and for the patterns operators write in policy files. Each check
 * returns an error message, or undefined when the value is acceptable.
 */

export const MAX_VAULT_PATH_LENGTH = 512;
export const MAX_REPO_LENGTH = 256;
export const MAX_REF_LENGTH = 256;

/**
 * Whitespace, control and invisible format characters (zero-width spaces,
 * bidi overrides): they make a path look like another one in Telegram.
 */
const INVISIBLE = /[\s\p{Cc}\p{Cf}\p{Zl}\p{Zp}]/u;
/**
 * Characters that could change meaning downstream: `"` and `\` inside the
 * HCL of the ephemeral ACL policy, `{` `}` Vault policy templating, and
 * `?` `#` `%` in the request URL (`%2F` would smuggle a `/` past the
 * segment checks).
 */
const UNSAFE_PATH_CHAR = /["\\{}?#%]/;
const REPO_SEGMENT = /^[A-Za-z0-9._-]+$/;
/** Characters git check-ref-format rejects (besides control characters and space). */
const BAD_REF_CHAR = /[~^:?[\\]/;

/** Segment-level checks shared by every kind of value. */
function checkSegments(value: string, what: string): string | undefined {
  if (value.startsWith('/')) return `${what} must not start with "/"`;
  if (value.endsWith('/')) return `${what} must not end with "/"`;
  if (value.includes('//')) return `${what} must not contain empty segments ("//")`;
  if (value.includes('..')) return `${what} must not contain ".."`;
  if (value.split('/').includes('.')) return `${what} must not contain "." segments`;
  return undefined;
}

function checkString(value: unknown, what: string, max: number): string | undefined {
  if (typeof value !== 'string') return `${what} must be a string`;
  if (value === '') return `${what} is empty`;
  if (value.length > max) return `${what} is longer than ${max} characters`;
  if (INVISIBLE.test(value)) return `${what} must not contain whitespace or control characters`;
  return undefined;
}

/**
 * Checks a Vault path an agent asks for. Returns an error message when it
 * contains `..`, empty segments (including a trailing `/`), a leading `/`,
 * the wildcards `*` or `+`, whitespace or control characters, characters
 * unsafe in ACL policies or URLs (`"` `\` `{` `}` `?` `#` `%`), or is longer
 * than 512 characters; undefined when it is acceptable.
 */
export function validateVaultPath(path: string): string | undefined {
  const err = checkString(path, 'path', MAX_VAULT_PATH_LENGTH);
  if (err) return err;
  if (path.includes('*') || path.includes('+')) return 'path must not contain wildcards ("*" or "+")';
  // Look-alike letters (Cyrillic "о" for "o") would show an approver a path
  // that reads like another one; requested paths are printable ASCII only.
  const foreign = /[^\x20-\x7e]/u.exec(path);
  if (foreign) return `path must be printable ASCII (found U+${foreign[0].codePointAt(0)!.toString(16).toUpperCase().padStart(4, '0')})`;
  const unsafe = UNSAFE_PATH_CHAR.exec(path);
  if (unsafe) return `path must not contain ${JSON.stringify(unsafe[0])}`;
  return checkSegments(path, 'path');
}

/**
 * Checks a repository name an agent asks for (`owner/name`, any number of
 * segments of letters, digits, `.`, `_`, `-`). Returns an error message or
 * undefined.
 */
export function validateRepoName(repo: string): string | undefined {
  const err = checkString(repo, 'repo', MAX_REPO_LENGTH);
  if (err) return err;
  if (repo.includes('*') || repo.includes('+')) return 'repo must not contain wildcards ("*" or "+")';
  const seg = checkSegments(repo, 'repo');
  if (seg) return seg;
  if (!repo.split('/').every((s) => REPO_SEGMENT.test(s))) {
    return 'repo may contain only letters, digits, ".", "_", "-" and "/"';
  }
  return undefined;
}

/**
 * git check-ref-format rules for one segment of a ref or ref pattern.
 * `complete` is false for the literal part before a trailing `*`, which the
 * wildcard may still extend (so "v1." or "x.lock" are fine there).
 */
function checkRefSegment(segment: string, isLast: boolean, complete = true): string | undefined {
  if (segment.startsWith('.')) return 'ref segments must not start with "."';
  if (complete && segment.endsWith('.lock')) return 'ref segments must not end with ".lock"';
  if (complete && isLast && segment.endsWith('.')) return 'ref must not end with "."';
  return undefined;
}

/**
 * Checks a git ref an agent asks for: a full ref name starting with
 * `refs/`, valid for `git check-ref-format`, with no wildcards. Returns an
 * error message or undefined.
 */
export function validateRefName(ref: string): string | undefined {
  const err = checkString(ref, 'ref', MAX_REF_LENGTH);
  if (err) return err;
  if (ref.includes('*') || ref.includes('+')) return 'ref must not contain wildcards ("*" or "+")';
  if (!ref.startsWith('refs/')) return 'ref must be a full ref name starting with "refs/" (e.g. "refs/heads/main")';
  const seg = checkSegments(ref, 'ref');
  if (seg) return seg;
  const bad = BAD_REF_CHAR.exec(ref);
  if (bad) return `ref must not contain ${JSON.stringify(bad[0])}`;
  if (ref.includes('@{')) return 'ref must not contain "@{"';
  const segments = ref.split('/');
  for (let i = 0; i < segments.length; i++) {
    const e = checkRefSegment(segments[i]!, i === segments.length - 1);
    if (e) return e;
  }
  return undefined;
}

export type PatternKind = 'path' | 'repo' | 'ref';

const PATTERN_MAX: Record<PatternKind, number> = {
  path: MAX_VAULT_PATH_LENGTH,
  repo: MAX_REPO_LENGTH,
  ref: MAX_REF_LENGTH,
};

/**
 * Checks a policy pattern in Vault ACL glob syntax: `*` only as the very
 * last character (prefix match, also across segments), `+` only as a whole
 * segment (exactly one segment); no leading `/`, no `..`, no empty
 * segments. Literal parts follow the rules for the requested values of the
 * same kind. Returns an error message or undefined.
 */
export function checkPattern(pattern: unknown, kind: PatternKind): string | undefined {
  const what = `${kind} pattern`;
  const err = checkString(pattern, what, PATTERN_MAX[kind]);
  if (err) return err;
  const p = pattern as string;
  const star = p.indexOf('*');
  if (star !== -1 && star !== p.length - 1) {
    return '"*" may appear only as the last character (it matches everything that follows)';
  }
  if (p.startsWith('/')) return `${what} must not start with "/"`;
  if (p.endsWith('/')) {
    return `${what} must not end with "/" (requested values never do; end with "/*" to cover what is below)`;
  }
  const seg = checkSegments(p, what);
  if (seg) return seg;
  const segments = p.split('/');
  for (let i = 0; i < segments.length; i++) {
    const s = segments[i]!;
    if (s.includes('+') && s !== '+') return '"+" must be a whole segment (it matches exactly one segment)';
    const isLast = i === segments.length - 1;
    const literal = isLast && s.endsWith('*') ? s.slice(0, -1) : s;
    if (s === '+' || literal === '') continue;
    if (kind === 'path') {
      const unsafe = UNSAFE_PATH_CHAR.exec(literal);
      if (unsafe) return `${what} must not contain ${JSON.stringify(unsafe[0])}`;
    } else if (kind === 'repo') {
      if (!REPO_SEGMENT.test(literal)) {
        return 'repo patterns may contain only letters, digits, ".", "_", "-", "/" and the wildcards "*" and "+"';
      }
    } else {
      const bad = BAD_REF_CHAR.exec(literal);
      if (bad) return `${what} must not contain ${JSON.stringify(bad[0])}`;
      if (literal.includes('@{')) return `${what} must not contain "@{"`;
      const e = checkRefSegment(literal, isLast, !(isLast && s.endsWith('*')));
      if (e) return e;
    }
  }
  if (kind === 'ref' && !p.startsWith('refs/')) {
    return 'ref patterns must start with "refs/" (e.g. "refs/heads/agent/*")';
  }
  return undefined;
}
