import type { Composer, Context } from 'grammy';
import { createHandlerKit, type HandlerEnv } from './handler-kit.ts';
import { decisionButtons } from './buttons.ts';
import { commands } from './commands.ts';
import { narrowingPanel } from './panel-handlers.ts';

export { answerFor } from './answers.ts';
export { telegramIdentity, type HandlerEnv } from './handler-kit.ts';

/**
 * Registers the update handlers, one Composer per job: the Approve / Deny
 * buttons, the narrowing panel, and the commands. Every button, panel tap
 * and command that acts on the broker passes the one approver check
 * (approver-check.ts) first. Every decision goes through decideRequest and
 * every revocation through the broker's revoke verbs; these files only
 * check who is asking and turn outcomes into answers.
 */
export function registerHandlers(bot: Composer<Context>, env: HandlerEnv): void {
  const kit = createHandlerKit(env);
  bot.use(decisionButtons(env, kit), narrowingPanel(env, kit), commands(env, kit));
  // Any other button (an old keyboard, forged data): nothing to do.
  bot.on('callback_query', async (ctx) => {
    await kit.answer(ctx, 'This button is no longer valid.');
  });
}
