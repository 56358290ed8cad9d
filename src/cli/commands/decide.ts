import { decideRequest, type DecideOutcome } from '../../broker/decide.ts';
import type { RequestRow } from '../../broker/rows.ts';
import type { ServiceSettings } from '../../config/service-settings.ts';
import { describeDifference, grantDifference, requestedGrant, type Grant, type Narrowing } from '../../broker/narrowing.ts';
import { formatDuration, parseDurationSeconds } from '../../lib/duration.ts';
import { isId } from '../../lib/ids.ts';
import { openCliContext } from '../context.ts';
import type { CliIo } from '../../lib/cli-io.ts';
import { CLI_ACTOR } from '../operator.ts';
import { UsageError, parseCommandArgs } from '../../lib/cli-args.ts';

const APPROVE_USAGE = [
  'jit approve ID [--reason TEXT] [--ttl D] [--drop-capability CAP]... [--drop-path PATH]... [--drop-ref REF]...',
  '',
  'Approve a pending request as approver "local-cli", optionally granting less than it asked:',
  '  --ttl D                 a shorter TTL (e.g. 5m, 900s); never longer than asked',
  '  --drop-capability CAP   do not grant CAP on any path (e.g. update: read-only)',
  '  --drop-path PATH        do not grant PATH at all (Vault requests)',
  '  --drop-ref REF          do not grant REF (gate requests)',
  'Each option may be repeated. See docs/narrowing.md.',
  'At tier 3 this is one vote of the quorum: local-cli counts as one approver however often it',
  'approves; the other votes come from other approvers (Telegram, when configured).',
].join('\n');
const DENY_USAGE = 'jit deny ID [--reason TEXT]';

/** `jit approve ID [narrowing]` / `jit deny ID [--reason TEXT]`: the local approver for hosts without Telegram. */
export function decideCommand(decision: 'approve' | 'deny') {
  const usage = decision === 'approve' ? APPROVE_USAGE : DENY_USAGE;
  const options =
    decision === 'approve'
      ? {
          reason: { type: 'string' },
          ttl: { type: 'string' },
          'drop-capability': { type: 'string', multiple: true },
          'drop-path': { type: 'string', multiple: true },
          'drop-ref': { type: 'string', multiple: true },
        }
      : { reason: { type: 'string' } };
  return async (args: string[], io: CliIo): Promise<number> => {
    const { values, positionals } = parseCommandArgs(args, options as Parameters<typeof parseCommandArgs>[1], usage);
    if (values.help) return (io.out(`usage: ${usage}`), 0);
    const [id, ...extra] = positionals;
    if (!id || extra.length > 0) throw new UsageError(`${id ? `unexpected argument "${extra[0]}"` : 'missing request ID'}\nusage: ${usage.split('\n')[0]}`);
    if (!isId('req', id)) throw new UsageError(`"${id}" is not a request id (they look like req_…)`);
    const reason = values.reason as string | undefined;
    if (reason !== undefined && (reason.trim() === '' || reason.length > 2000)) throw new UsageError('--reason must be 1-2000 characters');
    const narrowing = decision === 'approve' ? narrowingFrom(values) : undefined;

    const ctx = await openCliContext(io, { decisions: true });
    try {
      // The policy in force re-checks the grant at approval (narrowed or not), as the service does.
      const result = decideRequest({ ...ctx.deps, policies: ctx.policies }, id, { approver: CLI_ACTOR, decision, reason, narrowing });
      return report(await result, id, io, await ctx.settings());
    } finally {
      await ctx.close();
    }
  };
}

function narrowingFrom(values: Record<string, unknown>): Narrowing | undefined {
  const list = (name: string) => {
    const v = (values[name] as string[] | undefined) ?? [];
    for (const item of v) if (item.trim() === '') throw new UsageError(`--${name} needs a value`);
    return v;
  };
  let ttlSeconds: number | undefined;
  if (values.ttl !== undefined) {
    ttlSeconds = parseDurationSeconds(values.ttl as string);
    if (ttlSeconds === undefined) throw new UsageError(`--ttl "${values.ttl as string}" is not a duration (e.g. 300, 90s, 5m, 1h)`);
  }
  const n: Narrowing = { ttlSeconds, dropCapabilities: list('drop-capability'), dropPaths: list('drop-path'), dropRefs: list('drop-ref') };
  return n.ttlSeconds === undefined && !n.dropCapabilities!.length && !n.dropPaths!.length && !n.dropRefs!.length ? undefined : n;
}

/** `homelab/data/apps/web [read]; TTL 5m` */
function describeGrant(grant: Grant): string {
  const items = grant.resource === 'vault' ? grant.vault_paths.map((p) => `${p.path} [${p.capabilities.join(', ')}]`) : grant.refs.map((r) => `${grant.repo} ${r}`);
  return `${items.join('; ')}; TTL ${formatDuration(grant.ttl_seconds)}`;
}

function granted(result: { request: Parameters<typeof requestedGrant>[0]; grant: Grant; narrowed: boolean }): string {
  if (!result.narrowed) return `Granted as asked: ${describeGrant(result.grant)}.`;
  return `Granted (narrowed): ${describeGrant(result.grant)}.\nNot granted: ${describeDifference(grantDifference(requestedGrant(result.request), result.grant))}.`;
}

/**
 * Why a tier-3 request is not decided by `jit approve` alone, and where the
 * other votes can come from: the quorum counts distinct approvers, and this
 * shell is one of them (`local-cli`) however often it approves. Whether
 * Telegram approvers exist is the running service's setting (recorded at
 * its start), not this shell's.
 */
function quorumHelp(service: ServiceSettings, request: RequestRow, approvals: number, needed: number): string {
  const left = needed - approvals;
  const head = `Tier 3 needs ${needed} distinct approvers; local-cli counts as one approver however often jit approve runs.`;
  if (service.telegram_configured) {
    return `${head} The remaining ${left} vote${left === 1 ? '' : 's'} must come from the approvers in Telegram (TELEGRAM_APPROVERS, in chat ${service.telegram_chat_id}).`;
  }
  const deadline = request.approval_expires_at === null ? '' : ` at ${new Date(request.approval_expires_at).toISOString()}`;
  return `${head} Telegram is not configured in the service (its TELEGRAM_BOT_TOKEN is unset), so no other approver can vote: the request times out${deadline} unless it is denied (jit deny ${request.id}).`;
}

function report(result: DecideOutcome, id: string, io: CliIo, service: ServiceSettings): number {
  switch (result.outcome) {
    case 'approved':
      io.out(`Request ${id} approved. The agent can claim its credential until ${new Date(result.request.claim_expires_at!).toISOString()}.`);
      io.out(granted(result));
      return 0;
    case 'denied':
      io.out(`Request ${id} denied.`);
      return 0;
    case 'vote_recorded':
      io.out(`Approval recorded for ${id}: ${result.approvals} of ${result.needed} distinct approvers (tier 3).`);
      io.out(granted(result).replace(/^Granted/, 'The grant so far'));
      io.out(quorumHelp(service, result.request, result.approvals, result.needed));
      return 0;
    case 'already_voted':
      io.err(`You (local-cli) already voted on ${id}: ${result.approvals} of ${result.needed} approvals so far.`);
      if (result.request.required_tier === 3) io.err(quorumHelp(service, result.request, result.approvals, result.needed));
      return 1;
    case 'already_decided':
      io.err(`Request ${id} is already ${result.status}${result.decidedBy ? ` (by ${result.decidedBy})` : ''}; nothing changed.`);
      return 1;
    case 'refused':
      if (result.consoleUrl) {
        io.err(`Request ${id} was not approved and the approval was not counted: a tier-${result.request.required_tier} approval needs a passkey step-up (the service's JIT_PASSKEY_TIER). It is still pending; approve it in the console:`);
        io.err(result.consoleUrl);
        return 1;
      }
      io.err(`Request ${id} was not approved: ${result.message}. It is still pending.`);
      return 1;
  }
}
