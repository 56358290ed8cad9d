/**
 * Every audit event name the broker writes. The names are part of the
 * audit log's hash chain and of the documented log (docs/), so they never
 * change; a new kind of entry adds a name here, and the typecheck catches a
 * misspelt one anywhere an entry is written.
 */
export const AUDIT_EVENTS = [
  'agent.added',
  'agent.removed',
  'approval.refused',
  'audit.suppressed',
  'auth.failed',
  'callback.refused',
  'command.refused',
  'credential.abandoned',
  'credential.expired',
  'credential.interrupted',
  'credential.issued',
  'credential.minted_after_abandon',
  'credential.vanished',
  'grant.narrowed',
  'key.revoked',
  'key.rotated',
  'request.approved',
  'request.created',
  'request.denied',
  'request.expired',
  'request.failed',
  'request.interrupted',
  'request.rejected',
  'request.revoked',
  'request.timed_out',
  'vault.stray_policy_deleted',
  'vote.cast',
  'vote.duplicate',
  'vote.ignored',
  'vote.refused',
  'webhook.dead',
  'webhook.delivered',
  'webhook.requeued',
  'webhook.retry',
] as const;

export type AuditEvent = (typeof AUDIT_EVENTS)[number];
