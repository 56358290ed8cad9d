import { Composer, type Context } from 'grammy';
import { decideRequest, type DecideOutcome } from '../broker/decide.ts';
import { BrokerError } from '../broker/errors.ts';
import { approversOnly, NOT_AN_APPROVER } from './approver-check.ts';
import { telegramIdentity, type HandlerEnv, type HandlerKit } from './handler-kit.ts';
import { answerFor } from './answers.ts';
import { parseCallbackData } from './render.ts';

const DECISION_DATA = /^[ad]:req_[0-9a-z]{26}$/;

/** Approve / Deny under an approval message: every decision goes through decideRequest. */
export function decisionButtons(env: HandlerEnv, kit: HandlerKit): Composer<Context> {
  const { deps, store, log } = env;
  const buttons = new Composer<Context>();
  buttons.callbackQuery(
    DECISION_DATA,
    approversOnly(env, kit, (ctx) => {
      const tap = parseCallbackData(ctx.callbackQuery!.data!)!;
      return { event: 'vote.refused', data: { decision: tap.decision }, requestId: tap.requestId, text: NOT_AN_APPROVER };
    }),
    async (ctx) => {
      const tap = parseCallbackData(ctx.callbackQuery.data)!;
      const user = ctx.from;
      if (await kit.refusedOffMessage(ctx, user, tap.requestId)) return;
      if (tap.decision === 'approve' && (await kit.refusedTooLarge(ctx, user, tap.requestId))) return;
      const identity = telegramIdentity(user.id);
      await kit.rememberName(user);
      let result: DecideOutcome;
      try {
        result = await decideRequest(deps, tap.requestId, { approver: identity, decision: tap.decision });
      } catch (err) {
        if (err instanceof BrokerError && err.code === 'NOT_FOUND') {
          await kit.answer(ctx, 'Unknown request: it is not in this broker’s database.', true);
          return;
        }
        throw err;
      }
      log.info({ request_id: tap.requestId, approver: identity, decision: tap.decision, outcome: result.outcome }, 'telegram: decision');
      await kit.answer(ctx, answerFor(result, await store.names()), result.outcome === 'refused');
      env.kick();
    },
  );
  return buttons;
}
