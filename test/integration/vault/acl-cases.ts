/**
 * ACL cases drawn from Vault's documentation (concepts/policies, the KV v2
 * ACL rules, and the priority order in vault/acl.go). The same table runs
 * against the development Vault in the normal suite and against a real
 * Vault in the opt-in live suite (test/live), so any disagreement between
 * the two shows up as a failing case.
 */

export type AclAction = 'read' | 'list' | 'write' | 'delete' | 'patch';

export interface AclCase {
  name: string;
  /** Policy texts; each becomes its own policy attached to the token. */
  policies: string[];
  action: AclAction;
  path: string;
  /** Body for write/patch (default: a KV v2 `{data: …}`). */
  body?: Record<string, unknown>;
  /** KV v2 data paths written by root before the operation, so the key exists. */
  existing?: string[];
  noDefaultPolicy?: boolean;
  expect: 'allowed' | 'denied';
}

/** Where the cases live: a KV v2 mount and a unique namespace segment for this run. */
export interface AclCaseScope {
  kv: string;
  ns: string;
}

function rule(path: string, ...caps: string[]): string {
  return `path "${path}" {\n  capabilities = [${caps.map((c) => `"${c}"`).join(', ')}]\n}\n`;
}

/**
 * One pattern, one operation, one path: whether the pattern reaches the
 * operation. The broker's matcher (its rule coverage and its `deny` list)
 * and Vault's ACL must give the same answer for every case; the cases run
 * as ordinary ACL cases against the development Vault (and a real one in
 * the live suite) and, in `broker-matcher.test.ts`, through the broker's
 * evaluation too, so a disagreement between any two fails.
 *
 * `pattern` and `path` are relative to the KV v2 run namespace: under
 * `<kv>/data/<ns>/` for reads, `<kv>/metadata/<ns>/` for lists (where KV v2
 * serves them). `keys` are the secrets that exist (so an allowed read or
 * list answers 200, never 404). A list case also runs in Vault with the
 * path's trailing `/` (Vault lists `a` as `a/`; the broker never accepts a
 * trailing `/` and is asked for `a`).
 */
export interface MatchCase {
  name: string;
  pattern: string;
  op: 'read' | 'list';
  path: string;
  keys: string[];
  matches: boolean;
}

/** The shared matcher cases (`+`, `*`, trailing slashes, lists of parent folders). */
export const MATCH_CASES: readonly MatchCase[] = [
  // `+` as the last segment, and the folder above it (Vault matches `+` against the empty segment of `team/`).
  { name: '"team/+" covers a LIST of its parent "team"', pattern: 'team/+', op: 'list', path: 'team', keys: ['team/a'], matches: true },
  { name: '"team/+" covers reading one name below', pattern: 'team/+', op: 'read', path: 'team/a', keys: ['team/a'], matches: true },
  { name: '"team/+" does not cover reading "team" itself', pattern: 'team/+', op: 'read', path: 'team', keys: ['team'], matches: false },
  { name: '"team/+" does not cover reading two levels down', pattern: 'team/+', op: 'read', path: 'team/a/b', keys: ['team/a/b'], matches: false },
  { name: '"team/+" covers a LIST of "team/a" (checked as "team/a" first)', pattern: 'team/+', op: 'list', path: 'team/a', keys: ['team/a/b'], matches: true },
  { name: '"team/+" does not cover a LIST of "team/a/b"', pattern: 'team/+', op: 'list', path: 'team/a/b', keys: ['team/a/b/c'], matches: false },
  { name: '"team/+" does not cover a LIST of the grandparent', pattern: 'x/team/+', op: 'list', path: 'x', keys: ['x/team/a'], matches: false },
  // `+` in the middle.
  { name: '"team/+/db" covers reading "team/a/db"', pattern: 'team/+/db', op: 'read', path: 'team/a/db', keys: ['team/a/db'], matches: true },
  { name: '"team/+/db" does not cover a LIST of "team/a"', pattern: 'team/+/db', op: 'list', path: 'team/a', keys: ['team/a/db'], matches: false },
  { name: '"team/+/db" does not cover a LIST of "team"', pattern: 'team/+/db', op: 'list', path: 'team', keys: ['team/a/db'], matches: false },
  { name: '"team/+/db" does not cover reading "team/a/b/db"', pattern: 'team/+/db', op: 'read', path: 'team/a/b/db', keys: ['team/a/b/db'], matches: false },
  // Two `+` in a row: the last one meets the empty segment of a LIST.
  { name: '"team/+/+" covers a LIST of "team/a"', pattern: 'team/+/+', op: 'list', path: 'team/a', keys: ['team/a/b'], matches: true },
  { name: '"team/+/+" does not cover a LIST of "team"', pattern: 'team/+/+', op: 'list', path: 'team', keys: ['team/a/b'], matches: false },
  // `*` after `+`.
  { name: '"team/+/*" covers a LIST of "team/a"', pattern: 'team/+/*', op: 'list', path: 'team/a', keys: ['team/a/b'], matches: true },
  { name: '"team/+/*" does not cover a LIST of "team"', pattern: 'team/+/*', op: 'list', path: 'team', keys: ['team/a/b'], matches: false },
  { name: '"team/+/*" does not cover reading "team/a"', pattern: 'team/+/*', op: 'read', path: 'team/a', keys: ['team/a'], matches: false },
  { name: '"team/+/*" covers reading deeper paths', pattern: 'team/+/*', op: 'read', path: 'team/a/b/c', keys: ['team/a/b/c'], matches: true },
  { name: '"team/+/d*" covers reading "team/a/db/x" (prefix of the last segment, then anything)', pattern: 'team/+/d*', op: 'read', path: 'team/a/db/x', keys: ['team/a/db/x'], matches: true },
  { name: '"team/+/d*" does not cover a LIST of "team/a" (empty last segment)', pattern: 'team/+/d*', op: 'list', path: 'team/a', keys: ['team/a/db'], matches: false },
  // `*` alone, and the folder itself.
  { name: '"team/*" covers a LIST of its folder "team"', pattern: 'team/*', op: 'list', path: 'team', keys: ['team/a'], matches: true },
  { name: '"team/*" does not cover reading "team"', pattern: 'team/*', op: 'read', path: 'team', keys: ['team'], matches: false },
  { name: '"team*" covers reading "teamx"', pattern: 'team*', op: 'read', path: 'teamx', keys: ['teamx'], matches: true },
  { name: '"team*" covers a LIST of "team"', pattern: 'team*', op: 'list', path: 'team', keys: ['team/a'], matches: true },
  { name: '"team/a*" does not cover a LIST of "team"', pattern: 'team/a*', op: 'list', path: 'team', keys: ['team/a'], matches: false },
  // Exact patterns and lists.
  { name: 'exact "team" covers a LIST of "team"', pattern: 'team', op: 'list', path: 'team', keys: ['team/a'], matches: true },
  { name: 'exact "team" does not cover a LIST of "team/a"', pattern: 'team', op: 'list', path: 'team/a', keys: ['team/a/b'], matches: false },
  { name: 'exact "team/a" does not cover a LIST of its parent', pattern: 'team/a', op: 'list', path: 'team', keys: ['team/a'], matches: false },
  // `+` standing for the first segment below the namespace.
  { name: '"+/db" covers reading "x/db"', pattern: '+/db', op: 'read', path: 'x/db', keys: ['x/db'], matches: true },
  { name: '"+" covers a LIST of the namespace root folder "x"', pattern: '+', op: 'list', path: 'x', keys: ['x/a'], matches: true },
];

/** The Vault paths of a match case: its pattern and path under the KV v2 prefix its operation uses. */
export function matchCasePaths({ kv, ns }: AclCaseScope, c: MatchCase): { pattern: string; path: string } {
  const base = `${kv}/${c.op === 'read' ? 'data' : 'metadata'}/${ns}/`;
  return { pattern: base + c.pattern, path: base + c.path };
}

/** The ACL cases of one match case: a policy granting read and list on its pattern, then its operation (lists also with a trailing `/`). */
export function matchAclCases(scope: AclCaseScope, c: MatchCase): AclCase[] {
  const { pattern, path } = matchCasePaths(scope, c);
  const existing = c.keys.map((k) => `${scope.kv}/data/${scope.ns}/${k}`);
  const base: Omit<AclCase, 'name' | 'path'> = { policies: [rule(pattern, 'read', 'list')], action: c.op, existing, expect: c.matches ? 'allowed' : 'denied' };
  const out: AclCase[] = [{ ...base, name: `match: ${c.name}`, path }];
  if (c.op === 'list') out.push({ ...base, name: `match: ${c.name} (LIST with trailing "/")`, path: `${path}/` });
  return out;
}

/** Builds the case table for a KV v2 mount and run namespace. */
export function aclCases(scope: AclCaseScope): AclCase[] {
  return [...baseCases(scope), ...MATCH_CASES.flatMap((c) => matchAclCases(scope, c))];
}

function baseCases({ kv, ns }: AclCaseScope): AclCase[] {
  const d = (p: string) => `${kv}/data/${ns}/${p}`;
  const m = (p: string) => `${kv}/metadata/${ns}/${p}`;
  const policyPath = `sys/policies/acl/${ns}-target`;

  return [
    // --- Glob (`*` as last character = prefix match) -------------------------
    { name: 'glob grants read below the prefix', policies: [rule(d('app/*'), 'read')], action: 'read', path: d('app/db'), existing: [d('app/db')], expect: 'allowed' },
    { name: 'glob grants read deeper below the prefix', policies: [rule(d('app/*'), 'read')], action: 'read', path: d('app/team/db'), existing: [d('app/team/db')], expect: 'allowed' },
    { name: 'glob "app/*" does not cover "app" itself', policies: [rule(d('app/*'), 'read')], action: 'read', path: d('app'), existing: [d('app')], expect: 'denied' },
    { name: 'glob is a plain prefix, not segment-bound ("app*" covers "application/x")', policies: [rule(d('app*'), 'read')], action: 'read', path: d('application/x'), existing: [d('application/x')], expect: 'allowed' },
    { name: 'glob "app/*" does not cover a sibling "application/x"', policies: [rule(d('app/*'), 'read')], action: 'read', path: d('application/x'), existing: [d('application/x')], expect: 'denied' },
    { name: 'glob over the whole mount covers data paths', policies: [rule(`${kv}/*`, 'read')], action: 'read', path: d('app/db'), existing: [d('app/db')], expect: 'allowed' },
    { name: '"*" in the middle of a path is literal, not a wildcard', policies: [rule(d('*/db'), 'read')], action: 'read', path: d('x/db'), existing: [d('x/db')], expect: 'denied' },
    { name: 'a leading "/" in a policy path is ignored', policies: [rule(`/${d('app/*')}`, 'read')], action: 'read', path: d('app/db'), existing: [d('app/db')], expect: 'allowed' },

    // --- Exact paths ----------------------------------------------------------
    { name: 'exact path grants that path', policies: [rule(d('app/db'), 'read')], action: 'read', path: d('app/db'), existing: [d('app/db')], expect: 'allowed' },
    { name: 'exact path is not a prefix', policies: [rule(d('app/db'), 'read')], action: 'read', path: d('app/db2'), existing: [d('app/db2')], expect: 'denied' },
    { name: 'exact rule beats a glob and does not fall back to it', policies: [rule(d('app/*'), 'read') + rule(d('app/db'), 'update')], action: 'read', path: d('app/db'), existing: [d('app/db')], expect: 'denied' },
    { name: 'exact rule in another policy also beats the glob', policies: [rule(d('app/*'), 'read'), rule(d('app/db'), 'update')], action: 'read', path: d('app/db'), existing: [d('app/db')], expect: 'denied' },
    { name: 'other paths under the glob still follow the glob', policies: [rule(d('app/*'), 'read') + rule(d('app/db'), 'update')], action: 'read', path: d('app/web'), existing: [d('app/web')], expect: 'allowed' },

    // --- Most specific rule wins, no fall-back --------------------------------
    { name: 'longer glob wins and does not fall back to the shorter', policies: [rule(d('app/*'), 'read') + rule(d('app/team/*'), 'list')], action: 'read', path: d('app/team/db'), existing: [d('app/team/db')], expect: 'denied' },
    { name: 'deny on a less specific glob does not override a more specific grant', policies: [rule(d('app/*'), 'deny') + rule(d('app/team/*'), 'read')], action: 'read', path: d('app/team/db'), existing: [d('app/team/db')], expect: 'allowed' },
    { name: 'deny on the less specific glob applies where it is the best match', policies: [rule(d('app/*'), 'deny') + rule(d('app/team/*'), 'read')], action: 'read', path: d('app/other'), existing: [d('app/other')], expect: 'denied' },

    // --- deny and merging across policies --------------------------------------
    { name: 'deny on the same pattern in another policy wins', policies: [rule(d('app/*'), 'read'), rule(d('app/*'), 'deny')], action: 'read', path: d('app/db'), existing: [d('app/db')], expect: 'denied' },
    { name: 'deny alongside other capabilities in one block denies', policies: [rule(d('app/*'), 'read', 'deny')], action: 'read', path: d('app/db'), existing: [d('app/db')], expect: 'denied' },
    { name: 'exact deny overrides a glob grant', policies: [rule(d('app/*'), 'read') + rule(d('app/db'), 'deny')], action: 'read', path: d('app/db'), existing: [d('app/db')], expect: 'denied' },
    { name: 'capabilities on the same pattern are unioned across policies (create)', policies: [rule(d('app/*'), 'read'), rule(d('app/*'), 'create')], action: 'write', path: d('app/new'), expect: 'allowed' },
    { name: 'capabilities on the same pattern are unioned across policies (read)', policies: [rule(d('app/*'), 'create'), rule(d('app/*'), 'read')], action: 'read', path: d('app/db'), existing: [d('app/db')], expect: 'allowed' },

    // --- `+` single-segment wildcard -------------------------------------------
    { name: '"+" matches exactly one segment', policies: [rule(d('+/config'), 'read')], action: 'read', path: d('team1/config'), existing: [d('team1/config')], expect: 'allowed' },
    { name: '"+" does not match two segments', policies: [rule(d('+/config'), 'read')], action: 'read', path: d('team1/sub/config'), existing: [d('team1/sub/config')], expect: 'denied' },
    { name: '"+" does not match zero segments', policies: [rule(d('+/config'), 'read')], action: 'read', path: d('config'), existing: [d('config')], expect: 'denied' },
    { name: '"+" as the last segment matches one segment', policies: [rule(d('app/+'), 'read')], action: 'read', path: d('app/x'), existing: [d('app/x')], expect: 'allowed' },
    { name: '"+" as the last segment does not match deeper paths', policies: [rule(d('app/+'), 'read')], action: 'read', path: d('app/x/y'), existing: [d('app/x/y')], expect: 'denied' },
    { name: '"+" combined with a trailing glob', policies: [rule(d('+/app/*'), 'read')], action: 'read', path: d('t1/app/x/y'), existing: [d('t1/app/x/y')], expect: 'allowed' },

    // --- Priority between wildcard rules (vault/acl.go) -----------------------
    { name: 'priority: a later first wildcard wins ("team/*" over "+/db")', policies: [rule(d('team/*'), 'read') + rule(d('+/db'), 'deny')], action: 'read', path: d('team/db'), existing: [d('team/db')], expect: 'allowed' },
    { name: 'priority: at the same position "+" beats a trailing "*"', policies: [rule(d('*'), 'deny') + rule(d('+/db'), 'read')], action: 'read', path: d('x/db'), existing: [d('x/db')], expect: 'allowed' },
    { name: 'priority: fewer "+" segments win (allow)', policies: [rule(d('+/+/x'), 'deny') + rule(d('+/b/x'), 'read')], action: 'read', path: d('a/b/x'), existing: [d('a/b/x')], expect: 'allowed' },
    { name: 'priority: fewer "+" segments win (deny)', policies: [rule(d('+/+/x'), 'read') + rule(d('+/b/x'), 'deny')], action: 'read', path: d('a/b/x'), existing: [d('a/b/x')], expect: 'denied' },
    { name: 'priority: the longer of two otherwise equal rules wins', policies: [rule(d('+/bar/b*'), 'deny') + rule(d('+/bar/ba*'), 'read')], action: 'read', path: d('x/bar/baz'), existing: [d('x/bar/baz')], expect: 'allowed' },

    // --- KV v2: data/ vs metadata/, create vs update --------------------------
    { name: 'KV v2: a v1-style rule without data/ grants nothing', policies: [rule(`${kv}/${ns}/app/*`, 'read')], action: 'read', path: d('app/db'), existing: [d('app/db')], expect: 'denied' },
    { name: 'KV v2: read on data/ does not allow reading metadata/', policies: [rule(d('app/*'), 'read')], action: 'read', path: m('app/db'), existing: [d('app/db')], expect: 'denied' },
    { name: 'KV v2: read on metadata/ allows reading metadata', policies: [rule(m('app/*'), 'read')], action: 'read', path: m('app/db'), existing: [d('app/db')], expect: 'allowed' },
    { name: 'KV v2: read-only cannot write', policies: [rule(d('app/*'), 'read')], action: 'write', path: d('app/new'), expect: 'denied' },
    { name: 'KV v2: create allows writing a new key', policies: [rule(d('app/*'), 'create')], action: 'write', path: d('app/new'), expect: 'allowed' },
    { name: 'KV v2: create alone cannot overwrite an existing key', policies: [rule(d('app/*'), 'create')], action: 'write', path: d('app/db'), existing: [d('app/db')], expect: 'denied' },
    { name: 'KV v2: update allows overwriting an existing key', policies: [rule(d('app/*'), 'update')], action: 'write', path: d('app/db'), existing: [d('app/db')], expect: 'allowed' },
    { name: 'KV v2: update alone cannot create a new key', policies: [rule(d('app/*'), 'update')], action: 'write', path: d('app/new'), expect: 'denied' },
    { name: 'KV v2: delete on data/ soft-deletes', policies: [rule(d('app/*'), 'delete')], action: 'delete', path: d('app/db'), existing: [d('app/db')], expect: 'allowed' },
    { name: 'KV v2: delete on data/ does not allow deleting metadata/', policies: [rule(d('app/*'), 'delete')], action: 'delete', path: m('app/db'), existing: [d('app/db')], expect: 'denied' },
    { name: 'KV v2: delete on metadata/ removes the key', policies: [rule(m('app/*'), 'delete')], action: 'delete', path: m('app/db'), existing: [d('app/db')], expect: 'allowed' },
    { name: 'KV v2: patch needs the patch capability', policies: [rule(d('app/*'), 'patch', 'read')], action: 'patch', path: d('app/db'), existing: [d('app/db')], expect: 'allowed' },
    { name: 'KV v2: update does not imply patch', policies: [rule(d('app/*'), 'update', 'read')], action: 'patch', path: d('app/db'), existing: [d('app/db')], expect: 'denied' },
    { name: 'KV v2: list on metadata/ glob lists the folder', policies: [rule(m('app/*'), 'list')], action: 'list', path: m('app'), existing: [d('app/db')], expect: 'allowed' },
    { name: 'KV v2: list on data/ does not allow listing', policies: [rule(d('app/*'), 'list')], action: 'list', path: m('app'), existing: [d('app/db')], expect: 'denied' },
    { name: 'KV v2: read on metadata/ does not allow listing', policies: [rule(m('app/*'), 'read')], action: 'list', path: m('app'), existing: [d('app/db')], expect: 'denied' },
    { name: 'LIST: an exact rule without the trailing slash matches the folder', policies: [rule(m('app'), 'list')], action: 'list', path: m('app'), existing: [d('app/db')], expect: 'allowed' },
    { name: 'LIST: an exact rule with the trailing slash matches the folder', policies: [rule(m('app/'), 'list')], action: 'list', path: m('app'), existing: [d('app/db')], expect: 'allowed' },
    { name: 'LIST: an exact list rule does not grant read', policies: [rule(m('app'), 'list')], action: 'read', path: m('app/db'), existing: [d('app/db')], expect: 'denied' },

    // --- Policy forms -----------------------------------------------------------
    { name: 'JSON policy form', policies: [JSON.stringify({ path: { [d('app/*')]: { capabilities: ['read'] } } })], action: 'read', path: d('app/db'), existing: [d('app/db')], expect: 'allowed' },
    { name: 'legacy policy = "read" maps to read', policies: [`path "${d('app/*')}" {\n  policy = "read"\n}\n`], action: 'read', path: d('app/db'), existing: [d('app/db')], expect: 'allowed' },
    { name: 'legacy policy = "read" does not allow writes', policies: [`path "${d('app/*')}" {\n  policy = "read"\n}\n`], action: 'write', path: d('app/new'), expect: 'denied' },
    { name: 'comments in HCL are ignored', policies: [`# hash comment\n// slash comment\n/* block */\n${rule(d('app/*'), 'read')}`], action: 'read', path: d('app/db'), existing: [d('app/db')], expect: 'allowed' },

    // --- sys/ and auth/ paths the broker relies on --------------------------------
    { name: 'sys/policies/acl glob allows writing a matching policy', policies: [rule(`sys/policies/acl/${ns}-*`, 'create', 'update')], action: 'write', path: policyPath, body: { policy: rule(d('x'), 'read') }, expect: 'allowed' },
    { name: 'sys/policies/acl glob does not allow other policy names', policies: [rule(`sys/policies/acl/${ns}-*`, 'create', 'update')], action: 'write', path: `sys/policies/acl/other-${ns}`, body: { policy: rule(d('x'), 'read') }, expect: 'denied' },
    { name: 'listing policies needs list on sys/policies/acl itself', policies: [rule('sys/policies/acl', 'list')], action: 'list', path: 'sys/policies/acl', expect: 'allowed' },
    { name: 'list on sys/policies/acl/<prefix>* does not allow listing all policies', policies: [rule(`sys/policies/acl/${ns}-*`, 'list')], action: 'list', path: 'sys/policies/acl', expect: 'denied' },
    { name: 'auth/token/create with update allows creating a child token', policies: [rule('auth/token/create', 'update')], action: 'write', path: 'auth/token/create', body: { ttl: '60s' }, expect: 'allowed' },
    { name: 'no rule on auth/token/create-orphan denies it', policies: [rule('auth/token/create', 'update')], action: 'write', path: 'auth/token/create-orphan', body: { ttl: '60s' }, expect: 'denied' },

    // --- default policy -------------------------------------------------------------
    { name: 'default policy allows auth/token/lookup-self', policies: [], action: 'read', path: 'auth/token/lookup-self', expect: 'allowed' },
    { name: 'default policy allows sys/capabilities-self', policies: [], action: 'write', path: 'sys/capabilities-self', body: { paths: [d('app/db')] }, expect: 'allowed' },
    { name: 'without the default policy lookup-self is denied', policies: [], noDefaultPolicy: true, action: 'read', path: 'auth/token/lookup-self', expect: 'denied' },
    { name: 'default policy grants nothing on KV', policies: [], action: 'read', path: d('app/db'), existing: [d('app/db')], expect: 'denied' },
  ];
}
