import { createPublicKey, randomBytes, verify as verifySignature, type KeyObject } from 'node:crypto';
import type { Jwks, KeyRing } from '../webhooks/keys.ts';
import type { BrokerDeps } from './deps.ts';
import { BrokerError } from './errors.ts';
import { grantToMint } from './narrowing.ts';
// Not the policy barrel (index.ts): `jit gate verify` loads this module and need not load the YAML policy loader.
import { vaultGlobMatch } from './policy/glob.ts';
import type { GateScope, RequestRow } from './repository.ts';

export interface GatePushCredential {
  type: 'gate_push';
  credential: string;
  jti: string;
  repo: string;
  refs: string[];
  expires_at: string;
}

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
 * Issues the gate push credential of an approved request, at most once: the
 * JWT is signed first (no I/O), then one transaction inserts the live
 * credential row (the unique index refuses a second) and marks the request
 * issued. Only the jti is stored; the JWT itself is returned once.
 */
export function mintGateCredential(deps: BrokerDeps, request: RequestRow): { ok: true; credential: GatePushCredential } | { ok: false; error: BrokerError } {
  const { repo, audit, clock, ids, db } = deps;
  // The granted refs and TTL: less than asked when an approver narrowed the request.
  const granted = grantToMint(request);
  const scope: GateScope = granted.resource === 'gate' ? { repo: granted.repo, refs: granted.refs } : { repo: '', refs: [] };
  const now = clock.now();
  const iat = Math.floor(now / 1000);
  const exp = iat + granted.ttl_seconds;
  const jti = `gate_${randomBytes(16).toString('hex')}`;
  const jwt = signGateJwt(deps.keys, { iss: GATE_ISSUER, sub: request.agent_name, repo: scope.repo, refs: scope.refs, iat, exp, jti, request_id: request.id });
  const credentialId = ids.next('cred');
  try {
    db.transaction(() => {
      const current = repo.getRequest(request.id);
      if (current?.status !== 'approved') throw new BrokerError('CONFLICT', `request ${request.id} is ${current?.status ?? 'gone'}, not approved`);
      repo.insertCredential({ id: credentialId, request_id: request.id, type: 'gate_push', state: 'live', vault_policy: null, accessor: null, jti, issued_at: now, expires_at: exp * 1000 });
      if (!repo.transition(request.id, 'approved', 'issued', now)) throw new BrokerError('CONFLICT', `request ${request.id} changed while being issued`);
      audit.append({ event: 'credential.issued', actor: 'broker', requestId: request.id, data: { credential_id: credentialId, jti, kid: deps.keys.current().kid, repo: scope.repo, refs: scope.refs, expires_at: exp * 1000 } }, now);
    })();
  } catch (err) {
    if (err instanceof BrokerError) return { ok: false, error: err };
    if ((err as { code?: string }).code === 'SQLITE_CONSTRAINT_UNIQUE') {
      return { ok: false, error: new BrokerError('CONFLICT', `the credential of request ${request.id} has already been issued`) };
    }
    throw err;
  }
  return { ok: true, credential: { type: 'gate_push', credential: jwt, jti, repo: scope.repo, refs: scope.refs, expires_at: new Date(exp * 1000).toISOString() } };
}

export type GateVerdict =
  | { valid: true; agent: string; request_id: string; expires_at: string; jti: string }
  | { valid: false; reason: string };

/** Parsed public keys by JWK `x`: parsing one costs more than a tenth of a verification, and there are only a few keys. */
const keyObjects = new Map<string, KeyObject>();

function publicKeyObject(x: string): KeyObject {
  let key = keyObjects.get(x);
  if (!key) {
    key = createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x }, format: 'jwk' });
    if (keyObjects.size >= 64) keyObjects.clear();
    keyObjects.set(x, key);
  }
  return key;
}

/**
 * Checks a gate credential for a push of `ref` to `repo`: shape, algorithm,
 * a known `kid`, the Ed25519 signature, issuer, expiry (with a little clock
 * skew), and that repo and ref are among those granted. Revocation is the
 * caller's part (it needs the database); this function works offline from
 * a JWKS alone, which is what the CLI does when the broker is unreachable.
 */
export function verifyGateJwt(jwks: Jwks, token: string, repo: string, ref: string, nowMs: number): GateVerdict & { claims?: GateClaims } {
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
  const jwk = jwks.keys.find((k) => k.kid === header.kid);
  if (!jwk) return { valid: false, reason: 'signed by an unknown key (kid not in the JWKS)' };
  const ok = verifySignature(null, Buffer.from(`${h}.${p}`), publicKeyObject(jwk.x), Buffer.from(s, 'base64url'));
  if (!ok) return { valid: false, reason: 'bad signature' };
  if (claims.iss !== GATE_ISSUER) return { valid: false, reason: 'wrong issuer' };
  if (typeof claims.exp !== 'number' || typeof claims.iat !== 'number' || typeof claims.sub !== 'string' || typeof claims.repo !== 'string' || !Array.isArray(claims.refs) || typeof claims.jti !== 'string' || typeof claims.request_id !== 'string') {
    return { valid: false, reason: 'credential is missing required claims' };
  }
  const now = Math.floor(nowMs / 1000);
  if (claims.exp + GATE_CLOCK_SKEW_SECONDS <= now) return { valid: false, reason: `expired at ${new Date(claims.exp * 1000).toISOString()}` };
  if (claims.iat - GATE_CLOCK_SKEW_SECONDS > now) return { valid: false, reason: 'issued in the future' };
  if (!vaultGlobMatch(claims.repo, repo)) return { valid: false, reason: `credential is for repo ${claims.repo}, not ${repo}` };
  if (!claims.refs.some((r) => typeof r === 'string' && vaultGlobMatch(r, ref))) return { valid: false, reason: `ref ${ref} is not among the granted refs (${claims.refs.join(', ')})` };
  return { valid: true, agent: claims.sub, request_id: claims.request_id, expires_at: new Date(claims.exp * 1000).toISOString(), jti: claims.jti, claims: claims as GateClaims };
}

/** `POST /gate/verify`: the offline checks plus revocation against the database. */
export function verifyGateCredential(deps: Pick<BrokerDeps, 'keys' | 'repo' | 'clock'>, input: { credential: string; repo: string; ref: string }): GateVerdict {
  const verdict = verifyGateJwt(deps.keys.jwks(), input.credential, input.repo, input.ref, deps.clock.now());
  if (!verdict.valid) return verdict;
  const cred = deps.repo.getCredential(verdict.request_id);
  if (!cred || cred.jti !== verdict.jti) return { valid: false, reason: 'unknown credential' };
  if (cred.state !== 'live') return { valid: false, reason: cred.end_reason === 'expired' ? 'expired' : 'revoked' };
  return { valid: true, agent: verdict.agent, request_id: verdict.request_id, expires_at: verdict.expires_at, jti: verdict.jti };
}
