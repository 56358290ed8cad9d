/**
 * zod schemas for one policy file (`policies/*.yaml`). They check the shape
 * and syntax of a single file; checks across files (unique rule names, an
 * agent defined once) are done by the loader.
 */
import { z } from 'zod';
import { parseDurationSeconds } from '../../lib/duration.ts';
import { simpleGlobMatch } from './glob.ts';
import { checkPattern, type PatternKind } from './syntax.ts';
import { FORBIDDEN_CAPABILITIES, GRANTABLE_CAPABILITIES } from './types.ts';

/** `max_ttl` of a rule that does not set one. */
export const DEFAULT_MAX_TTL_SECONDS = 3600;
/** Upper bound for `max_ttl`: Vault's default maximum lease TTL (768h). */
export const MAX_TTL_LIMIT_SECONDS = 32 * 86400;

/** Rule names: no dots or brackets, so `rules[3]` / `agents.x` can never be a rule name. */
export const RULE_NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_-]{0,99}$/;
export const AGENT_NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
/** An entry of a rule's `agents`: an agent name, possibly with `*` wildcards. */
const AGENT_REF_PATTERN = /^[A-Za-z0-9.*_-]{1,64}$/;
const SESSION_PATTERN = /^[\x21-\x7e]{1,256}$/;

/** Every key of a strict object, so "unknown field" messages can list what is allowed. */
function strict<S extends z.core.$ZodLooseShape>(shape: S, what: string) {
  const allowed = Object.keys(shape).join(', ');
  return z.strictObject(shape, {
    error: (iss) => {
      if (iss.code === 'unrecognized_keys') return `unknown field (allowed: ${allowed})`;
      if (iss.code === 'invalid_type') return `${what} must be a mapping (fields: ${allowed})`;
      return undefined;
    },
  });
}

/** How a value is shown in messages: `"text"`, `4`, `null`, `a list`, `a mapping`. */
export function describeValue(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'a mapping';
  return JSON.stringify(value) ?? String(value);
}

function list<T extends z.ZodType>(item: T, what: string) {
  return z.array(item, { error: (iss) => `${what} must be a list, got ${describeValue(iss.input)}` });
}

function patternSchema(kind: PatternKind) {
  return z.unknown().transform((value, ctx) => {
    const err = checkPattern(value, kind);
    if (err) {
      const shown = typeof value === 'string' ? `: ${JSON.stringify(value)}` : '';
      ctx.issues.push({ code: 'custom', message: `${err}${shown}`, input: value });
      return z.NEVER;
    }
    return value as string;
  });
}

/** One capability; `sudo`, `deny` and `root` get a message of their own. */
export const capabilitySchema = z.enum(GRANTABLE_CAPABILITIES, {
  error: (iss) => {
    const v = iss.input;
    if (typeof v === 'string' && (FORBIDDEN_CAPABILITIES as readonly string[]).includes(v)) {
      return `${JSON.stringify(v)} is never issued`;
    }
    return `${describeValue(v)} is not a capability (valid: ${GRANTABLE_CAPABILITIES.join(', ')})`;
  },
});

/** `max_ttl`: seconds or "90s" / "15m" / "1h" / "1d"; 1h when absent. */
export const maxTtlSchema = z.unknown().optional().transform((value, ctx): number => {
  if (value === undefined) return DEFAULT_MAX_TTL_SECONDS;
  const seconds =
    typeof value === 'number' || typeof value === 'string' ? parseDurationSeconds(value) : undefined;
  if (seconds === undefined) {
    ctx.issues.push({
      code: 'custom',
      message:
        'max_ttl must be a positive whole number of seconds or a duration like "90s", "15m", "1h", "1d"; ' +
        `got ${describeValue(value)}`,
      input: value,
    });
    return z.NEVER;
  }
  if (seconds > MAX_TTL_LIMIT_SECONDS) {
    ctx.issues.push({ code: 'custom', message: `max_ttl ${describeValue(value)} is longer than 32 days`, input: value });
    return z.NEVER;
  }
  return seconds;
});

const tierSchema = z.literal([1, 2, 3], { error: (iss) => `tier must be 1, 2 or 3, got ${describeValue(iss.input)}` });

const ruleNameSchema = z.string({ error: (iss) => `rule name must be a string, got ${describeValue(iss.input)}` }).regex(
  RULE_NAME_PATTERN,
  'rule names use letters, digits, "_" and "-" (at most 100 characters)',
);

const agentRefSchema = z
  .string({ error: (iss) => `agent must be a name or a glob, got ${describeValue(iss.input)}` })
  .regex(AGENT_REF_PATTERN, 'agent must be a name (letters, digits, ".", "_", "-") or a glob with "*"');

const agentListSchema = list(agentRefSchema, 'agents').min(1, 'list at least one agent, or "*" for every agent');

const commonRule = {
  name: ruleNameSchema,
  agents: agentListSchema,
};

/** A `resource: vault` rule. */
export const vaultRuleSchema = strict(
  {
    ...commonRule,
    resource: z.literal('vault'),
    paths: list(patternSchema('path'), 'paths').min(1, 'list at least one path pattern'),
    capabilities: list(capabilitySchema, 'capabilities').min(1, 'list at least one capability'),
    tier: tierSchema,
    max_ttl: maxTtlSchema,
  },
  'a vault rule',
);

/** A `resource: gate` rule. */
export const gateRuleSchema = strict(
  {
    ...commonRule,
    resource: z.literal('gate'),
    repos: list(patternSchema('repo'), 'repos').min(1, 'list at least one repo pattern'),
    refs: list(patternSchema('ref'), 'refs').min(1, 'list at least one ref pattern'),
    tier: tierSchema,
    max_ttl: maxTtlSchema,
  },
  'a gate rule',
);

/** One entry of `rules`, told apart by `resource`. */
export const ruleSchema = z.discriminatedUnion('resource', [vaultRuleSchema, gateRuleSchema], {
  error: (iss) => {
    // zod's types omit it, but a non-object input is reported through this function as invalid_type.
    if ((iss.code as string) === 'invalid_type') return `a rule must be a mapping, got ${describeValue(iss.input)}`;
    if (iss.code === 'invalid_union') {
      const input = iss.input;
      if (input === null || typeof input !== 'object' || Array.isArray(input)) {
        return `a rule must be a mapping, got ${describeValue(input)}`;
      }
      const v = (input as Record<string, unknown>)['resource'];
      return v === undefined
        ? 'resource is required ("vault" or "gate")'
        : `resource must be "vault" or "gate", got ${describeValue(v)}`;
    }
    return undefined;
  },
});

const sessionPatternSchema = z
  .string({ error: (iss) => `session pattern must be a string, got ${describeValue(iss.input)}` })
  .regex(SESSION_PATTERN, 'session patterns are 1-256 printable characters without spaces');

const sessionKeySchema = sessionPatternSchema.refine((v) => !v.includes('*'), {
  message: 'default_session must be a concrete session key, not a pattern',
});

const webhookUrlSchema = z
  .string({ error: (iss) => `webhook url must be a string, got ${describeValue(iss.input)}` })
  .refine(
    (v) => {
      try {
        const u = new URL(v);
        return u.protocol === 'http:' || u.protocol === 'https:';
      } catch {
        return false;
      }
    },
    { message: 'webhook url must be an http(s) URL' },
  );

const webhookObjectSchema = strict(
  {
    url: webhookUrlSchema,
    // A refinement rather than z.enum: an enum mismatch would abort this branch of the union
    // and hide the message behind the generic one of `webhookSchema`.
    format: z
      .string({ error: 'format must be "standard" or "openclaw"' })
      .refine((v) => v === 'standard' || v === 'openclaw', { message: 'format must be "standard" or "openclaw"' })
      .transform((v) => v as 'standard' | 'openclaw')
      .default('standard'),
  },
  'webhook',
);

/** An agent's `webhook`: `openclaw` or `{url, format}`. */
export const webhookSchema = z.union([z.literal('openclaw'), webhookObjectSchema], {
  error: (iss) =>
    iss.code === 'invalid_union' ? `webhook must be "openclaw" or {url, format}, got ${describeValue(iss.input)}` : undefined,
});

/** The settings of one agent under `agents`. */
export const agentSchema = strict(
  {
    sessions: list(sessionPatternSchema, 'sessions'),
    default_session: sessionKeySchema.optional(),
    webhook: webhookSchema.optional(),
    agent_id: z.string({ error: 'agent_id must be a string' }).min(1, 'agent_id must not be empty').optional(),
    session_mode: z.string({ error: 'session_mode must be a string' }).min(1, 'session_mode must not be empty').optional(),
  },
  'an agent',
).superRefine((a, ctx) => {
  if (a.default_session !== undefined && !a.sessions.some((p) => simpleGlobMatch(p, a.default_session!))) {
    ctx.addIssue({
      code: 'custom',
      path: ['default_session'],
      message: `${JSON.stringify(a.default_session)} matches none of this agent's sessions patterns`,
    });
  }
  const openclaw = a.webhook === 'openclaw' || (typeof a.webhook === 'object' && a.webhook.format === 'openclaw');
  for (const key of ['agent_id', 'session_mode'] as const) {
    if (a[key] !== undefined && !openclaw) {
      ctx.addIssue({ code: 'custom', path: [key], message: `${key} is only used with an openclaw webhook` });
    }
  }
});

/** One entry of `deny`. */
export const denySchema = strict(
  {
    paths: list(patternSchema('path'), 'paths').min(1, 'list at least one path pattern').optional(),
    repos: list(patternSchema('repo'), 'repos').min(1, 'list at least one repo pattern').optional(),
    refs: list(patternSchema('ref'), 'refs').min(1, 'list at least one ref pattern').optional(),
  },
  'a deny entry',
).refine((d) => d.paths !== undefined || d.repos !== undefined || d.refs !== undefined, {
  message: 'a deny entry needs paths, repos or refs',
});

/** Why a key of `agents` is not an agent name. */
export const AGENT_NAME_MESSAGE = 'agent names use letters, digits, ".", "_" and "-" (at most 64 characters, starting with a letter or digit)';

/** A key of `agents`. */
export const agentNameSchema = z.string().regex(AGENT_NAME_PATTERN, AGENT_NAME_MESSAGE);

/** The whole of one policy file. */
export const policyFileSchema = strict(
  {
    agents: z
      .record(agentNameSchema, agentSchema, {
        error: (iss) =>
          iss.code === 'invalid_type'
            ? `agents must be a mapping of agent name to settings, got ${describeValue(iss.input)}`
            : undefined,
      })
      .optional(),
    rules: list(ruleSchema, 'rules').optional(),
    deny: list(denySchema, 'deny').optional(),
  },
  'a policy file',
);

export type PolicyFile = z.output<typeof policyFileSchema>;
export type RuleInput = z.output<typeof ruleSchema>;
export type AgentInput = z.output<typeof agentSchema>;
export type DenyInput = z.output<typeof denySchema>;
