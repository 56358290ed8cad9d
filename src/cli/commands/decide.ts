import { decideRequest, type DecideOutcome } from '../../broker/decide.ts';
import { isId } from '../../lib/ids.ts';
import { openCliContext } from '../context.ts';
import type { CliIo } from '../io.ts';
import { UsageError, parseCommandArgs } from '../main.ts';

/** The approver identity of the local CLI (SPEC §3). */
export const LOCAL_APPROVER = 'local-cli';

/** `jit approve ID` / `jit deny ID [--reason TEXT]`: the local approver for hosts without Telegram. */
export function decideCommand(decision: 'approve' | 'deny') {
  const usage = decision === 'approve' ? 'jit approve ID [--reason TEXT]' : 'jit deny ID [--reason TEXT]';
  return async (args: string[], io: CliIo): Promise<number> => {
    const { values, positionals } = parseCommandArgs(args, { reason: { type: 'string' } }, usage);
    if (values.help) return (io.out(`usage: ${usage}`), 0);
    const [id, ...extra] = positionals;
    if (!id || extra.length > 0) throw new UsageError(`${id ? `unexpected argument "${extra[0]}"` : 'missing request ID'}\nusage: ${usage}`);
    if (!isId('req', id)) throw new UsageError(`"${id}" is not a request id (they look like req_…)`);
    const reason = values.reason as string | undefined;
    if (reason !== undefined && (reason.trim() === '' || reason.length > 2000)) throw new UsageError('--reason must be 1-2000 characters');
    const ctx = openCliContext(io, { decisions: true });
    try {
      const result = decideRequest(ctx.deps, id, { approver: LOCAL_APPROVER, decision, reason });
      return report(result, id, io);
    } finally {
      ctx.close();
    }
  };
}

function report(result: DecideOutcome, id: string, io: CliIo): number {
  switch (result.outcome) {
    case 'approved':
      io.out(`Request ${id} approved. The agent can claim its credential until ${new Date(result.request.claim_expires_at!).toISOString()}.`);
      return 0;
    case 'denied':
      io.out(`Request ${id} denied.`);
      return 0;
    case 'vote_recorded':
      io.out(`Approval recorded for ${id}: ${result.approvals} of ${result.needed} distinct approvers (tier 3).`);
      return 0;
    case 'already_voted':
      io.err(`You (local-cli) already voted on ${id}: ${result.approvals} of ${result.needed} approvals so far.`);
      return 1;
    case 'already_decided':
      io.err(`Request ${id} is already ${result.status}${result.decidedBy ? ` (by ${result.decidedBy})` : ''}; nothing changed.`);
      return 1;
  }
}
