import type { AgentRow } from '../rows.ts';
import type { AgentsRepository } from '../storage.ts';
import { all, changedOne, one, sql, type Exec } from './exec.ts';

const S = {
  insert: sql('agents_insert', 'INSERT INTO agents (id, name, token_id, token_hash, session_key, created_at) VALUES ($1, $2, $3, $4, $5, $6)'),
  byName: sql('agents_by_name', 'SELECT * FROM agents WHERE name = $1'),
  byTokenId: sql('agents_by_token_id', 'SELECT * FROM agents WHERE token_id = $1'),
  list: sql('agents_list', 'SELECT * FROM agents ORDER BY name'),
  delete: sql('agents_delete', 'DELETE FROM agents WHERE id = $1'),
};

export function pgAgents(x: Exec): AgentsRepository {
  return {
    async insert(row) {
      await x.write(S.insert, [row.id, row.name, row.token_id, row.token_hash, row.session_key, row.created_at]);
    },
    byName: (name) => one<AgentRow>(x.read(S.byName, [name])),
    byTokenId: (tokenId) => one<AgentRow>(x.read(S.byTokenId, [tokenId])),
    list: () => all<AgentRow>(x.read(S.list)),
    delete: (id) => changedOne(x.write(S.delete, [id])),
  };
}
