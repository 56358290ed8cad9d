import type { IssuedCredential } from './credential-issue.ts';
import type { BrokerDeps } from './deps.ts';
import { grantJson, grantOf, requestedGrant, sameGrant } from './narrowing.ts';
import type { CredentialRow, RequestRow } from './rows.ts';
import type { IssuedResponse, RequestView } from '../wire/schemas.ts';

function iso(ms: number): string;
function iso(ms: number | null): string | null;
function iso(ms: number | null): string | null {
  return ms === null ? null : new Date(ms).toISOString();
}

/**
 * A credential's state as shown to people and in the API: `none` when there
 * is none (or its issue failed or was abandoned), `issuing`, `live`,
 * `revoking` (its Vault clean-up still to do) or `ended`.
 */
export function credentialState(cred: Pick<CredentialRow, 'state'> | undefined): 'none' | 'issuing' | 'live' | 'revoking' | 'ended' {
  if (!cred || cred.state === 'failed' || cred.state === 'abandoned') return 'none';
  return cred.state === 'minting' ? 'issuing' : cred.state === 'live' ? 'live' : cred.state === 'ending' ? 'revoking' : 'ended';
}

/**
 * What an agent (or operator) may see of a request: status, tiers, scope,
 * decision and credential metadata. Never a secret: the credential part
 * carries only the accessor (or jti) and expiry.
 *
 * The request's own scope and `ttl_seconds` are what was asked; `granted`
 * (`{vault_paths | repo, refs, ttl_seconds}`, null until approved) is what
 * the credential is minted with, less than asked when `narrowed`.
 */
export async function requestView(deps: Pick<BrokerDeps, 'storage'>, row: RequestRow): Promise<RequestView> {
  // A request that was never approved has no credential row (request-machine.ts): no read for the pending list's every row.
  const cred = NEVER_APPROVED.has(row.status) ? undefined : await deps.storage.credentials.forRequest(row.id);
  const grant = grantOf(row);
  const granted = grant ? grantJson(grant) : null;
  const narrowed = grant ? !sameGrant(grant, requestedGrant(row)) : false;
  const credState = credentialState(cred);
  return {
    id: row.id,
    status: row.status,
    resource: row.resource,
    agent: row.agent_name,
    tier: row.tier,
    required_tier: row.required_tier,
    reason: row.reason,
    ...(JSON.parse(row.scope) as Pick<RequestView, 'vault_paths' | 'repo' | 'refs'>),
    ttl_seconds: row.ttl_seconds,
    granted,
    narrowed,
    session_key: row.session_key,
    rules: JSON.parse(row.rules) as string[],
    created_at: iso(row.created_at),
    approval_expires_at: iso(row.approval_expires_at),
    claim_expires_at: iso(row.claim_expires_at),
    decision: row.decided_by ? { approver: row.decided_by, decided_at: iso(row.decided_at), reason: row.decision_reason, granted, narrowed } : null,
    credential:
      cred && credState !== 'none'
        ? {
            type: cred.type,
            ...(cred.accessor ? { accessor: cred.accessor } : {}),
            ...(cred.jti ? { jti: cred.jti } : {}),
            state: credState,
            issued_at: iso(cred.issued_at),
            expires_at: iso(cred.expires_at),
            ended_at: iso(cred.ended_at),
          }
        : null,
    ...(row.failure ? { failure: row.failure } : {}),
  };
}

/** Statuses only a request never approved is in: pending, and the two ends reached from pending alone. */
const NEVER_APPROVED: ReadonlySet<RequestRow['status']> = new Set(['pending', 'denied', 'timed_out']);

/**
 * The 201 body of a request whose credential was just issued (a tier-1
 * request, or a claim): the only answer that carries the credential itself,
 * returned once and never stored.
 */
export function issuedBody(row: RequestRow, credential: IssuedCredential): IssuedResponse {
  return {
    id: row.id,
    status: 'issued',
    tier: row.tier,
    required_tier: row.required_tier,
    resource: row.resource,
    expires_at: credential.expires_at,
    credential,
  };
}
