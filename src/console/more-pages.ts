import { Hono } from 'hono';
import type { BrokerDeps } from '../broker/deps.ts';
import type { ConsoleEnv } from './env.ts';
import { agentsPage } from './pages/agents.ts';
import { auditPage } from './pages/audit.ts';
import { historyPage } from './pages/history.ts';
import { keysPage } from './pages/keys.ts';
import { policiesPage } from './pages/policies.ts';
import { storyPage } from './pages/story.ts';
import { webhooksPage } from './pages/webhooks.ts';

/**
 * The console's reference pages, mounted by the console core under
 * /console behind its session middleware (so `session`, `csrf` and `page`
 * are set): request history and one request's story, agents (add, remove),
 * the audit log, dead webhooks (retry), signing keys, policies.
 */
export function morePages(deps: BrokerDeps): Hono<ConsoleEnv> {
  const app = new Hono<ConsoleEnv>();
  for (const page of [historyPage, storyPage, agentsPage, auditPage, webhooksPage, keysPage, policiesPage]) app.route('/', page(deps));
  return app;
}
