import { Hono } from 'hono';
import type { BrokerDeps } from '../broker/deps.ts';
import type { ConsoleEnv } from './env.ts';

/** The console's reference pages (history, agents, audit, webhooks, keys, policies): mounted by the console core behind its session middleware. */
export function morePages(_deps: BrokerDeps): Hono<ConsoleEnv> {
  return new Hono<ConsoleEnv>();
}
