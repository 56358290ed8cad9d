import { z } from 'zod';
import { parseDurationSeconds } from '../lib/duration.ts';
import { FORBIDDEN_CAPABILITIES, GRANTABLE_CAPABILITIES } from './policy/types.ts';

const KNOWN_CAPABILITIES: readonly string[] = [...GRANTABLE_CAPABILITIES, ...FORBIDDEN_CAPABILITIES];

/** Seconds, or "90s" | "15m" | "1h" | "1d". */
export const Ttl = z.union([z.number(), z.string()]).transform((v, ctx) => {
  const s = parseDurationSeconds(v);
  if (s === undefined) {
    ctx.addIssue({ code: 'custom', message: 'ttl must be a positive whole number of seconds or a duration like "90s", "15m", "1h"' });
    return z.NEVER;
  }
  return s;
});

const Tier = z.union([z.literal(1), z.literal(2), z.literal(3)], { error: 'tier must be 1, 2 or 3' });
const Reason = z.string().trim().min(1, 'reason is required').max(2000);
const SessionKey = z.string().min(1).max(200);

// Capabilities outside the known set are a malformed request (400); the
// never-issued ones (sudo, deny, root) pass here so policy can refuse them
// with a 403 that names the pair.
const Capability = z.string().refine((c) => KNOWN_CAPABILITIES.includes(c), {
  error: `capability must be one of ${GRANTABLE_CAPABILITIES.join(', ')}`,
});

export const VaultRequestBody = z.strictObject({
  resource: z.literal('vault'),
  tier: Tier,
  reason: Reason,
  vault_paths: z
    .array(z.strictObject({ path: z.string().min(1).max(512), capabilities: z.array(Capability).min(1).max(16) }))
    .min(1, 'vault_paths must name at least one path')
    .max(64),
  ttl: Ttl.optional(),
  session_key: SessionKey.optional(),
});

export const GateRequestBody = z.strictObject({
  resource: z.literal('gate'),
  tier: Tier,
  reason: Reason,
  repo: z.string().min(1).max(256),
  refs: z.array(z.string().min(1).max(256)).min(1).max(64),
  ttl: Ttl.optional(),
  session_key: SessionKey.optional(),
});

export const CredentialRequestBody = z.discriminatedUnion('resource', [VaultRequestBody, GateRequestBody], {
  error: (issue) => (issue.code === 'invalid_union' ? 'resource must be "vault" or "gate"' : undefined),
});
export type CredentialRequestBody = z.infer<typeof CredentialRequestBody>;
export type VaultRequestBody = z.infer<typeof VaultRequestBody>;

export const IdempotencyKey = z.string().min(1).max(200).regex(/^[\x21-\x7e]+$/, 'Idempotency-Key must be printable ASCII without spaces');

/** One line per zod issue: `vault_paths[0].capabilities[1]: capability must be …`. */
export function describeZodError(error: z.ZodError): string {
  return error.issues
    .slice(0, 5)
    .map((i) => {
      const path = i.path.reduce<string>((acc, p) => (typeof p === 'number' ? `${acc}[${p}]` : acc ? `${acc}.${String(p)}` : String(p)), '');
      const msg = i.code === 'unrecognized_keys' ? `unknown field(s): ${i.keys.join(', ')}` : i.message;
      return path ? `${path}: ${msg}` : msg;
    })
    .join('; ');
}

export const GateVerifyBody = z.strictObject({
  credential: z.string().min(1).max(8192),
  repo: z.string().min(1).max(256),
  ref: z.string().min(1).max(256),
});
export type GateVerifyBody = z.infer<typeof GateVerifyBody>;
