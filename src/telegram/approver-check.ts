import type { Context, MiddlewareFn } from 'grammy';
import type { User } from 'grammy/types';
import { isRegisteredTelegramApprover } from '../broker/approvers.ts';
import { displayName, telegramIdentity, type HandlerEnv, type HandlerKit } from './handler-kit.ts';

/** What a refused non-approver's attempt is recorded as, and what they are told. */
export interface Refusal {
  event: 'vote.refused' | 'command.refused';
  data: Record<string, unknown>;
  requestId?: string | undefined;
  /** The answer to a button tap (an alert), or the reply to a command. */
  text: string;
}

export const NOT_AN_APPROVER = 'You are not an approver for this broker. This attempt has been recorded.';

/**
 * The only authorisation check: the numeric Telegram user id, which
 * Telegram sets on every update and a user cannot choose. Names and
 * usernames are display only. The chat a tap or command comes from does
 * not matter: an approver can act from a private chat with the bot.
 *
 * A user is an approver when TELEGRAM_APPROVERS lists their id (the
 * Telegram-only list) or when an approver registered with `jit approver add
 * NAME --telegram-id ID` and not removed has it: read from the database on
 * every update, so `jit approver remove` takes the right away at once (the
 * id keeps it only if TELEGRAM_APPROVERS lists it too). The person's vote
 * is then counted as that approver's (broker/approvers.ts `voterOf`).
 */
export function approverTest(env: Pick<HandlerEnv, 'config' | 'deps'>): (user: User | undefined) => Promise<boolean> {
  const listed = new Set(env.config.approvers);
  return async (user) => {
    if (user === undefined || user.is_bot) return false;
    return listed.has(String(user.id)) || (await isRegisteredTelegramApprover(env.deps, user.id));
  };
}

/**
 * The approver check, one middleware for every button, panel tap and
 * command that acts on the broker: an update without a user goes no
 * further; a user who is not an approver ({@link approverTest}) is refused, the attempt is
 * audited (`refusal(ctx)` says as what) and logged, and the user is told;
 * an approver passes on to the handler.
 */
export function approversOnly(env: HandlerEnv, kit: HandlerKit, refusal: (ctx: Context) => Refusal | Promise<Refusal>): MiddlewareFn<Context> {
  const { deps, log, clock } = env;
  const isApprover = approverTest(env);
  return async (ctx, next) => {
    const user = ctx.from;
    if (!user) return;
    if (await isApprover(user)) return next();
    const { event, data, requestId, text } = await refusal(ctx);
    await deps.storage.transaction((tx) =>
      deps.audit.append(
        tx,
        { event, actor: telegramIdentity(user.id), requestId, data: { ...data, via: 'telegram', name: displayName(user), username: user.username } },
        clock.now(),
      ),
    );
    log.warn({ telegram_user: user.id, event, request_id: requestId }, 'telegram: refused a user who is not an approver (not in TELEGRAM_APPROVERS nor a registered approver)');
    if (ctx.callbackQuery) await kit.answer(ctx, text, true);
    else await kit.reply(ctx, text);
  };
}
