import { APPROVER_VOTER_PREFIX } from '../../broker/approvers.ts';
import { AGENT_NAME } from '../../broker/agents.ts';
import { BrokerError } from '../../broker/errors.ts';
import { describeDifference, grantDifference, grantOf, grantToMint, requestedGrant, sameGrant, type Grant } from '../../broker/narrowing.ts';
import type { RequestRow, RequestStatus } from '../../broker/rows.ts';
import { commitRevocation, commitRevocations } from '../../broker/revoke.ts';
import { credentialState, requestView } from '../../broker/view.ts';
import { formatDuration } from '../../lib/duration.ts';
import { isId } from '../../lib/ids.ts';
import { inertText } from '../../lib/inert-text.ts';
import { targetUrlLabel, type OutboxRow } from '../../webhooks/outbox.ts';
import { openCliContext, type CliContext } from '../context.ts';
import { iso } from '../format.ts';
import type { CliIo } from '../../lib/cli-io.ts';
import { CLI_ACTOR } from '../operator.ts';
import { UsageError, parseCommandArgs } from '../../lib/cli-args.ts';
import { finishRevocations, finishRevocationsSummarized, openRevocationContext } from './revocation.ts';

const USAGE = [
  'jit requests [--status S] [--agent NAME] [--limit N] [--json]',
  '       jit requests show ID [--json]',
  '       jit requests revoke ID [--reason TEXT]',
  '       jit requests revoke --all [--agent NAME] [--reason TEXT]',
].join('\n');
const STATUSES: RequestStatus[] = ['pending', 'approved', 'issued', 'denied', 'timed_out', 'expired', 'revoked', 'failed'];

/** `jit requests`: list, show one whole, revoke one or all (SPEC §11). */
export async function requestsCommand(args: string[], io: CliIo): Promise<number> {
  const { values, positionals } = parseCommandArgs(
    args,
    { status: { type: 'string' }, agent: { type: 'string' }, limit: { type: 'string' }, json: { type: 'boolean' }, reason: { type: 'string' }, all: { type: 'boolean' } },
    USAGE,
  );
  if (values.help) return (io.out(`usage: ${USAGE}`), 0);
  const [sub, id, ...extra] = positionals;
  const agent = agentOption(values.agent as string | undefined);
  const only = (allowed: string[], what: string) => {
    for (const k of ['status', 'agent', 'limit', 'json', 'reason', 'all']) {
      if (values[k] !== undefined && !allowed.includes(k)) throw new UsageError(`--${k} does not go with ${what}\nusage: ${USAGE}`);
    }
  };
  if (sub === 'show') {
    only(['json'], '"requests show"');
    if (!id || extra.length > 0) throw new UsageError(`${id ? `unexpected argument "${extra[0]}"` : 'requests show needs a request ID'}\nusage: ${USAGE}`);
    if (!isId('req', id)) throw new UsageError(`"${inertText(id)}" is not a request id (they look like req_…)`);
    return withContext(io, false, (ctx) => showRequest(ctx, id, values.json === true, io));
  }
  if (sub === 'revoke') {
    only(['reason', 'all', 'agent'], '"requests revoke"');
    if (extra.length > 0) throw new UsageError(`unexpected argument "${extra[0]}"\nusage: ${USAGE}`);
    if (!id === !values.all) throw new UsageError(`requests revoke needs a request ID or --all\nusage: ${USAGE}`);
    if (id && agent !== undefined) throw new UsageError('--agent goes with --all');
    if (id && !isId('req', id)) throw new UsageError(`"${inertText(id)}" is not a request id (they look like req_…)`);
    const reason = values.reason as string | undefined;
    if (reason !== undefined && (reason.trim() === '' || reason.length > 2000)) throw new UsageError('--reason must be 1-2000 characters');
    return withContext(io, true, (ctx) => (id ? revokeOne(ctx, id, reason, io) : revokeAll(ctx, agent, reason, io)));
  }
  if (sub !== undefined) throw new UsageError(`unexpected argument "${inertText(sub)}"\nusage: ${USAGE}`);
  only(['status', 'agent', 'limit', 'json'], 'the request list');
  const status = values.status as string | undefined;
  if (status !== undefined && !STATUSES.includes(status as RequestStatus)) {
    throw new UsageError(`--status must be one of ${STATUSES.join(', ')}`);
  }
  const limit = values.limit === undefined ? 50 : Number(values.limit);
  if (!Number.isInteger(limit) || limit < 1 || limit > 10_000) throw new UsageError('--limit must be a whole number from 1 to 10000');
  return withContext(io, false, async (ctx) => {
    const rows = await ctx.storage.requests.list({ ...(status ? { status: status as RequestStatus } : {}), ...(agent ? { agentName: agent } : {}), limit });
    if (values.json) {
      for (const r of rows) io.out(JSON.stringify(await requestView(ctx, r)));
      return 0;
    }
    if (rows.length === 0) {
      io.out(`No ${status ? `${status} ` : ''}requests${agent ? ` of agent ${agent}` : ''}.`);
      return 0;
    }
    io.out(['ID', 'STATUS', 'AGENT', 'TIER', 'CREATED', 'TTL', 'REASON', 'SCOPE'].join('\t'));
    for (const r of rows) {
      const { shown, narrowed } = effectiveGrant(r);
      const scope = `${narrowed ? '(narrowed) ' : ''}${scopeWords(shown)}`;
      io.out([r.id, r.status, r.agent_name, `${r.tier}->${r.required_tier}`, iso(r.created_at), formatDuration(shown.ttl_seconds), oneLine(r.reason, 48), scope].join('\t'));
    }
    return 0;
  });
}

async function withContext(io: CliIo, revoking: boolean, run: (ctx: CliContext) => number | Promise<number>): Promise<number> {
  const ctx = revoking ? await openRevocationContext(io) : await openCliContext(io);
  try {
    return await run(ctx);
  } finally {
    await ctx.close();
  }
}

/** What the request grants (or, before approval, asks): the granted scope when narrowed. */
function effectiveGrant(r: RequestRow): { shown: Grant; narrowed: boolean } {
  const shown = grantToMint(r);
  return { shown, narrowed: !sameGrant(shown, requestedGrant(r)) };
}

/** The value of `--agent`, refused (UsageError) when it is not an agent name. */
export function agentOption(agent: string | undefined): string | undefined {
  if (agent !== undefined && !AGENT_NAME.test(agent)) throw new UsageError(`--agent "${inertText(agent)}" is not an agent name`);
  return agent;
}

/** `path[read,update] path2[read]` or `repo ref1 ref2`, inert (the agent wrote these too). */
export function scopeWords(g: Grant): string {
  const words = g.resource === 'vault' ? g.vault_paths.map((p) => `${p.path}[${p.capabilities.join(',')}]`) : [g.repo, ...g.refs];
  return inertText(words.join(' '));
}

/** Agent-written text on one table cell: inert, newlines shown as `\n`, at most `max` characters. */
function oneLine(text: string, max: number): string {
  const flat = inertText(text).replace(/\n/g, '\\n');
  return flat.length > max ? `${flat.slice(0, max)}…` : flat;
}

/** Agent-written text under its own heading, every line indented, so it can never pass for one of the request's fields. */
function quoted(heading: string, text: string): string[] {
  return [`${heading} (written by the agent):`, ...inertText(text).split('\n').map((l) => `    ${l}`)];
}

function pairLines(g: Grant): string[] {
  return g.resource === 'vault' ? g.vault_paths.map((p) => `    ${inertText(p.path)}  [${p.capabilities.join(', ')}]`) : [`    repo ${inertText(g.repo)}`, ...g.refs.map((r) => `    ${inertText(r)}`)];
}

/** A vote's key as shown: a registered approver's (`approver:<id>`) with their name, removed or not. */
async function voterLabel(ctx: CliContext, key: string): Promise<string> {
  const approver = key.startsWith(APPROVER_VOTER_PREFIX) ? await ctx.storage.approvers.get(key.slice(APPROVER_VOTER_PREFIX.length)) : undefined;
  return approver ? `${key} (${approver.name}${approver.removed_at !== null ? ', since removed' : ''})` : inertText(key);
}

async function showRequest(ctx: CliContext, id: string, json: boolean, io: CliIo): Promise<number> {
  const row = await ctx.storage.requests.get(id);
  if (!row) throw new BrokerError('NOT_FOUND', `request ${id} not found`);
  const votes = await ctx.storage.votes.of(id);
  const deliveries = await ctx.storage.outbox.forRequest(id);
  if (json) {
    io.out(
      JSON.stringify({
        ...(await requestView(ctx, row)),
        votes: votes.map((v) => ({
          approver: v.approver,
          decision: v.decision,
          reason: v.reason,
          at: iso(v.at),
          ...(v.grant_scope !== null && v.grant_ttl_seconds !== null ? { grant: { ...JSON.parse(v.grant_scope), ttl_seconds: v.grant_ttl_seconds } } : {}),
        })),
        webhooks: deliveries.map(deliveryJson),
      }),
    );
    return 0;
  }

  const asked = requestedGrant(row);
  const granted = grantOf(row);
  const cred = await ctx.storage.credentials.forRequest(id);
  const field = (name: string, value: string) => `${`${name}:`.padEnd(14)}${value}`;
  const lines = [
    `Request ${row.id}`,
    field('Status', row.status),
    field('Agent', row.agent_name),
    field('Resource', row.resource),
    field('Tier', `asked ${row.tier}, required ${row.required_tier}`),
    field('Created', iso(row.created_at)),
    ...(row.status === 'pending' ? [field('Times out', iso(row.approval_expires_at))] : []),
    ...(row.claim_expires_at !== null && row.status === 'approved' ? [field('Claim by', iso(row.claim_expires_at))] : []),
    field('Rules', (JSON.parse(row.rules) as string[]).join(', ') || '-'),
    ...(row.session_key !== null ? quoted('Session key', row.session_key) : [field('Session key', '- (the agent default)')]),
    ...quoted('Reason', row.reason),
    `Asked (${asked.resource === 'vault' ? `${asked.vault_paths.length} path${asked.vault_paths.length === 1 ? '' : 's'}` : `${asked.refs.length} ref${asked.refs.length === 1 ? '' : 's'}`}, TTL ${formatDuration(asked.ttl_seconds)}):`,
    ...pairLines(asked),
  ];
  if (!granted) lines.push(field('Granted', row.status === 'pending' ? 'nothing yet (pending)' : 'nothing'));
  else if (sameGrant(granted, asked)) lines.push(field('Granted', `as asked, TTL ${formatDuration(granted.ttl_seconds)}`));
  else {
    lines.push('Granted (NARROWED):', ...pairLines(granted), `    TTL ${formatDuration(granted.ttl_seconds)}`);
    lines.push(`    Not granted: ${inertText(describeDifference(grantDifference(asked, granted)))}`);
  }
  if (votes.length > 0) {
    lines.push('Votes:');
    for (const v of votes) lines.push(`    ${await voterLabel(ctx, v.approver)}  ${v.decision}  ${iso(v.at)}${v.reason ? `  ${oneLine(v.reason, 200)}` : ''}`);
  }
  if (row.required_tier === 3 && row.status === 'pending') {
    lines.push(field('Quorum', `${votes.filter((v) => v.decision === 'approve').length} of ${(await ctx.settings()).tier3_quorum} distinct approvers`));
  }
  lines.push(field('Decision', decisionText(row)));
  if (row.status === 'revoked') lines.push(field('Revoked', `at ${iso(row.updated_at)}${row.decision_reason ? `; reason: ${oneLine(row.decision_reason, 200)}` : ''}`));
  if (row.failure) lines.push(field('Failure', oneLine(row.failure, 200)));
  const credState = credentialState(cred);
  if (!cred || credState === 'none') lines.push(field('Credential', 'none'));
  else {
    const state = credState === 'revoking' ? 'revoking (Vault clean-up pending)' : credState;
    const handle = cred.accessor ? `accessor ${cred.accessor}` : cred.jti ? `jti ${cred.jti}` : 'no accessor yet';
    lines.push(field('Credential', `${cred.type}, ${state}, ${handle}, expires ${iso(cred.expires_at)}${cred.ended_at ? `, ended ${iso(cred.ended_at)} (${cred.end_reason ?? '-'})` : ''}`));
  }
  if (deliveries.length === 0) lines.push(field('Webhooks', 'none'));
  else {
    lines.push('Webhook deliveries:');
    for (const d of deliveries) {
      const when = d.state === 'delivered' ? iso(d.delivered_at) : d.state === 'pending' ? `next ${iso(d.next_attempt_at)}` : iso(d.updated_at);
      lines.push(`    ${d.id}  ${d.type}  ${d.state} ${when}  attempts ${d.attempts}${d.last_status !== null ? `  last HTTP ${d.last_status}` : ''}  ${d.target} ${targetUrlLabel(d)}${d.last_error ? `  ${oneLine(d.last_error, 200)}` : ''}`);
    }
  }
  for (const l of lines) io.out(l);
  return 0;
}

function decisionText(row: RequestRow): string {
  if (!row.decided_by) return row.status === 'pending' ? 'none yet' : '-';
  const what = row.decided_by === 'timeout' ? 'timed out' : row.status === 'denied' ? `denied by ${row.decided_by}` : `approved by ${row.decided_by}`;
  const reason = row.decision_reason && row.status !== 'revoked' ? `; reason: ${oneLine(row.decision_reason, 200)}` : '';
  return `${what} at ${iso(row.decided_at)}${reason}`;
}

function deliveryJson(d: OutboxRow): Record<string, unknown> {
  return {
    id: d.id,
    type: d.type,
    state: d.state,
    target: d.target,
    url: targetUrlLabel(d),
    attempts: d.attempts,
    last_status: d.last_status,
    last_error: d.last_error,
    created_at: iso(d.created_at),
    next_attempt_at: d.state === 'pending' ? iso(d.next_attempt_at) : null,
    delivered_at: d.delivered_at === null ? null : iso(d.delivered_at),
  };
}

async function revokeOne(ctx: CliContext, id: string, reason: string | undefined, io: CliIo): Promise<number> {
  // An already revoked request whose Vault token is still to be revoked (an earlier attempt failed in Vault)
  // comes back as a record too: running the command again tries again, as POST /jit/requests/:id/revoke does.
  const record = await commitRevocation(ctx.deps, id, CLI_ACTOR, reason ?? 'revoked by the operator (jit requests revoke)');
  if (!record) {
    io.out(`Request ${id} was already revoked; nothing changed.`);
    return 0;
  }
  const summary = await finishRevocations(ctx, [record], io);
  return summary.vaultFailed > 0 ? 1 : 0;
}

async function revokeAll(ctx: CliContext, agent: string | undefined, reason: string | undefined, io: CliIo): Promise<number> {
  const records = await commitRevocations(ctx.deps, agent ? { agentName: agent } : {}, CLI_ACTOR, reason ?? `kill switch: jit requests revoke --all${agent ? ` --agent ${agent}` : ''}`);
  if (records.length === 0) {
    io.out(`Nothing to revoke: no live credential and no pending or approved request${agent ? ` of agent ${agent}` : ''}.`);
    return 0;
  }
  return finishRevocationsSummarized(ctx, records, io);
}
