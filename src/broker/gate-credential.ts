import { safeEqual } from '../lib/secrets.ts';
import type { BrokerDeps } from './deps.ts';
import { verifyGateJwt, type GateClaims, type GateVerdict } from './gate-jwt.ts';
import { grantToMint } from './narrowing.ts';
import type { CredentialRow, RequestRow } from './rows.ts';

// Gate push credentials are issued by credential-issue.ts (issueCredential); this module verifies them.

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
export async function verifyGateCredential(deps: Pick<BrokerDeps, 'keys' | 'storage' | 'clock'>, input: { credential: string; repo: string; ref: string }): Promise<GateVerdict> {
  const verdict = verifyGateJwt(deps.keys.jwks(), input.credential, input.repo, input.ref, deps.clock.now(), (kid) => deps.keys.isRevoked(kid));
  if (!verdict.valid) return verdict;
  const cred = await deps.storage.credentials.forRequest(verdict.request_id);
  if (!cred || cred.type !== 'gate_push' || cred.jti === null || !safeEqual(cred.jti, verdict.jti)) return { valid: false, reason: 'unknown credential' };
  const request = await deps.storage.requests.get(cred.request_id);
  if (!request || request.resource !== 'gate') return { valid: false, reason: 'unknown credential' };
  const differs = grantMismatch(verdict.claims!, request, cred);
  if (differs.length > 0) return { valid: false, reason: `credential does not match the grant (${differs.join(', ')})` };
  if (cred.state !== 'live') return { valid: false, reason: cred.end_reason === 'expired' ? 'expired' : 'revoked' };
  return { valid: true, agent: verdict.agent, request_id: verdict.request_id, expires_at: verdict.expires_at, jti: verdict.jti };
}
