import { Composer, type Context } from 'grammy';
import { decideIn, type DecideOutcome } from '../broker/decide.ts';
import { BrokerError } from '../broker/errors.ts';
import { answerFor } from './answers.ts';
import { approversOnly, NOT_AN_APPROVER } from './approver-check.ts';
import { telegramIdentity, type HandlerEnv, type HandlerKit } from './handler-kit.ts';
import { OPEN_PANEL_DATA, PANEL_DATA, applyPanelAction, draftToNarrowing, parsePanelData } from './narrowing-panel.ts';
import type { NarrowingDraft } from './store.ts';

/** The narrowing panel: opening it under a request, and its taps (drop, shorter TTL, approve as shown, close). */
export function narrowingPanel(env: HandlerEnv, kit: HandlerKit): Composer<Context> {
  const { deps, store, log, clock } = env;
  const panel = new Composer<Context>();

  // Opens the narrowing panel (or shows the one already open: a repeated tap opens nothing new).
  panel.callbackQuery(
    OPEN_PANEL_DATA,
    approversOnly(env, kit, (ctx) => ({ event: 'vote.refused', data: { action: 'narrow' }, requestId: ctx.callbackQuery!.data!.slice(2), text: NOT_AN_APPROVER })),
    async (ctx) => {
      const requestId = ctx.callbackQuery.data.slice(2);
      const user = ctx.from;
      if (await kit.refusedOffMessage(ctx, user, requestId)) return;
      if (await kit.refusedTooLarge(ctx, user, requestId)) return;
      const request = await kit.pendingOrAnswer(ctx, requestId);
      if (!request) return;
      const identity = telegramIdentity(user.id);
      await kit.rememberName(user);
      await store.openDraft(requestId, identity, clock.now());
      log.info({ request_id: requestId, approver: identity }, 'telegram: narrowing panel opened');
      await kit.answer(ctx, 'Narrowing: tap ✂️ to drop, ⏱ for a shorter TTL, then ✅ Approve as shown.');
      env.kick();
    },
  );

  panel.callbackQuery(
    PANEL_DATA,
    approversOnly(env, kit, async (ctx) => ({
      event: 'vote.refused',
      data: { action: 'narrow' },
      requestId: (await store.draft(parsePanelData(ctx.callbackQuery!.data!)!.draftId))?.requestId,
      text: NOT_AN_APPROVER,
    })),
    async (ctx) => {
      const data = ctx.callbackQuery.data;
      const tap = parsePanelData(data)!;
      const user = ctx.from;
      const draft = await store.draft(tap.draftId);
      if (!draft) {
        await kit.answer(ctx, 'This narrowing panel is closed. Tap ✂️ Narrow… on the request to start again.');
        env.kick();
        return;
      }
      if (await kit.refusedOffMessage(ctx, user, draft.requestId, 'narrowing: ')) return;
      const identity = telegramIdentity(user.id);
      await kit.rememberName(user);
      const request = await kit.pendingOrAnswer(ctx, draft.requestId);
      if (!request) {
        await store.closeDraft(draft.id);
        return;
      }
      const { action } = tap;

      if (action.kind === 'close') {
        await store.closeDraft(draft.id);
        await kit.answer(ctx, 'Narrowing closed; nothing was approved.');
        env.kick();
        return;
      }

      if (action.kind === 'approve') {
        if (await kit.refusedTooLarge(ctx, user, draft.requestId)) {
          await store.closeDraft(draft.id);
          env.kick();
          return;
        }
        const result = await approveDraft(draft, action.version, identity);
        if (result.kind === 'stale') {
          await kit.answer(ctx, 'The narrowing changed since your screen was drawn; nothing was approved. Check the message and tap again.', true);
        } else {
          log.info({ request_id: draft.requestId, approver: identity, outcome: result.result.outcome, narrowed: 'narrowed' in result.result ? result.result.narrowed : undefined }, 'telegram: decision (narrowing panel)');
          await kit.answer(ctx, answerFor(result.result, await store.names()), result.result.outcome === 'refused');
        }
        env.kick();
        return;
      }

      const outcome = await deps.storage.transaction(async (tx) => {
        const current = await store.draft(draft.id, tx);
        if (!current) return { ok: false as const, forged: false, answer: 'This narrowing panel is closed.' };
        const { requested, ceiling } = await kit.ceilingFor(request, tx);
        const applied = applyPanelAction(current.narrowing, action, requested, ceiling);
        if (applied.ok && applied.changed && !(await store.updateDraft(current.id, current.version, applied.draft, identity, clock.now(), tx))) {
          return { ok: false as const, forged: false, answer: 'Someone changed the narrowing at the same moment; check the message and tap again.' };
        }
        return applied;
      });
      if (!outcome.ok && outcome.forged) await kit.auditRefusal(user, 'forged narrowing action', data, draft.requestId);
      await kit.answer(ctx, outcome.answer, !outcome.ok);
      env.kick();
    },
  );

  /**
   * "Approve as shown": in one transaction, checks that the panel still has
   * the version the tapped keyboard was drawn with, decides through
   * decideRequest with the panel's narrowing, and closes the panel once the
   * vote counted. So what is approved is exactly what the tapper saw (or
   * less, if a concurrent tier-3 vote narrowed the ceiling meanwhile).
   */
  function approveDraft(draft: NarrowingDraft, version: number, approver: string): Promise<{ kind: 'stale' } | { kind: 'decided'; result: DecideOutcome }> {
    return deps.storage.transaction(async (tx) => {
      const current = await store.draft(draft.id, tx);
      if (!current || current.version !== version) return { kind: 'stale' as const };
      const request = await tx.requests.get(current.requestId);
      if (!request) throw new BrokerError('NOT_FOUND', `request ${current.requestId} not found`);
      const narrowing = request.status === 'pending' ? draftToNarrowing(current.narrowing, (await kit.ceilingFor(request, tx)).ceiling) : undefined;
      const result = await decideIn(tx, deps, current.requestId, { approver, decision: 'approve', narrowing });
      if (result.outcome !== 'refused' && result.outcome !== 'already_voted') await store.closeDraft(current.id, tx);
      return { kind: 'decided' as const, result };
    });
  }

  return panel;
}
