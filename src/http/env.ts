import type { Agent } from '../broker/agents.ts';
import type { Logger } from '../lib/logger.ts';
import type { ApprovalBot } from '../telegram/index.ts';

/**
 * What the app and its routes share: the Hono environment and the approval
 * bot's surface. A module of its own so routes do not import app.ts (which
 * imports them).
 */

/** What the HTTP API needs of the approval bot (in an HTTP worker, a proxy to the primary's bot). */
export type AppTelegram = Pick<ApprovalBot, 'kick' | 'handleWebhook' | 'status'>;

export type AppEnv = { Variables: { requestId: string; log: Logger; agent: Agent } };
