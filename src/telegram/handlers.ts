import type { Bot, Context } from 'grammy';
import type { User } from 'grammy/types';
import { decideRequest, type DecideOutcome } from '../broker/decide.ts';
import type { BrokerDeps } from '../broker/deps.ts';
import { BrokerError } from '../broker/errors.ts';
import { ceilingOf, describeDifference, grantDifference, requestedGrant, type Grant } from '../broker/narrowing.ts';
import type { RequestRow } from '../broker/repository.ts';
import { revokeRequest } from '../broker/revoke.ts';
import type { Config } from '../config/config.ts';
import type { Clock } from '../lib/clock.ts';
import { isId } from '../lib/ids.ts';
import type { Logger } from '../lib/logger.ts';
import { describeTelegramError } from './errors.ts';
import { cut, escapeHtml, humanDuration } from './html.ts';
import { OPEN_PANEL_DATA, PANEL_DATA, applyPanelAction, draftToNarrowing, parsePanelData } from './narrowing-panel.ts';
import { approverLabel, parseCallbackData, renderApproval, shownLine } from './render.ts';
import type { NarrowingDraft, TelegramStore } from './store.ts';
import { approvalView } from './sync.ts';

export type TelegramConfig = NonNullable<Config['telegram']>;

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

const displayName = (u: User) => cut([u.first_name, u.last_name].filter(Boolean).join(' ') || (u.username ? `@${u.username}` : `user ${u.id}`), 64);

/** The callback answer for each outcome of decideRequest (at most 200 characters, Telegram's limit). */
export function answerFor(result: DecideOutcome, names?: ReadonlyMap<string, string>): string {
  const by = (ids: string | null) => (ids ? ids.split(', ').map((id) => approverLabel(id, names)).join(', ') : 'someone');
  let text: string;
  switch (result.outcome) {
    case 'approved': {
      const base = result.request.required_tier === 3 ? 'Approved (quorum reached, tier 3)' : 'Approved';
      text = result.narrowed ? `${base}, narrowed. Not granted: ${describeDifference(grantDifference(requestedGrant(result.request), result.grant))}` : base;
      break;
    }
    case 'denied':
      text = 'Denied';
      break;
    case 'vote_recorded':
      text = `Approval recorded: ${result.approvals} of ${result.needed} (tier 3)${result.narrowed ? '; the grant is narrowed (see the message)' : ''}`;
      break;
    case 'refused':
      text = `Not approved: ${result.message}`;
      break;
    case 'already_voted':
      text = `You already voted (${result.approvals} of ${result.needed} approvals so far)`;
      break;
    case 'already_decided':
      switch (result.status) {
        case 'approved':
        case 'issued':
          text = `Already approved by ${by(result.decidedBy)}`;
          break;
        case 'denied':
          text = `Already denied by ${by(result.decidedBy)}`;
          break;
        case 'timed_out':
          text = 'Too late: the request timed out';
          break;
        default:
          text = `Already decided: the request is ${result.status.replace('_', ' ')}`;
      }
  }
  return cut(text, 200);
}

/**
 * Registers the callback-query and command handlers. Every decision goes
 * through decideRequest and every revocation through revokeRequest; this
 * file only checks who is asking and turns outcomes into answers.
 */
export function registerHandlers(bot: Bot, env: HandlerEnv): void {
  const { deps, config, store, log, clock } = env;
  const approvers = new Set(config.approvers);

  /**
   * The only authorisation check: the numeric Telegram user id, which
   * Telegram sets on every update and a user cannot choose. Names and
   * usernames are display only. The chat a tap or command comes from does
   * not matter: an approver can act from a private chat with the bot.
   */
  const isApprover = (user: User | undefined): user is User => user !== undefined && !user.is_bot && approvers.has(String(user.id));

  const refuse = (user: User, event: 'vote.refused' | 'command.refused', data: Record<string, unknown>, requestId?: string) => {
    deps.db.transaction(() => {
      deps.audit.append(
        { event, actor: telegramIdentity(user.id), requestId, data: { ...data, via: 'telegram', name: displayName(user), username: user.username } },
        clock.now(),
      );
    })();
    log.warn({ telegram_user: user.id, event, request_id: requestId }, 'telegram: refused a user who is not in TELEGRAM_APPROVERS');
  };

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

  // ---- buttons ---------------------------------------------------------------

  const auditRefusal = (user: User, reason: string, data: string, requestId?: string) => {
    deps.db.transaction(() => {
      deps.audit.append({ event: 'callback.refused', actor: telegramIdentity(user.id), requestId, data: { reason, data: cut(data, 64), via: 'telegram' } }, clock.now());
    })();
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
  const notUnderItsMessage = (ctx: Context, requestId: string): string | undefined => {
    const m = ctx.callbackQuery?.message;
    const row = store.get(requestId);
    if (!row) return 'no approval message of this request was posted';
    if (!m) return 'button not under a message';
    // TELEGRAM_CHAT_ID may be a numeric id or an @username.
    const sameChat = /^-?\d+$/.test(row.chat_id) ? String(m.chat.id) === row.chat_id : 'username' in m.chat && `@${m.chat.username}`.toLowerCase() === row.chat_id.toLowerCase();
    if (row.message_id === null) {
      const data = ctx.callbackQuery?.data;
      const shown = 'reply_markup' in m && (m.reply_markup?.inline_keyboard.flat() ?? []).some((b) => 'callback_data' in b && b.callback_data === data);
      if (!sameChat || !shown || !store.adopt(requestId, row.chat_id, m.message_id, clock.now())) return 'no approval message of this request was posted';
      log.warn({ request_id: requestId, message_id: m.message_id }, 'telegram: adopted an approval message whose post was never recorded (the broker stopped mid-post)');
      env.kick();
      return undefined;
    }
    return sameChat && m.message_id === row.message_id ? undefined : 'button not under its request’s message';
  };

  /** Refuses (answer and audit) a tap that is not under its request's message; true when refused. */
  const refusedOffMessage = async (ctx: Context, user: User, requestId: string, what = ''): Promise<boolean> => {
    const why = notUnderItsMessage(ctx, requestId);
    if (!why) return false;
    auditRefusal(user, `${what}${why}`, ctx.callbackQuery?.data ?? '', requestId);
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
    const request = deps.repo.getRequest(requestId);
    if (request?.status !== 'pending' || renderApproval(approvalView(deps, store, request, store.names())).shownWhole) return false;
    auditRefusal(user, 'request too large to show whole in one message', ctx.callbackQuery?.data ?? '', requestId);
    await answer(ctx, 'Not approved: this request is too large to show whole in one message, so it cannot be approved here. Use jit requests show and jit approve. This attempt has been recorded.', true);
    return true;
  };

  /** For buttons that do not decide: the request must still be pending (the answer says what it is otherwise). */
  const pendingOrAnswer = async (ctx: Context, requestId: string): Promise<RequestRow | undefined> => {
    const request = deps.repo.getRequest(requestId);
    if (!request) {
      await answer(ctx, 'Unknown request: it is not in this broker’s database.', true);
      return undefined;
    }
    if (request.status !== 'pending' || (request.approval_expires_at !== null && request.approval_expires_at <= clock.now())) {
      await answer(ctx, request.status === 'pending' ? 'Too late: the request timed out' : `Already decided: the request is ${request.status.replace('_', ' ')}`);
      env.kick();
      return undefined;
    }
    return request;
  };

  const ceilingFor = (request: RequestRow): { requested: Grant; ceiling: Grant } => {
    const requested = requestedGrant(request);
    const votes = store.votes(request.id).filter((v) => v.decision === 'approve');
    return { requested, ceiling: ceilingOf(requested, votes.map((v) => ({ grant_scope: v.grant_scope ?? null, grant_ttl_seconds: v.grant_ttl_seconds ?? null }))) };
  };

  bot.callbackQuery(/^[ad]:req_[0-9a-z]{26}$/, async (ctx) => {
    const tap = parseCallbackData(ctx.callbackQuery.data)!;
    const user = ctx.from;
    if (!isApprover(user)) {
      refuse(user, 'vote.refused', { decision: tap.decision }, tap.requestId);
      await answer(ctx, 'You are not an approver for this broker. This attempt has been recorded.', true);
      return;
    }
    if (await refusedOffMessage(ctx, user, tap.requestId)) return;
    if (tap.decision === 'approve' && (await refusedTooLarge(ctx, user, tap.requestId))) return;
    const identity = telegramIdentity(user.id);
    store.rememberName(identity, displayName(user), clock.now());
    let result: DecideOutcome;
    try {
      result = decideRequest(deps, tap.requestId, { approver: identity, decision: tap.decision });
    } catch (err) {
      if (err instanceof BrokerError && err.code === 'NOT_FOUND') {
        await answer(ctx, 'Unknown request: it is not in this broker’s database.', true);
        return;
      }
      throw err;
    }
    log.info({ request_id: tap.requestId, approver: identity, decision: tap.decision, outcome: result.outcome }, 'telegram: decision');
    await answer(ctx, answerFor(result, store.names()), result.outcome === 'refused');
    env.kick();
  });

  // Opens the narrowing panel (or shows the one already open: a repeated tap opens nothing new).
  bot.callbackQuery(OPEN_PANEL_DATA, async (ctx) => {
    const requestId = ctx.callbackQuery.data.slice(2);
    const user = ctx.from;
    if (!isApprover(user)) {
      refuse(user, 'vote.refused', { action: 'narrow' }, requestId);
      await answer(ctx, 'You are not an approver for this broker. This attempt has been recorded.', true);
      return;
    }
    if (await refusedOffMessage(ctx, user, requestId)) return;
    if (await refusedTooLarge(ctx, user, requestId)) return;
    const request = await pendingOrAnswer(ctx, requestId);
    if (!request) return;
    const identity = telegramIdentity(user.id);
    store.rememberName(identity, displayName(user), clock.now());
    store.openDraft(requestId, identity, clock.now());
    log.info({ request_id: requestId, approver: identity }, 'telegram: narrowing panel opened');
    await answer(ctx, 'Narrowing: tap ✂️ to drop, ⏱ for a shorter TTL, then ✅ Approve as shown.');
    env.kick();
  });

  bot.callbackQuery(PANEL_DATA, async (ctx) => {
    const data = ctx.callbackQuery.data;
    const tap = parsePanelData(data)!;
    const user = ctx.from;
    const draft = store.draft(tap.draftId);
    if (!isApprover(user)) {
      refuse(user, 'vote.refused', { action: 'narrow' }, draft?.requestId);
      await answer(ctx, 'You are not an approver for this broker. This attempt has been recorded.', true);
      return;
    }
    if (!draft) {
      await answer(ctx, 'This narrowing panel is closed. Tap ✂️ Narrow… on the request to start again.');
      env.kick();
      return;
    }
    if (await refusedOffMessage(ctx, user, draft.requestId, 'narrowing: ')) return;
    const identity = telegramIdentity(user.id);
    store.rememberName(identity, displayName(user), clock.now());
    const request = await pendingOrAnswer(ctx, draft.requestId);
    if (!request) {
      store.closeDraft(draft.id);
      return;
    }
    const { action } = tap;

    if (action.kind === 'close') {
      store.closeDraft(draft.id);
      await answer(ctx, 'Narrowing closed; nothing was approved.');
      env.kick();
      return;
    }

    if (action.kind === 'approve') {
      if (await refusedTooLarge(ctx, user, draft.requestId)) {
        store.closeDraft(draft.id);
        env.kick();
        return;
      }
      const result = approveDraft(draft, action.version, identity);
      if (result.kind === 'stale') {
        await answer(ctx, 'The narrowing changed since your screen was drawn; nothing was approved. Check the message and tap again.', true);
      } else {
        log.info({ request_id: draft.requestId, approver: identity, outcome: result.result.outcome, narrowed: 'narrowed' in result.result ? result.result.narrowed : undefined }, 'telegram: decision (narrowing panel)');
        await answer(ctx, answerFor(result.result, store.names()), result.result.outcome === 'refused');
      }
      env.kick();
      return;
    }

    const outcome = deps.db.transaction(() => {
      const current = store.draft(draft.id);
      if (!current) return { ok: false as const, forged: false, answer: 'This narrowing panel is closed.' };
      const { requested, ceiling } = ceilingFor(request);
      const applied = applyPanelAction(current.narrowing, action, requested, ceiling);
      if (applied.ok && applied.changed && !store.updateDraft(current.id, current.version, applied.draft, identity, clock.now())) {
        return { ok: false as const, forged: false, answer: 'Someone changed the narrowing at the same moment; check the message and tap again.' };
      }
      return applied;
    }).immediate();
    if (!outcome.ok && outcome.forged) auditRefusal(user, 'forged narrowing action', data, draft.requestId);
    await answer(ctx, outcome.answer, !outcome.ok);
    env.kick();
  });

  /**
   * "Approve as shown": in one transaction, checks that the panel still has
   * the version the tapped keyboard was drawn with, decides through
   * decideRequest with the panel's narrowing, and closes the panel once the
   * vote counted. So what is approved is exactly what the tapper saw (or
   * less, if a concurrent tier-3 vote narrowed the ceiling meanwhile).
   */
  function approveDraft(draft: NarrowingDraft, version: number, approver: string): { kind: 'stale' } | { kind: 'decided'; result: DecideOutcome } {
    return deps.db.transaction(() => {
      const current = store.draft(draft.id);
      if (!current || current.version !== version) return { kind: 'stale' as const };
      const request = deps.repo.getRequest(current.requestId);
      if (!request) throw new BrokerError('NOT_FOUND', `request ${current.requestId} not found`);
      const narrowing = request.status === 'pending' ? draftToNarrowing(current.narrowing, ceilingFor(request).ceiling) : undefined;
      const result = decideRequest(deps, current.requestId, { approver, decision: 'approve', narrowing });
      if (result.outcome !== 'refused' && result.outcome !== 'already_voted') store.closeDraft(current.id);
      return { kind: 'decided' as const, result };
    }).immediate();
  }

  bot.on('callback_query', async (ctx) => {
    await answer(ctx, 'This button is no longer valid.');
  });

  // ---- commands --------------------------------------------------------------

  const HELP = [
    '<b>jit-broker approval bot</b>',
    'Approval requests are posted here with Approve / Deny buttons.',
    '',
    '/pending — list requests awaiting approval',
    '/revoke <code>ID</code> [reason] — end a request or credential now',
    '/revokeall [reason] — revoke every live credential',
  ].join('\n');

  bot.command(['start', 'help', 'whoami'], async (ctx) => {
    const user = ctx.from;
    if (!user) return;
    const role = isApprover(user) ? 'You are an approver.' : 'You are not an approver (TELEGRAM_APPROVERS does not list your user id).';
    await reply(ctx, `${HELP}\n\nYour Telegram user id: <code>${user.id}</code>\nThis chat id: <code>${ctx.chat?.id ?? '?'}</code>\n${role}`);
  });

  /** Commands that act on the broker: approvers only; anyone else is refused and audited. */
  const approverCommand = (name: string, run: (ctx: Context, user: User, args: string) => Promise<void>) => {
    bot.command(name, async (ctx) => {
      const user = ctx.from;
      if (!user) return;
      if (!isApprover(user)) {
        refuse(user, 'command.refused', { command: name });
        await reply(ctx, `Only approvers can use /${name}. This attempt has been recorded.`);
        return;
      }
      store.rememberName(telegramIdentity(user.id), displayName(user), clock.now());
      await run(ctx, user, typeof ctx.match === 'string' ? ctx.match.trim() : '');
    });
  };

  approverCommand('pending', async (ctx) => {
    const now = clock.now();
    const rows = deps.repo
      .listRequests({ status: 'pending', limit: 1000 })
      .sort((a, b) => (a.approval_expires_at ?? Infinity) - (b.approval_expires_at ?? Infinity));
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
    const row = deps.repo.getRequest(id);
    if (!row) return reply(ctx, `No request <code>${id}</code>.`);
    const reason = cut(rest.join(' '), 500) || `revoked in Telegram by ${displayName(user)}`;
    const outcome = await revokeOne(row, user, reason);
    env.kick();
    await reply(ctx, outcome.text);
  });

  approverCommand('revokeall', async (ctx, user, args) => {
    const reason = cut(args, 500) || `revoke-all in Telegram by ${displayName(user)}`;
    // Approved-but-unclaimed requests are cancelled too: each is one claim away from a live credential.
    const issued = deps.repo.listRequests({ status: 'issued', limit: 100_000 });
    const approved = deps.repo.listRequests({ status: 'approved', limit: 100_000 });
    const counts = { revoked: 0, vaultPending: 0, cancelled: 0, failed: 0 };
    for (const row of [...issued, ...approved]) {
      const o = await revokeOne(row, user, reason);
      if (o.kind === 'revoked') row.status === 'issued' ? counts.revoked++ : counts.cancelled++;
      else if (o.kind === 'vault_pending') counts.vaultPending++;
      else if (o.kind === 'failed') counts.failed++;
    }
    env.kick();
    const lines = [`🚫 <b>Revoke all</b>: revoked ${counts.revoked + counts.vaultPending} live credential${counts.revoked + counts.vaultPending === 1 ? '' : 's'}.`];
    if (counts.vaultPending) lines.push(`${counts.vaultPending} recorded as revoked but Vault could not be reached; the broker keeps retrying the Vault clean-up.`);
    if (counts.cancelled) lines.push(`Cancelled ${counts.cancelled} approved request${counts.cancelled === 1 ? '' : 's'} not yet claimed.`);
    if (counts.failed) lines.push(`${counts.failed} changed state while being revoked; run /revokeall again.`);
    await reply(ctx, lines.join('\n'));
  });

  async function revokeOne(row: RequestRow, user: User, reason: string): Promise<{ kind: 'revoked' | 'vault_pending' | 'refused' | 'failed'; text: string }> {
    const was = row.status;
    if (was === 'revoked') return { kind: 'refused', text: `<code>${row.id}</code> was already revoked.` };
    try {
      await revokeRequest(deps, row, telegramIdentity(user.id), reason);
      log.info({ request_id: row.id, actor: telegramIdentity(user.id), was }, 'telegram: request revoked');
      return { kind: 'revoked', text: `🚫 Revoked <code>${row.id}</code> (was ${was.replace('_', ' ')}).` };
    } catch (err) {
      if (err instanceof BrokerError && err.code === 'VAULT_UNAVAILABLE') {
        return { kind: 'vault_pending', text: `🚫 Revoked <code>${row.id}</code>, but Vault could not be reached to end the token; the broker keeps retrying.` };
      }
      if (err instanceof BrokerError) {
        return { kind: err.code === 'CONFLICT' && /changed while/.test(err.message) ? 'failed' : 'refused', text: `Could not revoke: ${escapeHtml(err.message)}` };
      }
      throw err;
    }
  }
}
