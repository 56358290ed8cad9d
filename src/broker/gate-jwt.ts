import { verify as verifySignature } from 'node:crypto';
import { publicKeyObject } from '../lib/ed25519-key.ts';
import type { Jwks, KeyRing } from '../keys/key-ring.ts';
import { vaultGlobMatch } from './policy/glob.ts';

/**
 * The gate credential as a JWT: signing, and the checks that need nothing
 * but a JWKS. Kept apart from gate-credential.ts (issuing, the database
 * checks) so `jit gate verify` loads only this, node:crypto and the glob
 * matcher.
 */

export interface GateClaims {
  iss: string;
  sub: string;
  repo: string;
  refs: string[];
  iat: number;
  exp: number;
  jti: string;
  request_id: string;
}

export const GATE_ISSUER = 'jit-broker';
/** Clock skew tolerated between the broker and the git gate. */
export const GATE_CLOCK_SKEW_SECONDS = 30;

export type GateVerdict =
  | { valid: true; agent: string; request_id: string; expires_at: string; jti: string }
  | { valid: false; reason: string };

const b64url = (data: Uint8Array | string) => Buffer.from(data).toString('base64url');

/** Signs the claims as a compact JWS (EdDSA, Ed25519) with the key ring's current key and its `kid`. */
export function signGateJwt(keys: Pick<KeyRing, 'current'>, claims: GateClaims): string {
  const signer = keys.current();
  const header = b64url(JSON.stringify({ alg: 'EdDSA', typ: 'JWT', kid: signer.kid }));
  const payload = b64url(JSON.stringify(claims));
  const signature = signer.sign(new TextEncoder().encode(`${header}.${payload}`));
  return `${header}.${payload}.${b64url(signature)}`;
}

/**
 * Whether `part` is the one canonical unpadded base64url spelling of the
 * bytes it decodes to. Decoders ignore the unused low bits of the last
 * character, so without this one signature has several spellings (up to 16
 * for Ed25519's 64 bytes): a "different" credential that verifies, which
 * defeats anyone keying a deny list or a cache on the token text.
 */
function isCanonicalBase64url(part: string): boolean {
  return Buffer.from(part, 'base64url').toString('base64url') === part;
}

/**
 * Checks a gate credential for a push of `ref` to `repo`: shape (canonical
 * base64url in every part), algorithm, a known `kid`, the Ed25519
 * signature, issuer, expiry (with a little clock skew), and that repo and
 * ref are among those signed. That the signed claims are what the broker
 * granted, and that the credential is still live, is the database's part
 * ({@link verifyGateCredential} in gate-credential.ts); this function works
 * from a JWKS alone, which is what `jit gate verify` does inside an
 * operator's offline window.
 *
 * `isRevokedKid` names keys revoked with `jit keys revoke`, for a clearer
 * reason than "unknown key" (they are not in the JWKS either way).
 */
export function verifyGateJwt(
  jwks: Jwks,
  token: string,
  repo: string,
  ref: string,
  nowMs: number,
  isRevokedKid?: (kid: string) => boolean,
): GateVerdict & { claims?: GateClaims } {
  const parts = token.split('.');
  if (parts.length !== 3 || parts.some((p) => !/^[A-Za-z0-9_-]+$/.test(p))) return { valid: false, reason: 'malformed credential (not a compact JWT)' };
  const [h, p, s] = parts as [string, string, string];
  let header: { alg?: unknown; kid?: unknown; crit?: unknown };
  let claims: Partial<GateClaims>;
  try {
    header = JSON.parse(Buffer.from(h, 'base64url').toString('utf8'));
    claims = JSON.parse(Buffer.from(p, 'base64url').toString('utf8'));
  } catch {
    return { valid: false, reason: 'malformed credential (bad JSON)' };
  }
  if (header.alg !== 'EdDSA') return { valid: false, reason: `unsupported algorithm ${JSON.stringify(header.alg)}` };
  if (header.crit !== undefined) return { valid: false, reason: 'unsupported critical header' };
  if (!parts.every(isCanonicalBase64url)) return { valid: false, reason: 'malformed credential (not canonical base64url)' };
  const jwk = jwks.keys.find((k) => k.kid === header.kid);
  if (!jwk) {
    if (typeof header.kid === 'string' && isRevokedKid?.(header.kid)) return { valid: false, reason: `signed by revoked key ${header.kid}` };
    return { valid: false, reason: 'signed by an unknown key (kid not in the JWKS)' };
  }
  const ok = verifySignature(null, Buffer.from(`${h}.${p}`), publicKeyObject(jwk.x), Buffer.from(s, 'base64url'));
  if (!ok) return { valid: false, reason: 'bad signature' };
  if (claims.iss !== GATE_ISSUER) return { valid: false, reason: 'wrong issuer' };
  if (
    typeof claims.exp !== 'number' ||
    typeof claims.iat !== 'number' ||
    typeof claims.sub !== 'string' ||
    typeof claims.repo !== 'string' ||
    !Array.isArray(claims.refs) ||
    !claims.refs.every((r) => typeof r === 'string') ||
    typeof claims.jti !== 'string' ||
    typeof claims.request_id !== 'string'
  ) {
    return { valid: false, reason: 'credential is missing required claims' };
  }
  const now = Math.floor(nowMs / 1000);
  if (claims.exp + GATE_CLOCK_SKEW_SECONDS <= now) return { valid: false, reason: `expired at ${new Date(claims.exp * 1000).toISOString()}` };
  if (claims.iat - GATE_CLOCK_SKEW_SECONDS > now) return { valid: false, reason: 'issued in the future' };
  if (!vaultGlobMatch(claims.repo, repo)) return { valid: false, reason: `credential is for repo ${claims.repo}, not ${repo}` };
  if (!claims.refs.some((r) => vaultGlobMatch(r, ref))) return { valid: false, reason: `ref ${ref} is not among the granted refs (${claims.refs.join(', ')})` };
  return { valid: true, agent: claims.sub, request_id: claims.request_id, expires_at: new Date(claims.exp * 1000).toISOString(), jti: claims.jti, claims: claims as GateClaims };
}
