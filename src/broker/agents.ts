import { randomBytes } from 'node:crypto';
import type { Clock } from '../lib/clock.ts';
import type { IdGenerator } from '../lib/ids.ts';
import { hashSecret, randomToken, safeEqual } from '../lib/secrets.ts';
import type { AgentRow } from '../storage/rows.ts';
import type { Storage, Transaction } from '../storage/storage.ts';
import type { AuditLog } from './audit.ts';
import { BrokerError } from './errors.ts';

export interface Agent {
  id: string;
  name: string;
  sessionKey: string | null;
  createdAt: number;
}

export const AGENT_NAME = /^[a-z0-9][a-z0-9._-]{0,62}$/;

/**
 * Agent tokens look like `jit_<token id>_<secret>`. The id is not secret and
 * finds the row by index; the secret's hash is compared in constant time, so
 * neither a scan nor the comparison leaks how close a guess was.
 */
const TOKEN_SHAPE = /^jit_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$/;

const toAgent = (r: AgentRow): Agent => ({ id: r.id, name: r.name, sessionKey: r.session_key, createdAt: r.created_at });

export function createAgentStore(deps: { storage: Storage; audit: AuditLog; clock: Clock; ids: IdGenerator }) {
  const { storage, audit, clock, ids } = deps;
  // A fixed row to hash against when the token id is unknown, so a miss costs
  // the same as a hit.
  const decoyHash = hashSecret(randomToken());

  return {
    /** Registers an agent and returns its bearer token, which is not stored and cannot be shown again. Audited as `actor` (`operator`: the CLI). */
    async add(name: string, sessionKey?: string, actor = 'operator'): Promise<{ agent: Agent; token: string }> {
      if (!AGENT_NAME.test(name)) {
        throw new BrokerError('BAD_REQUEST', 'agent name must be 1-63 characters of a-z, 0-9, ".", "_" or "-", starting with a letter or digit');
      }
      if (sessionKey !== undefined && (sessionKey.length === 0 || sessionKey.length > 200)) {
        throw new BrokerError('BAD_REQUEST', 'session key must be 1-200 characters');
      }
      const tokenId = randomBytes(8).toString('hex');
      const secret = randomToken(32);
      const token = `jit_${tokenId}_${secret}`;
      const now = clock.now();
      const agent: Agent = { id: ids.next('agt'), name, sessionKey: sessionKey ?? null, createdAt: now };
      await storage.transaction(async (tx) => {
        if (await tx.agents.byName(name)) throw new BrokerError('CONFLICT', `agent "${name}" already exists`);
        await tx.agents.insert({ id: agent.id, name, token_id: tokenId, token_hash: hashSecret(secret), session_key: agent.sessionKey, created_at: now });
        await audit.append(tx, { event: 'agent.added', actor, data: { agent: name, agent_id: agent.id, token_id: tokenId } }, now);
      });
      return { agent, token };
    },

    async list(): Promise<Agent[]> {
      return (await storage.agents.list()).map(toAgent);
    },

    async get(name: string): Promise<Agent | undefined> {
      const row = await storage.agents.byName(name);
      return row && toAgent(row);
    },

    /** Removes the agent; its token stops working at once. Returns false if there was none. */
    remove(name: string): Promise<boolean> {
      return storage.transaction((tx) => this.removeIn(tx, name));
    },

    /** {@link remove} inside the caller's transaction (agent removal that also revokes, revoke.ts), audited as `actor`. */
    async removeIn(tx: Transaction, name: string, actor = 'operator'): Promise<boolean> {
      const row = await tx.agents.byName(name);
      if (!row) return false;
      await tx.agents.delete(row.id);
      await audit.append(tx, { event: 'agent.removed', actor, data: { agent: name, agent_id: row.id } }, clock.now());
      return true;
    },

    /** The agent owning this bearer token, or undefined. Constant-time in the secret. */
    async authenticate(token: string): Promise<Agent | undefined> {
      const m = TOKEN_SHAPE.exec(token);
      const row = m ? await storage.agents.byTokenId(m[1]!) : undefined;
      const ok = safeEqual(hashSecret(m?.[2] ?? token), row?.token_hash ?? decoyHash);
      return ok && row ? toAgent(row) : undefined;
    },
  };
}

export type AgentStore = ReturnType<typeof createAgentStore>;
