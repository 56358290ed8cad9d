import type { RequestView } from './types.ts';

/** What a request is about, in one line: `a/b [read, update]; c [list]` or `repo refs…`. */
export function describeScope(view: { vault_paths?: RequestView['vault_paths']; repo?: string | undefined; refs?: string[] | undefined }): string {
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

/**
 * A decided request in one line, for people and models: `approved by
 * telegram:111 (ok)`, plus `; granted less than asked: a/b [read], ttl 5m`
 * when the approver narrowed it. Empty while pending.
 */
export function describeDecision(view: RequestView): string {
  if (view.status === 'pending') return '';
  const d = view.decision;
  const by = d ? ` by ${d.approver}${d.reason ? ` (${d.reason})` : ''}` : '';
  const granted = d?.granted ?? view.granted;
  const narrowed = (d?.narrowed ?? view.narrowed) && granted;
  const less = narrowed
    ? `; granted less than asked: ${describeScope({ vault_paths: granted.vault_paths, repo: granted.repo ?? view.repo, refs: granted.refs ?? view.refs })}, ttl ${formatSeconds(granted.ttl_seconds)}`
    : '';
  return `${view.status}${by}${less}`;
}
