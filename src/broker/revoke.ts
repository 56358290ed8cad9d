import type { BrokerDeps } from './deps.ts';
import { BrokerError } from './errors.ts';
import { endCredential } from './mint-credential.ts';
import type { RequestRow, RequestStatus } from './repository.ts';
import { vaultUnavailable } from './vault-errors.ts';
import { requestView } from './view.ts';

const CANCELLABLE: RequestStatus[] = ['pending', 'approved'];

/**
 * Ends a request now. A live credential is revoked in Vault (token by
 * accessor, then its ephemeral policy); a pending or approved request is
 * cancelled so it can never be issued. The state change is committed
 * before Vault is called, so a claim racing with the revoke loses; if Vault
 * is down the credential stays `ending` and the reaper finishes the job.
 * Revoking an already revoked request is not an error.
 */
export async function revokeRequest(deps: BrokerDeps, row: RequestRow, actor: string, reason?: string): Promise<Record<string, unknown>> {
  const { repo, audit, clock, db, log, events } = deps;
  const now = clock.now();

  const outcome = db.transaction(() => {
    const current = repo.getRequest(row.id)!;
    if (current.status === 'issued') {
      const cred = repo.getCredential(row.id);
      if (!repo.transition(row.id, 'issued', 'revoked', now, { decisionReason: reason })) return 'raced' as const;
      if (cred && cred.state === 'live') repo.moveCredential(cred.id, 'live', 'ending', now, 'revoked');
      audit.append({ event: 'request.revoked', actor, requestId: row.id, data: { credential_id: cred?.id, accessor: cred?.accessor, reason } }, now);
      events.record(repo.getRequest(row.id)!, 'revoked', now);
      return 'revoked' as const;
    }
    if (CANCELLABLE.includes(current.status)) {
      if (!repo.transition(row.id, current.status, 'revoked', now, { decisionReason: reason })) return 'raced' as const;
      audit.append({ event: 'request.revoked', actor, requestId: row.id, data: { was: current.status, reason } }, now);
      events.record(repo.getRequest(row.id)!, 'revoked', now);
      return 'revoked' as const;
    }
    if (current.status === 'revoked') return 'already' as const;
    return current.status;
  })();

  if (outcome === 'raced') throw new BrokerError('CONFLICT', `request ${row.id} changed while being revoked; try again`);
  if (outcome !== 'revoked' && outcome !== 'already') {
    throw new BrokerError('CONFLICT', `request ${row.id} is ${outcome}; there is nothing to revoke`);
  }

  const cred = repo.getCredential(row.id);
  if (cred?.state === 'ending') {
    try {
      await endCredential(deps, cred);
    } catch (err) {
      log.warn({ err, request_id: row.id }, 'revocation recorded but Vault cleanup failed; the reaper will retry');
      throw vaultUnavailable(err, 'revoke the token in Vault (the revocation is recorded and will be retried)');
    }
  }
  return requestView(deps, repo.getRequest(row.id)!);
}
