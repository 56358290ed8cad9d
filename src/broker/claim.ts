import type { BrokerDeps } from './deps.ts';
import { BrokerError } from './errors.ts';
import { issueCredential } from './credential-issue.ts';
import type { RequestRow } from './rows.ts';
import type { IssuedResponse } from '../wire/schemas.ts';
import { expireUnclaimed } from './request-machine.ts';
import { issuedBody } from './view.ts';

/**
 * `POST /jit/requests/:id/claim`: mints the credential of an approved
 * request, once (201). Already issued: 409. Past the claim window: 410.
 * Vault down: 503 and the request stays approved, so the agent can retry
 * within the window.
 */
export async function claimCredential(deps: BrokerDeps, row: RequestRow): Promise<IssuedResponse> {
  const { storage, clock } = deps;
  const now = clock.now();
  const current = (await storage.requests.get(row.id))!;
  switch (current.status) {
    case 'approved':
      break;
    case 'issued':
    case 'revoked':
      if (await storage.credentials.forRequest(row.id)) throw new BrokerError('CONFLICT', `the credential of request ${row.id} was already claimed`);
      throw new BrokerError('CONFLICT', `request ${row.id} is ${current.status}`);
    case 'expired':
      throw new BrokerError('GONE', `request ${row.id} has expired${current.claim_expires_at ? '; its claim window has passed' : ''}`);
    case 'pending':
      throw new BrokerError('CONFLICT', `request ${row.id} is still pending approval`);
    default:
      throw new BrokerError('CONFLICT', `request ${row.id} is ${current.status}; there is nothing to claim`);
  }
  if (current.claim_expires_at !== null && current.claim_expires_at <= now) {
    await storage.transaction((tx) => expireUnclaimed(deps, tx, current, now));
    throw new BrokerError('GONE', `the claim window of request ${row.id} has passed`);
  }
  const minted = await issueCredential(deps, current);
  if (!minted.ok) throw minted.error;
  return issuedBody(current, minted.credential);
}
