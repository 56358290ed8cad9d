import { verify as cryptoVerify, type KeyObject } from 'node:crypto';
import { publicKeyObject } from '../lib/ed25519-key.ts';
import type { Jwks, OkpJwk } from '../keys/key-ring.ts';

/** Anything that signs raw bytes with Ed25519 (the key ring's current key). */
export interface ByteSigner {
  sign(bytes: Uint8Array): Uint8Array;
}

// A type alias (not an interface) so it is assignable to a plain header record.
export type WebhookHeaders = {
  'webhook-id': string;
  'webhook-timestamp': string;
  'webhook-signature': string;
};

/** Standard Webhooks signed content: `{id}.{timestamp}.{body}` over the exact body bytes. */
export function signedContent(id: string, timestamp: number | string, body: string | Uint8Array): Buffer {
  return Buffer.concat([Buffer.from(`${id}.${timestamp}.`, 'utf8'), typeof body === 'string' ? Buffer.from(body, 'utf8') : Buffer.from(body)]);
}

/**
 * Signs one delivery attempt (Standard Webhooks, asymmetric `v1a`).
 * `id` is the event id, identical on every retry; `timestamp` is the
 * attempt's time in Unix seconds, so each attempt carries a fresh signature.
 */
export function signWebhook(signer: ByteSigner, msg: { id: string; timestamp: number; body: string }): WebhookHeaders {
  if (!ID_SHAPE.test(msg.id)) throw new Error('webhook id must be 1-256 characters without "." or whitespace');
  if (!Number.isSafeInteger(msg.timestamp) || msg.timestamp < 0) throw new Error('webhook timestamp must be whole Unix seconds');
  const signature = Buffer.from(signer.sign(signedContent(msg.id, msg.timestamp, msg.body))).toString('base64');
  return { 'webhook-id': msg.id, 'webhook-timestamp': String(msg.timestamp), 'webhook-signature': `v1a,${signature}` };
}

export type VerifyFailure =
  | 'missing_headers'
  | 'bad_id'
  | 'bad_timestamp'
  | 'timestamp_too_old'
  | 'timestamp_too_new'
  | 'no_usable_key'
  | 'no_matching_signature';

export type VerifyResult = { ok: true; id: string; timestamp: number; kid: string } | { ok: false; reason: VerifyFailure };

const ID_SHAPE = /^[^.\s]{1,256}$/;

type HeaderBag = Headers | Record<string, string | string[] | undefined>;

function header(headers: HeaderBag, name: string): string | undefined {
  if (typeof (headers as Headers).get === 'function') return (headers as Headers).get(name) ?? undefined;
  const bag = headers as Record<string, string | string[] | undefined>;
  const key = Object.keys(bag).find((k) => k.toLowerCase() === name);
  const v = key === undefined ? undefined : bag[key];
  return Array.isArray(v) ? v.join(' ') : v;
}

function importKeys(jwks: Jwks | { keys: unknown[] }): { kid: string; key: KeyObject }[] {
  const out: { kid: string; key: KeyObject }[] = [];
  for (const k of jwks.keys as Partial<OkpJwk>[]) {
    if (!k || k.kty !== 'OKP' || k.crv !== 'Ed25519' || typeof k.x !== 'string') continue;
    if (k.use !== undefined && k.use !== 'sig') continue;
    try {
      out.push({ kid: k.kid ?? '', key: publicKeyObject(k.x) });
    } catch {
      /* malformed key: skip it */
    }
  }
  return out;
}

/**
 * Verifies a Standard Webhooks `v1a` (Ed25519) delivery against a JWKS,
 * for receivers and tests. Deliberately built on node:crypto rather than
 * the library that signs, so it is an independent check.
 *
 * Rejects: missing headers, ids containing "." (they would make the signed
 * content ambiguous), timestamps outside ±`toleranceSeconds` of `now`
 * (replay window), and any signature that no Ed25519 key in the set
 * verifies over `{id}.{timestamp}.{body}` with the exact body bytes.
 * Receivers should also remember recently seen `webhook-id`s and drop
 * repeats (deliveries are at least once).
 *
 * @param now milliseconds since the epoch (default `Date.now()`).
 */
export function verifyWebhook(
  headers: HeaderBag,
  body: string | Uint8Array,
  jwks: Jwks | { keys: unknown[] },
  opts: { toleranceSeconds?: number; now?: number } = {},
): VerifyResult {
  const id = header(headers, 'webhook-id');
  const ts = header(headers, 'webhook-timestamp');
  const sig = header(headers, 'webhook-signature');
  if (!id || !ts || !sig) return { ok: false, reason: 'missing_headers' };
  if (!ID_SHAPE.test(id)) return { ok: false, reason: 'bad_id' };
  if (!/^\d{1,12}$/.test(ts)) return { ok: false, reason: 'bad_timestamp' };
  const timestamp = Number(ts);
  const now = Math.floor((opts.now ?? Date.now()) / 1000);
  const tolerance = opts.toleranceSeconds ?? 300;
  if (timestamp < now - tolerance) return { ok: false, reason: 'timestamp_too_old' };
  if (timestamp > now + tolerance) return { ok: false, reason: 'timestamp_too_new' };

  const keys = importKeys(jwks);
  if (keys.length === 0) return { ok: false, reason: 'no_usable_key' };
  const content = signedContent(id, ts, body);
  for (const entry of sig.split(' ')) {
    const comma = entry.indexOf(',');
    if (comma < 0 || entry.slice(0, comma) !== 'v1a') continue;
    const b64 = entry.slice(comma + 1);
    if (!/^[A-Za-z0-9+/]{86}==$/.test(b64)) continue;
    const signature = Buffer.from(b64, 'base64');
    for (const { kid, key } of keys) {
      if (cryptoVerify(null, content, key, signature)) return { ok: true, id, timestamp, kid };
    }
  }
  return { ok: false, reason: 'no_matching_signature' };
}
