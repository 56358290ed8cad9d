import type { AgentRow } from '../rows.ts';
import type { AgentsRepository } from '../storage.ts';
import type { Db } from './open.ts';
import type { Sync } from './sync.ts';

export function sqliteAgents(db: Db): Sync<AgentsRepository> {
  const s = {
    insert: db.prepare('INSERT INTO agents (id, name, token_id, token_hash, session_key, created_at) VALUES (@id, @name, @token_id, @token_hash, @session_key, @created_at)'),
    byName: db.prepare('SELECT * FROM agents WHERE name = ?'),
    byTokenId: db.prepare('SELECT * FROM agents WHERE token_id = ?'),
    list: db.prepare('SELECT * FROM agents ORDER BY name'),
    delete: db.prepare('DELETE FROM agents WHERE id = ?'),
  };
  return {
    insert(row) {
      s.insert.run(row);
    },
    byName: (name) => s.byName.get(name) as AgentRow | undefined,
    byTokenId: (tokenId) => s.byTokenId.get(tokenId) as AgentRow | undefined,
    list: () => s.list.all() as AgentRow[],
    delete: (id) => s.delete.run(id).changes === 1,
  };
}
