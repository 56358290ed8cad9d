import type { Agent } from '../broker/agents.ts';
import type { Logger } from '../lib/logger.ts';

/**
 * What the app and its routes share: the Hono environment and the approval
 * bot's surface. A module of its own so routes do not import app.ts (which
 * imports them).
 */

/**
 * What the HTTP API needs of the approval bot: a nudge after a change, and
 * its state for /healthz.
 */
export interface AppTelegram {
  kick(): unknown;
  status(): { ready: boolean; lastError: unknown };
}

export type AppEnv = { Variables: { requestId: string; log: Logger; agent: Agent } };
