import type { RequestView } from './types.ts';

/** What a request is about, in one line: `a/b [read, update]; c [list]` or `repo refs…`. */
export function describeScope(view: Pick<RequestView, 'vault_paths' | 'repo' | 'refs'>): string {
  if (view.vault_paths) return view.vault_paths.map((p) => `${p.path} [${p.capabilities.join(', ')}]`).join('; ');
  return `${view.repo ?? '?'} ${(view.refs ?? []).join(' ')}`;
}

/** A request's state as readable lines, for people and models. Never holds a secret (the view has none). */
export function describeRequest(view: RequestView): string[] {
  const lines = [
    `${view.id}  ${view.status}  ${view.resource}  tier ${view.tier}${view.required_tier !== view.tier ? ` (required ${view.required_tier})` : ''}`,
    `reason:     ${view.reason}`,
    `${view.resource === 'gate' ? 'refs:      ' : 'paths:     '} ${describeScope(view)}`,
    `ttl:        ${formatSeconds(view.ttl_seconds)}`,
  ];
  if (view.session_key) lines.push(`session:    ${view.session_key}`);
  lines.push(`created:    ${view.created_at}`);
  if (view.status === 'pending' && view.approval_expires_at) lines.push(`decide by:  ${view.approval_expires_at}`);
  if (view.decision) {
    const why = view.decision.reason ? ` (${view.decision.reason})` : '';
    lines.push(`decision:   ${view.decision.approver}${view.decision.decided_at ? ` at ${view.decision.decided_at}` : ''}${why}`);
  }
  if (view.status === 'approved' && view.claim_expires_at) lines.push(`claim by:   ${view.claim_expires_at}`);
  if (view.credential) {
    const c = view.credential;
    const handle = c.accessor ? ` accessor ${c.accessor}` : c.jti ? ` jti ${c.jti}` : '';
    lines.push(`credential: ${c.type}${handle}, ${c.state}${c.expires_at ? `, expires ${c.expires_at}` : ''}${c.ended_at ? `, ended ${c.ended_at}` : ''}`);
  }
  if (view.failure) lines.push(`failure:    ${view.failure}`);
  return lines;
}

function formatSeconds(seconds: number): string {
  for (const [unit, size] of [['d', 86400], ['h', 3600], ['m', 60]] as const) {
    if (seconds >= size && seconds % size === 0) return `${seconds / size}${unit}`;
  }
  return `${seconds}s`;
}
