import { randomBytes } from 'node:crypto';
import { safeEqual } from '../lib/secrets.ts';
import type { BrokerDeps } from './deps.ts';
import { BrokerError } from './errors.ts';
import { GATE_ISSUER, signGateJwt, verifyGateJwt, type GateClaims, type GateVerdict } from './gate-jwt.ts';
import { grantToMint } from './narrowing.ts';
import type { CredentialRow, GateScope, RequestRow } from './repository.ts';

export interface GatePushCredential {
  type: 'gate_push';
  credential: string;
  jti: string;
  repo: string;
  refs: string[];
  expires_at: string;
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
  // One key for the JWT and the audit entry's kid (the key ring may move on meanwhile): `jit keys revoke` finds the credential by this kid.
  const signer = deps.keys.current();
  const kid = signer.kid;
  const jwt = signGateJwt({ current: () => signer }, { iss: GATE_ISSUER, sub: request.agent_name, repo: scope.repo, refs: scope.refs, iat, exp, jti, request_id: request.id });
  const credentialId = ids.next('cred');
  try {
    db.transaction(() => {
      const current = repo.getRequest(request.id);
      if (current?.status !== 'approved') throw new BrokerError('CONFLICT', `request ${request.id} is ${current?.status ?? 'gone'}, not approved`);
      repo.insertCredential({ id: credentialId, request_id: request.id, type: 'gate_push', state: 'live', vault_policy: null, accessor: null, jti, issued_at: now, expires_at: exp * 1000 });
      if (!repo.transition(request.id, 'approved', 'issued', now)) throw new BrokerError('CONFLICT', `request ${request.id} changed while being issued`);
      audit.append({ event: 'credential.issued', actor: 'broker', requestId: request.id, data: { credential_id: credentialId, jti, kid, repo: scope.repo, refs: scope.refs, expires_at: exp * 1000 } }, now);
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

/** Which signed claims differ from what the database holds for this credential; empty when they all match. */
function grantMismatch(claims: GateClaims, request: RequestRow, cred: CredentialRow): string[] {
  const granted = grantToMint(request);
  const differs: string[] = [];
  if (claims.sub !== request.agent_name) differs.push('agent');
  if (granted.resource !== 'gate' || claims.repo !== granted.repo) differs.push('repo');
  if (granted.resource !== 'gate' || claims.refs.length !== granted.refs.length || claims.refs.some((r, i) => r !== granted.refs[i])) differs.push('refs');
  if (claims.exp * 1000 !== cred.expires_at) differs.push('expiry');
  if (cred.issued_at === null || claims.iat !== Math.floor(cred.issued_at / 1000)) differs.push('issue time');
  return differs;
}

/**
 * `POST /gate/verify`: the JWKS checks ({@link verifyGateJwt}), then the
 * database's. A valid signature is not enough: the signed repo, refs,
 * agent and expiry must be exactly what was granted for this jti (the
 * request's granted scope, after any narrowing, and the credential row's
 * expiry), so a token signed outside the broker's issuing path (a leaked
 * or misused signing key, a bug) grants nothing the approver did not
 * approve. Then the credential must still be live.
 */
export function verifyGateCredential(deps: Pick<BrokerDeps, 'keys' | 'repo' | 'clock'>, input: { credential: string; repo: string; ref: string }): GateVerdict {
  const verdict = verifyGateJwt(deps.keys.jwks(), input.credential, input.repo, input.ref, deps.clock.now(), (kid) => deps.keys.isRevoked(kid));
  if (!verdict.valid) return verdict;
  const cred = deps.repo.getCredential(verdict.request_id);
  if (!cred || cred.type !== 'gate_push' || cred.jti === null || !safeEqual(cred.jti, verdict.jti)) return { valid: false, reason: 'unknown credential' };
  const request = deps.repo.getRequest(cred.request_id);
  if (!request || request.resource !== 'gate') return { valid: false, reason: 'unknown credential' };
  const differs = grantMismatch(verdict.claims!, request, cred);
  if (differs.length > 0) return { valid: false, reason: `credential does not match the grant (${differs.join(', ')})` };
  if (cred.state !== 'live') return { valid: false, reason: cred.end_reason === 'expired' ? 'expired' : 'revoked' };
  return { valid: true, agent: verdict.agent, request_id: verdict.request_id, expires_at: verdict.expires_at, jti: verdict.jti };
}
