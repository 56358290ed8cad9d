import { randomBytes } from 'node:crypto';
import type { Db } from '../storage/sqlite/open.ts';
import type { Clock } from '../lib/clock.ts';
import type { IdGenerator } from '../lib/ids.ts';
import { hashSecret, randomToken, safeEqual } from '../lib/secrets.ts';
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

interface AgentRow {
  id: string;
  name: string;
  token_id: string;
  token_hash: string;
  session_key: string | null;
  created_at: number;
}

const toAgent = (r: AgentRow): Agent => ({ id: r.id, name: r.name, sessionKey: r.session_key, createdAt: r.created_at });

export function createAgentStore(deps: { db: Db; audit: AuditLog; clock: Clock; ids: IdGenerator }) {
  const { db, audit, clock, ids } = deps;
  const byTokenId = db.prepare('SELECT * FROM agents WHERE token_id = ?');
  const byName = db.prepare('SELECT * FROM agents WHERE name = ?');
  const insert = db.prepare(
    'INSERT INTO agents (id, name, token_id, token_hash, session_key, created_at) VALUES (?, ?, ?, ?, ?, ?)',
  );
  // A fixed row to hash against when the token id is unknown, so a miss costs
  // the same as a hit.
  const decoyHash = hashSecret(randomToken());

  return {
    /** Registers an agent and returns its bearer token, which is not stored and cannot be shown again. */
    add(name: string, sessionKey?: string): { agent: Agent; token: string } {
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
      db.transaction(() => {
        if (byName.get(name)) throw new BrokerError('CONFLICT', `agent "${name}" already exists`);
        insert.run(agent.id, name, tokenId, hashSecret(secret), agent.sessionKey, now);
        audit.append({ event: 'agent.added', actor: 'operator', data: { agent: name, agent_id: agent.id, token_id: tokenId } }, now);
      })();
      return { agent, token };
    },

    list(): Agent[] {
      return (db.prepare('SELECT * FROM agents ORDER BY name').all() as AgentRow[]).map(toAgent);
    },

    get(name: string): Agent | undefined {
      const row = byName.get(name) as AgentRow | undefined;
      return row && toAgent(row);
    },

    /** Removes the agent; its token stops working at once. Returns false if there was none. */
    remove(name: string): boolean {
      return db.transaction(() => {
        const row = byName.get(name) as AgentRow | undefined;
        if (!row) return false;
        db.prepare('DELETE FROM agents WHERE id = ?').run(row.id);
        audit.append({ event: 'agent.removed', actor: 'operator', data: { agent: name, agent_id: row.id } }, clock.now());
        return true;
      })();
    },

    /** The agent owning this bearer token, or undefined. Constant-time in the secret. */
    authenticate(token: string): Agent | undefined {
      const m = TOKEN_SHAPE.exec(token);
      const row = m ? (byTokenId.get(m[1]) as AgentRow | undefined) : undefined;
      const ok = safeEqual(hashSecret(m?.[2] ?? token), row?.token_hash ?? decoyHash);
      return ok && row ? toAgent(row) : undefined;
    },
  };
}

export type AgentStore = ReturnType<typeof createAgentStore>;
