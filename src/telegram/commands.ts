import { Composer, type Context } from 'grammy';
import type { User } from 'grammy/types';
import { BrokerError } from '../broker/errors.ts';
import type { RequestRow } from '../broker/rows.ts';
import { revokeAllLive, revokeRequest } from '../broker/revoke.ts';
import { isId } from '../lib/ids.ts';
import { approversOnly, approverTest } from './approver-check.ts';
import { displayName, telegramIdentity, type HandlerEnv, type HandlerKit } from './handler-kit.ts';
import { cut, escapeHtml, humanDuration } from './html.ts';
import { shownLine } from './render.ts';

const HELP = [
  '<b>jit-broker approval bot</b>',
  'Approval requests are posted here with Approve / Deny buttons.',
  '',
  '/pending — list requests awaiting approval',
  '/revoke <code>ID</code> [reason] — end a request or credential now',
  '/revokeall [reason] — revoke every live credential',
].join('\n');

/** /start, /help, /whoami for anyone; /pending, /revoke, /revokeall for approvers (every revocation through the broker's verbs). */
export function commands(env: HandlerEnv, kit: HandlerKit): Composer<Context> {
  const { deps, log, clock } = env;
  const { reply } = kit;
  const isApprover = approverTest(env);
  const composer = new Composer<Context>();

  composer.command(['start', 'help', 'whoami'], async (ctx) => {
    const user = ctx.from;
    if (!user) return;
    const role = (await isApprover(user)) ? 'You are an approver.' : 'You are not an approver (neither TELEGRAM_APPROVERS nor a registered approver has your user id).';
    await reply(ctx, `${HELP}\n\nYour Telegram user id: <code>${user.id}</code>\nThis chat id: <code>${ctx.chat?.id ?? '?'}</code>\n${role}`);
  });

  /** Commands that act on the broker: approvers only (the approver check refuses and audits anyone else). */
  const approverCommand = (name: string, run: (ctx: Context, user: User, args: string) => Promise<void>) => {
    composer.command(
      name,
      approversOnly(env, kit, () => ({ event: 'command.refused', data: { command: name }, text: `Only approvers can use /${name}. This attempt has been recorded.` })),
      async (ctx) => {
        const user = ctx.from!;
        await kit.rememberName(user);
        await run(ctx, user, typeof ctx.match === 'string' ? ctx.match.trim() : '');
      },
    );
  };

  approverCommand('pending', async (ctx) => {
    const now = clock.now();
    const rows = (await deps.storage.requests.list({ status: 'pending', limit: 1000 })).sort((a, b) => (a.approval_expires_at ?? Infinity) - (b.approval_expires_at ?? Infinity));
    if (rows.length === 0) return reply(ctx, 'No pending requests.');
    const shown = rows.slice(0, 20).map((r) => {
      const timeout = r.approval_expires_at === null ? '' : r.approval_expires_at > now ? `, times out in ${humanDuration(r.approval_expires_at - now)}` : ', past its deadline';
      return `• <code>${r.id}</code> — <b>${escapeHtml(r.agent_name)}</b>, tier ${r.required_tier}, ${humanDuration(now - r.created_at)} old${timeout}\n  ${shownLine(cut(r.reason, 120))}${r.reason.length > 120 ? '…' : ''}`;
    });
    const more = rows.length > 20 ? `\n… and ${rows.length - 20} more (see <code>jit requests --status pending</code>)` : '';
    await reply(ctx, `⏳ <b>Pending requests (${rows.length})</b>\n${shown.join('\n')}${more}`);
  });

  approverCommand('revoke', async (ctx, user, args) => {
    const [id, ...rest] = args.split(/\s+/).filter(Boolean);
    if (!id) return reply(ctx, 'Usage: /revoke <code>req_…</code> [reason]');
    if (!isId('req', id)) return reply(ctx, `<code>${escapeHtml(cut(id, 64))}</code> is not a request id (they look like <code>req_…</code>).`);
    const row = await deps.storage.requests.get(id);
    if (!row) return reply(ctx, `No request <code>${id}</code>.`);
    const reason = cut(rest.join(' '), 500) || `revoked in Telegram by ${displayName(user)}`;
    const text = await revokeOne(row, user, reason);
    env.kick();
    await reply(ctx, text);
  });

  approverCommand('revokeall', async (ctx, user, args) => {
    const reason = cut(args, 500) || `revoke-all in Telegram by ${displayName(user)}`;
    const actor = telegramIdentity(user.id);
    const counts = { revoked: 0, vaultPending: 0, cancelled: 0, failed: 0 };
    for (const { request, result } of await revokeAllLive(deps, actor, reason)) {
      if (result === 'revoked') log.info({ request_id: request.id, actor, was: request.status }, 'telegram: request revoked');
      if (result === 'revoked') request.status === 'issued' ? counts.revoked++ : counts.cancelled++;
      else if (result === 'vault_pending') counts.vaultPending++;
      else if (result === 'raced') counts.failed++;
    }
    env.kick();
    const lines = [`🚫 <b>Revoke all</b>: revoked ${counts.revoked + counts.vaultPending} live credential${counts.revoked + counts.vaultPending === 1 ? '' : 's'}.`];
    if (counts.vaultPending) lines.push(`${counts.vaultPending} recorded as revoked but Vault could not be reached; the broker keeps retrying the Vault clean-up.`);
    if (counts.cancelled) lines.push(`Cancelled ${counts.cancelled} approved request${counts.cancelled === 1 ? '' : 's'} not yet claimed.`);
    if (counts.failed) lines.push(`${counts.failed} changed state while being revoked; run /revokeall again.`);
    await reply(ctx, lines.join('\n'));
  });

  /** /revoke of one request: the reply for each outcome of revokeRequest. */
  async function revokeOne(row: RequestRow, user: User, reason: string): Promise<string> {
    const was = row.status;
    if (was === 'revoked') return `<code>${row.id}</code> was already revoked.`;
    try {
      await revokeRequest(deps, row, telegramIdentity(user.id), reason);
      log.info({ request_id: row.id, actor: telegramIdentity(user.id), was }, 'telegram: request revoked');
      return `🚫 Revoked <code>${row.id}</code> (was ${was.replace('_', ' ')}).`;
    } catch (err) {
      if (err instanceof BrokerError && err.code === 'VAULT_UNAVAILABLE') {
        return `🚫 Revoked <code>${row.id}</code>, but Vault could not be reached to end the token; the broker keeps retrying.`;
      }
      if (err instanceof BrokerError) return `Could not revoke: ${escapeHtml(err.message)}`;
      throw err;
    }
  }

  return composer;
}
