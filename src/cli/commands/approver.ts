import { ENROLMENT_TTL_MS, TELEGRAM_USER_ID, addApprover, listApprovers, removeApprover } from '../../broker/approvers.ts';
import { BrokerError } from '../../broker/errors.ts';
import { UsageError, parseCommandArgs } from '../../lib/cli-args.ts';
import { openCliContext } from '../context.ts';
import { iso } from '../format.ts';
import type { CliIo } from '../../lib/cli-io.ts';
import { CLI_ACTOR } from '../operator.ts';

const USAGE = 'jit approver add NAME [--telegram-id ID] | jit approver list | jit approver remove NAME';

/** The enrolment link of a token: under the service's public URL (recorded at its start), else this shell's. */
export function enrolmentLink(publicUrl: string, token: string): string {
  return `${publicUrl.replace(/\/+$/, '')}/console/enrol/${token}`;
}

/**
 * `jit approver add|list|remove` (SPEC §12): the people who may approve.
 * `add` prints the one-time enrolment link as the LAST line of stdout.
 */
export async function approverCommand(args: string[], io: CliIo): Promise<number> {
  const { values, positionals } = parseCommandArgs(args, { 'telegram-id': { type: 'string' } }, USAGE);
  if (values.help) return (io.out(`usage: ${USAGE}`), 0);
  const [sub, name, ...extra] = positionals;
  if (extra.length > 0) throw new UsageError(`unexpected argument "${extra[0]}"\nusage: ${USAGE}`);
  const telegramId = values['telegram-id'] as string | undefined;
  if (telegramId !== undefined && sub !== 'add') throw new UsageError(`--telegram-id applies to "approver add" only\nusage: ${USAGE}`);
  if (telegramId !== undefined && !TELEGRAM_USER_ID.test(telegramId)) {
    throw new UsageError(`--telegram-id must be a numeric Telegram user id (the bot's /whoami shows it), not "${telegramId.slice(0, 40)}"`);
  }
  if ((sub === 'add' || sub === 'remove') && !name) throw new UsageError(`approver ${sub} needs a NAME\nusage: ${USAGE}`);
  if (sub === 'list' && name) throw new UsageError(`unexpected argument "${name}"\nusage: ${USAGE}`);
  if (sub !== 'add' && sub !== 'list' && sub !== 'remove') throw new UsageError(`${sub ? `unknown subcommand "${sub}"` : 'missing subcommand'}\nusage: ${USAGE}`);

  const ctx = await openCliContext(io);
  try {
    switch (sub) {
      case 'add': {
        let added;
        try {
          added = await addApprover(ctx.deps, { name: name!, telegramId }, CLI_ACTOR);
        } catch (err) {
          // A malformed name is wrong use (exit 2); a taken name or Telegram id is a refusal (exit 1).
          if (err instanceof BrokerError && err.code === 'BAD_REQUEST') throw new UsageError(err.message);
          throw err;
        }
        const { approver, token, expiresAt } = added;
        const publicUrl = (await ctx.settings()).public_url;
        io.out(`Approver "${approver.name}" registered${approver.telegramId ? ` (Telegram user id ${approver.telegramId})` : ''}.`);
        if (approver.telegramId) io.out('They may approve in Telegram at once, as this approver (one vote per person per request).');
        io.out(`Their enrolment link follows: single use, valid ${ENROLMENT_TTL_MS / 60_000} minutes (until ${iso(expiresAt)}); shown only this once.`);
        io.out(enrolmentLink(publicUrl, token));
        return 0;
      }
      case 'list': {
        const approvers = await listApprovers(ctx.deps);
        if (approvers.length === 0) {
          io.out('No approvers. Register one with: jit approver add NAME [--telegram-id ID]');
          return 0;
        }
        io.out(['NAME', 'TELEGRAM ID', 'PASSKEYS', 'SESSIONS', 'CREATED'].join('\t'));
        for (const a of approvers) io.out([a.name, a.telegramId ?? '-', a.passkeys, a.sessions, iso(a.createdAt)].join('\t'));
        return 0;
      }
      case 'remove': {
        const removed = await removeApprover(ctx.deps, name!, CLI_ACTOR);
        if (!removed) {
          io.err(`jit approver: no approver named "${name}" ("jit approver list" shows them)`);
          return 1;
        }
        const { approver, sessionsEnded, passkeysRemoved } = removed;
        io.out(`Approver "${approver.name}" removed: ${sessionsEnded} console session${sessionsEnded === 1 ? '' : 's'} ended, ${passkeysRemoved} passkey${passkeysRemoved === 1 ? '' : 's'} deleted.`);
        if (approver.telegramId) {
          const listed = ctx.config.telegram?.approvers.includes(approver.telegramId) ?? false;
          io.out(
            listed
              ? `Telegram user id ${approver.telegramId} is also in TELEGRAM_APPROVERS, so it may still approve in Telegram; remove it there to end that too.`
              : `Telegram user id ${approver.telegramId} can no longer approve in Telegram.`,
          );
        }
        io.out('Their past votes stay in the audit log.');
        return 0;
      }
    }
  } finally {
    await ctx.close();
  }
}
