import type { Context } from 'grammy';
import type { User } from 'grammy/types';
import type { BrokerDeps } from '../broker/deps.ts';
import { ceilingOf, requestedGrant, type Grant } from '../broker/narrowing.ts';
import type { RequestRow } from '../broker/rows.ts';
import { isPastApprovalDeadline } from '../broker/request-machine.ts';
import type { Transaction } from '../storage/storage.ts';
import type { Clock } from '../lib/clock.ts';
import type { Logger } from '../lib/logger.ts';
import { describeTelegramError } from './errors.ts';
import { cut } from './html.ts';
import { renderApproval } from './render.ts';
import type { TelegramConfig } from './config.ts';
import type { TelegramStore } from './store.ts';
import { approvalView } from './sync.ts';

export interface HandlerEnv {
  deps: BrokerDeps;
  config: TelegramConfig;
  store: TelegramStore;
  log: Logger;
  clock: Clock;
  token: string;
  /** Asks the sync loop to update the chat now. */
  kick(): void;
}

/** The approver identity decideRequest records for a Telegram user. */
export const telegramIdentity = (userId: number | string) => `telegram:${userId}`;

export const displayName = (u: User) => cut([u.first_name, u.last_name].filter(Boolean).join(' ') || (u.username ? `@${u.username}` : `user ${u.id}`), 64);

/** The pieces the button, panel and command handlers share: answering, replying, and the checks on a tap. */
export type HandlerKit = ReturnType<typeof createHandlerKit>;

export function createHandlerKit(env: HandlerEnv) {
  const { deps, store, log, clock } = env;

  const answer = async (ctx: Context, text: string, alert = false) => {
    try {
      // Telegram refuses answers over 200 characters.
      await ctx.answerCallbackQuery({ text: cut(text, 200), show_alert: alert });
    } catch (err) {
      // Too late or Telegram down: the decision stands either way; the message edit shows it.
      log.warn({ telegram: describeTelegramError(err, env.token) }, 'telegram: could not answer a button tap');
    }
  };

  const reply = async (ctx: Context, html: string) => {
    try {
      await ctx.reply(html, {
        parse_mode: 'HTML',
        link_preview_options: { is_disabled: true },
        ...(ctx.msg ? { reply_parameters: { message_id: ctx.msg.message_id, allow_sending_without_reply: true } } : {}),
      });
    } catch (err) {
      log.warn({ telegram: describeTelegramError(err, env.token) }, 'telegram: could not reply to a command');
    }
  };

  const auditRefusal = async (user: User, reason: string, data: string, requestId?: string) => {
    await deps.storage.transaction((tx) =>
      deps.audit.append(tx, { event: 'callback.refused', actor: telegramIdentity(user.id), requestId, data: { reason, data: cut(data, 64), via: 'telegram' } }, clock.now()),
    );
    log.warn({ telegram_user: user.id, request_id: requestId, reason }, 'telegram: refused a button tap');
  };

  /**
   * Security: a button acts only on the request of the message it is under.
   * Callback data is chosen by the client, so `a:<request B>` sent from
   * request A's message (or a panel id of B) is refused, whatever it names;
   * so is any button naming a request whose message the broker never posted
   * (there is no message it could belong to). Returns why it is refused, or
   * undefined when the tap is under the request's own message.
   *
   * One gap is closed here: a post that reached Telegram but whose record
   * never committed (the broker died in between; the re-post waits for the
   * post lease). Such a message is the request's own if Telegram, not the
   * client, shows this very button on it: the message in a callback query
   * comes from Telegram with its keyboard, only the data is the client's. It
   * is then recorded as the request's message (adopted) and the tap counts.
   */
  const notUnderItsMessage = async (ctx: Context, requestId: string): Promise<string | undefined> => {
    const m = ctx.callbackQuery?.message;
    const row = await store.get(requestId);
    if (!row) return 'no approval message of this request was posted';
    if (!m) return 'button not under a message';
    // TELEGRAM_CHAT_ID may be a numeric id or an @username.
    const sameChat = /^-?\d+$/.test(row.chat_id) ? String(m.chat.id) === row.chat_id : 'username' in m.chat && `@${m.chat.username}`.toLowerCase() === row.chat_id.toLowerCase();
    if (row.message_id === null) {
      const data = ctx.callbackQuery?.data;
      const shown = 'reply_markup' in m && (m.reply_markup?.inline_keyboard.flat() ?? []).some((b) => 'callback_data' in b && b.callback_data === data);
      if (!sameChat || !shown || !(await store.adopt(requestId, row.chat_id, m.message_id, clock.now()))) return 'no approval message of this request was posted';
      log.warn({ request_id: requestId, message_id: m.message_id }, 'telegram: adopted an approval message whose post was never recorded (the broker stopped mid-post)');
      env.kick();
      return undefined;
    }
    return sameChat && m.message_id === row.message_id ? undefined : 'button not under its request’s message';
  };

  /** Refuses (answer and audit) a tap that is not under its request's message; true when refused. */
  const refusedOffMessage = async (ctx: Context, user: User, requestId: string, what = ''): Promise<boolean> => {
    const why = await notUnderItsMessage(ctx, requestId);
    if (!why) return false;
    await auditRefusal(user, `${what}${why}`, ctx.callbackQuery?.data ?? '', requestId);
    await answer(ctx, 'Refused: this button does not belong to this message. Nothing changed; this attempt has been recorded.', true);
    return true;
  };

  /**
   * Security (SPEC §10: an approver approves what was shown): a pending
   * request too large to show whole in one message (stored before the
   * request limits) has a message offering only Deny, but button data is
   * the client's, and an older message of it may still carry Approve. So
   * approving it, or opening its narrowing panel, is refused here, on the
   * same rendering the message gets, and audited; it is decided with
   * `jit approve` after `jit requests show`. True when refused.
   */
  const refusedTooLarge = async (ctx: Context, user: User, requestId: string): Promise<boolean> => {
    const request = await deps.storage.requests.get(requestId);
    if (request?.status !== 'pending' || renderApproval(await approvalView(deps, store, request, await store.names())).shownWhole) return false;
    await auditRefusal(user, 'request too large to show whole in one message', ctx.callbackQuery?.data ?? '', requestId);
    await answer(ctx, 'Not approved: this request is too large to show whole in one message, so it cannot be approved here. Use jit requests show and jit approve. This attempt has been recorded.', true);
    return true;
  };

  /** For buttons that do not decide: the request must still be pending (the answer says what it is otherwise). */
  const pendingOrAnswer = async (ctx: Context, requestId: string): Promise<RequestRow | undefined> => {
    const request = await deps.storage.requests.get(requestId);
    if (!request) {
      await answer(ctx, 'Unknown request: it is not in this broker’s database.', true);
      return undefined;
    }
    if (request.status !== 'pending' || isPastApprovalDeadline(request, clock.now())) {
      await answer(ctx, request.status === 'pending' ? 'Too late: the request timed out' : `Already decided: the request is ${request.status.replace('_', ' ')}`);
      env.kick();
      return undefined;
    }
    return request;
  };

  /** In the caller's transaction with `tx`. */
  const ceilingFor = async (request: RequestRow, tx?: Transaction): Promise<{ requested: Grant; ceiling: Grant }> => {
    const requested = requestedGrant(request);
    const votes = (await store.votes(request.id, tx)).filter((v) => v.decision === 'approve');
    return { requested, ceiling: ceilingOf(requested, votes.map((v) => ({ grant_scope: v.grant_scope ?? null, grant_ttl_seconds: v.grant_ttl_seconds ?? null }))) };
  };

  /** Remembers the display name of an approver who acts, for the messages that name them. */
  const rememberName = (user: User) => store.rememberName(telegramIdentity(user.id), displayName(user), clock.now());

  return { answer, reply, auditRefusal, refusedOffMessage, refusedTooLarge, pendingOrAnswer, ceilingFor, rememberName };
}
