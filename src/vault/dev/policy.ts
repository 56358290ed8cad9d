import { HclError, parseHclOrJson } from './hcl.ts';
import type { HclItem, HclValue } from './hcl.ts';

/** Capability bits, as in Vault's policy.go. */
export const Cap = {
  deny: 1,
  create: 2,
  read: 4,
  update: 8,
  delete: 16,
  list: 32,
  sudo: 64,
  patch: 128,
  subscribe: 256,
  recover: 512,
} as const;
export type CapabilityName = keyof typeof Cap;

/** One `path` block after Vault's normalisation (leading `/` stripped, trailing `*` → prefix). */
export interface PathRule {
  path: string;
  isPrefix: boolean;
  hasSegmentWildcards: boolean;
  caps: number;
}

export interface ParsedPolicy {
  name: string;
  raw: string;
  rules: PathRule[];
}

export class PolicyParseError extends Error {}

const TOP_LEVEL_KEYS = ['name', 'path'];
const PATH_KEYS = [
  'comment',
  'policy',
  'capabilities',
  'allowed_parameters',
  'denied_parameters',
  'required_parameters',
  'min_wrapping_ttl',
  'max_wrapping_ttl',
  'mfa_methods',
  'control_group',
];
// Accepted by Vault but not enforced here. Rejecting them keeps the
// development Vault from silently granting more than a real Vault would.
const UNSUPPORTED_PATH_KEYS = new Set(PATH_KEYS.slice(3));

const LEGACY_POLICIES: Record<string, CapabilityName[]> = {
  deny: ['deny'],
  read: ['read', 'list'],
  write: ['create', 'read', 'update', 'delete', 'list'],
  sudo: ['create', 'read', 'update', 'delete', 'list', 'sudo'],
};

function checkKeys(items: HclItem[], valid: string[], prefix: string): void {
  for (const item of items) {
    const key = item.keys[0]!;
    if (!valid.includes(key)) throw new PolicyParseError(`${prefix}invalid key "${key}" on line ${item.line}`);
  }
}

function stringList(v: HclValue, what: string): string[] {
  if (v.type !== 'list') throw new PolicyParseError(`${what}: expected a list of strings`);
  return v.values.map((x) => {
    if (x.type !== 'string') throw new PolicyParseError(`${what}: expected a list of strings`);
    return x.value;
  });
}

function parsePathRule(key: string, body: HclValue): PathRule {
  const where = `path ${JSON.stringify(key)}: `;
  if (body.type !== 'object') throw new PolicyParseError(`${where}expected a block`);
  checkKeys(body.items, PATH_KEYS, where);
  let caps: string[] = [];
  let legacy: string | undefined;
  for (const item of body.items) {
    const k = item.keys[0]!;
    if (UNSUPPORTED_PATH_KEYS.has(k)) {
      throw new PolicyParseError(`${where}${k} is not supported by the development Vault`);
    }
    if (k === 'capabilities') caps = caps.concat(stringList(item.value, `${where}capabilities`));
    if (k === 'policy') {
      if (item.value.type !== 'string') throw new PolicyParseError(`${where}policy must be a string`);
      legacy = item.value.value;
    }
  }

  let path = key.startsWith('/') ? key.slice(1) : key;
  if (path.includes('+*')) {
    throw new PolicyParseError(`path ${JSON.stringify(path)}: invalid use of wildcards ('+*' is forbidden)`);
  }
  const hasSegmentWildcards = path === '+' || path.includes('/+') || path.startsWith('+/');
  let isPrefix = false;
  if (path.endsWith('*') && !hasSegmentWildcards) {
    path = path.slice(0, -1);
    isPrefix = true;
  }

  if (legacy !== undefined) {
    const mapped = Object.hasOwn(LEGACY_POLICIES, legacy) ? LEGACY_POLICIES[legacy] : undefined;
    if (!mapped) throw new PolicyParseError(`${where}invalid policy ${JSON.stringify(legacy)}`);
    caps = caps.concat(mapped);
  }

  let bits = 0;
  for (const c of caps) {
    if (c === 'deny') {
      bits = Cap.deny;
      break;
    }
    // Own keys only: `"constructor"` or `"toString"` are not capabilities.
    if (!Object.hasOwn(Cap, c)) throw new PolicyParseError(`${where}invalid capability ${JSON.stringify(c)}`);
    bits |= Cap[c as CapabilityName];
  }
  return { path, isPrefix, hasSegmentWildcards, caps: bits };
}

/**
 * Parses an ACL policy (HCL or JSON) the way Vault's `ParseACLPolicy` does,
 * for the keys the development Vault supports. Throws PolicyParseError with
 * a message that the API prefixes with `failed to parse policy: `.
 */
export function parsePolicy(name: string, raw: string): ParsedPolicy {
  let items: HclItem[];
  try {
    items = parseHclOrJson(raw);
  } catch (e) {
    if (e instanceof HclError) throw new PolicyParseError(e.message);
    throw e;
  }
  checkKeys(items, TOP_LEVEL_KEYS, '');
  const rules: PathRule[] = [];
  for (const item of items) {
    if (item.keys[0] !== 'path') continue;
    if (item.keys.length === 2) {
      rules.push(parsePathRule(item.keys[1]!, item.value));
    } else if (item.keys.length === 1) {
      // `path { "x" { … } }` and the JSON form `{"path": {"x": {…}}}`.
      const blocks = item.value.type === 'list' ? item.value.values : [item.value];
      for (const block of blocks) {
        if (block.type !== 'object') throw new PolicyParseError(`path on line ${item.line}: expected a block`);
        for (const sub of block.items) {
          if (sub.keys.length !== 1) throw new PolicyParseError(`path on line ${sub.line}: unexpected labels`);
          rules.push(parsePathRule(sub.keys[0]!, sub.value));
        }
      }
    } else {
      throw new PolicyParseError(`path on line ${item.line}: too many labels`);
    }
  }
  return { name, raw, rules };
}

/**
 * The text of Vault's built-in `default` policy (the parts that do not
 * depend on identity templating), attached to tokens unless
 * `no_default_policy` is set.
 */
export const DEFAULT_POLICY_TEXT = `# Built-in default policy of the development Vault (mirrors Vault's).

# A token may look itself up, renew and revoke itself.
path "auth/token/lookup-self" {
    capabilities = ["read"]
}
path "auth/token/renew-self" {
    capabilities = ["update"]
}
path "auth/token/revoke-self" {
    capabilities = ["update"]
}

# A token may ask which capabilities it has on paths.
path "sys/capabilities-self" {
    capabilities = ["update"]
}

path "sys/internal/ui/resultant-acl" {
    capabilities = ["read"]
}

# Lease renewal and lookup by lease id.
path "sys/renew" {
    capabilities = ["update"]
}
path "sys/leases/renew" {
    capabilities = ["update"]
}
path "sys/leases/lookup" {
    capabilities = ["update"]
}

# The token's own cubbyhole.
path "cubbyhole/*" {
    capabilities = ["create", "read", "update", "delete", "list"]
}

# Response wrapping.
path "sys/wrapping/wrap" {
    capabilities = ["update"]
}
path "sys/wrapping/lookup" {
    capabilities = ["update"]
}
path "sys/wrapping/unwrap" {
    capabilities = ["update"]
}

# General purpose tools.
path "sys/tools/hash" {
    capabilities = ["update"]
}
path "sys/tools/hash/*" {
    capabilities = ["update"]
}

path "sys/control-group/request" {
    capabilities = ["update"]
}

path "identity/oidc/provider/+/authorize" {
    capabilities = ["read", "update"]
}
`;

/** The internal policy of response-wrapping tokens (not stored, not assignable). */
export const RESPONSE_WRAPPING_POLICY = parsePolicy(
  'response-wrapping',
  `path "cubbyhole/response" { capabilities = ["create", "read"] }
path "sys/wrapping/unwrap" { capabilities = ["update"] }`,
);

/** Policies Vault refuses to attach to a token. */
export const NON_ASSIGNABLE_POLICIES = ['response-wrapping', 'control-group'];
