import { beforeEach, describe, expect, it } from 'vitest';
import { createAgentStore } from '../../../src/broker/agents.ts';
import { createAuditLog } from '../../../src/broker/audit.ts';
import { openDatabase, type Db } from '../../../src/storage/sqlite/open.ts';
import { ManualClock } from '../../../src/lib/clock.ts';
import { createIdGenerator } from '../../../src/lib/ids.ts';

let db: Db;
let agents: ReturnType<typeof createAgentStore>;
beforeEach(() => {
  db = openDatabase(':memory:');
  agents = createAgentStore({ db, audit: createAuditLog(db), clock: new ManualClock(), ids: createIdGenerator() });
});

describe('agent store', () => {
  it('issues prefixed random tokens that authenticate only their agent', () => {
    const a = agents.add('moltbot', 'hook:jit:moltbot');
    const b = agents.add('other');
    expect(a.token).toMatch(/^jit_[0-9a-f]{16}_[A-Za-z0-9_-]{43}$/);
    expect(a.token).not.toBe(b.token);
    expect(agents.authenticate(a.token)?.name).toBe('moltbot');
    expect(agents.authenticate(b.token)?.name).toBe('other');
  });

  it('rejects near misses: right id with wrong secret, truncated, empty', () => {
    const { token } = agents.add('moltbot');
    const flipped = token.slice(0, -1) + (token.endsWith('A') ? 'B' : 'A');
    for (const bad of [flipped, token.slice(0, -1), '', 'jit__', `${token}x`]) {
      expect(agents.authenticate(bad)).toBeUndefined();
    }
  });

  it('stores only a hash of the secret', () => {
    const { token } = agents.add('moltbot');
    const secret = token.split('_').slice(2).join('_');
    const row = db.prepare('SELECT * FROM agents').get() as Record<string, unknown>;
    expect(JSON.stringify(row)).not.toContain(secret);
    expect(row.token_hash).toMatch(/^[0-9a-f]{64}$/);
  });

  it('validates names, refuses duplicates, and forgets removed agents', () => {
    expect(() => agents.add('Bad Name')).toThrow(/agent name/);
    agents.add('moltbot');
    expect(() => agents.add('moltbot')).toThrow(/already exists/);
    const { token } = agents.add('gone');
    expect(agents.remove('gone')).toBe(true);
    expect(agents.remove('gone')).toBe(false);
    expect(agents.authenticate(token)).toBeUndefined();
    expect(agents.list().map((a) => a.name)).toEqual(['moltbot']);
  });
});
