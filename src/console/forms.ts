import type { Context } from 'hono';
import { z } from 'zod';
import { BrokerError } from '../broker/errors.ts';
import type { Narrowing } from '../broker/narrowing.ts';
import { parseDurationSeconds } from '../lib/duration.ts';

/*
 * What the console's forms and ceremony fetches send, validated (zod,
 * strict: an unknown field is a 400, as in the API).
 */

const b64url = z.string().max(16_384).regex(/^[A-Za-z0-9_-]*={0,2}$/, 'must be base64url');
const extensions = z.record(z.string(), z.unknown());
const attachment = z.enum(['platform', 'cross-platform']).optional();

/** A public-key credential as @simplewebauthn/browser answers it, its `response` of the given (strict) shape. */
function credential<R extends z.ZodRawShape>(response: R) {
  return z
    .object({
      id: b64url,
      rawId: b64url,
      type: z.literal('public-key'),
      response: z.object(response).strict(),
      authenticatorAttachment: attachment,
      clientExtensionResults: extensions,
    })
    .strict();
}

/** A RegistrationResponseJSON as @simplewebauthn/browser's startRegistration answers it. */
export const RegistrationResponse = credential({
  clientDataJSON: b64url,
  attestationObject: b64url,
  authenticatorData: b64url.optional(),
  transports: z.array(z.string().max(32)).max(16).optional(),
  publicKeyAlgorithm: z.number().int().optional(),
  publicKey: b64url.optional(),
});

/** An AuthenticationResponseJSON as startAuthentication answers it. */
export const AuthenticationResponse = credential({
  clientDataJSON: b64url,
  authenticatorData: b64url,
  signature: b64url,
  userHandle: b64url.optional(),
});

/** The JSON body of a ceremony fetch, validated; 400 with the first problem otherwise. */
export async function jsonBody<T extends z.ZodType>(c: Context, schema: T, what: string): Promise<z.infer<T>> {
  let raw: unknown;
  try {
    raw = await c.req.json();
  } catch {
    throw new BrokerError('BAD_REQUEST', `${what}: the body must be JSON`);
  }
  return parseWith(schema, raw, what);
}

export function parseWith<T extends z.ZodType>(schema: T, raw: unknown, what: string): z.infer<T> {
  const parsed = schema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const at = issue.path.length ? ` (at ${issue.path.join('.')})` : '';
    throw new BrokerError('BAD_REQUEST', `${what}: ${issue.message}${at}`);
  }
  return parsed.data;
}

const field = z.string().max(4096);
const many = z.union([field, z.array(field).max(1000)]).optional();

/** The fields of the decision form (and of its step-up fetch, which sends the same form). */
const DecisionFields = z
  .object({
    csrf: field.optional(),
    decision: z.enum(['approve', 'deny'], { message: 'decision must be "approve" or "deny"' }).optional(),
    reason: z.string().max(1000, 'the reason is at most 1000 characters').optional(),
    ttl: field.optional(),
    drop_path: many,
    drop_capability: many,
    drop_ref: many,
    assertion: z.string().max(65_536).optional(),
  })
  .strict();

export interface DecisionForm {
  decision: 'approve' | 'deny';
  reason: string | undefined;
  narrowing: Narrowing | undefined;
  assertion: z.infer<typeof AuthenticationResponse> | undefined;
}

const list = (v: string | string[] | undefined): string[] => [...new Set((Array.isArray(v) ? v : v === undefined ? [] : [v]).filter((s) => s !== ''))].sort();

/** The form body as a decision: the narrowing canonical (sorted, no duplicates, undefined when empty) so step-up and decision describe one action. */
export async function decisionForm(c: Context, defaultDecision?: 'approve' | 'deny'): Promise<DecisionForm> {
  let body: Record<string, unknown>;
  try {
    body = await c.req.parseBody({ all: true });
  } catch {
    throw new BrokerError('BAD_REQUEST', 'the decision must be sent as a form');
  }
  const f = parseWith(DecisionFields, { ...body }, 'decision form');
  const decision = f.decision ?? defaultDecision;
  if (!decision) throw new BrokerError('BAD_REQUEST', 'decision form: say "approve" or "deny" (field decision)');
  let narrowing: Narrowing | undefined;
  if (decision === 'approve') {
    const ttlText = f.ttl?.trim() ?? '';
    let ttlSeconds: number | undefined;
    if (ttlText !== '') {
      ttlSeconds = parseDurationSeconds(ttlText);
      if (ttlSeconds === undefined) throw new BrokerError('BAD_REQUEST', `TTL "${ttlText.slice(0, 40)}" is not a duration: give whole seconds or e.g. 90s, 15m, 1h`);
    }
    const dropPaths = list(f.drop_path);
    const dropCapabilities = list(f.drop_capability);
    const dropRefs = list(f.drop_ref);
    if (ttlSeconds !== undefined || dropPaths.length || dropCapabilities.length || dropRefs.length) {
      narrowing = {
        ...(ttlSeconds !== undefined ? { ttlSeconds } : {}),
        ...(dropPaths.length ? { dropPaths } : {}),
        ...(dropCapabilities.length ? { dropCapabilities } : {}),
        ...(dropRefs.length ? { dropRefs } : {}),
      };
    }
  }
  let assertion: DecisionForm['assertion'];
  if (f.assertion !== undefined && f.assertion !== '') {
    let raw: unknown;
    try {
      raw = JSON.parse(f.assertion);
    } catch {
      throw new BrokerError('BAD_REQUEST', 'decision form: the passkey assertion is not JSON');
    }
    assertion = parseWith(AuthenticationResponse, raw, 'passkey assertion');
  }
  const reason = f.reason?.trim();
  return { decision, reason: decision === 'deny' && reason ? reason : undefined, narrowing, assertion };
}
