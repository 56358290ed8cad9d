import type { Context, MiddlewareFn } from 'grammy';
import type { User } from 'grammy/types';
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
 */
export function approverTest(env: Pick<HandlerEnv, 'config'>): (user: User | undefined) => boolean {
  const approvers = new Set(env.config.approvers);
  return (user) => user !== undefined && !user.is_bot && approvers.has(String(user.id));
}

/**
 * The approver check, one middleware for every button, panel tap and
 * command that acts on the broker: an update without a user goes no
 * further; a user not in TELEGRAM_APPROVERS is refused, the attempt is
 * audited (`refusal(ctx)` says as what) and logged, and the user is told;
 * an approver passes on to the handler.
 */
export function approversOnly(env: HandlerEnv, kit: HandlerKit, refusal: (ctx: Context) => Refusal | Promise<Refusal>): MiddlewareFn<Context> {
  const { deps, log, clock } = env;
  const isApprover = approverTest(env);
  return async (ctx, next) => {
    const user = ctx.from;
    if (!user) return;
    if (isApprover(user)) return next();
    const { event, data, requestId, text } = await refusal(ctx);
    await deps.storage.transaction((tx) =>
      deps.audit.append(
        tx,
        { event, actor: telegramIdentity(user.id), requestId, data: { ...data, via: 'telegram', name: displayName(user), username: user.username } },
        clock.now(),
      ),
    );
    log.warn({ telegram_user: user.id, event, request_id: requestId }, 'telegram: refused a user who is not in TELEGRAM_APPROVERS');
    if (ctx.callbackQuery) await kit.answer(ctx, text, true);
    else await kit.reply(ctx, text);
  };
}
