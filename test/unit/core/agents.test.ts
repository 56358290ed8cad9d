import { beforeEach, describe, expect, it } from 'vitest';
import { createAgentStore } from '../../../src/broker/agents.ts';
import { createAuditLog } from '../../../src/broker/audit.ts';
import { openSqliteStorage, sqliteDatabase, type Db } from '../../../src/storage/sqlite/index.ts';
import { ManualClock } from '../../../src/lib/clock.ts';
import { createIdGenerator } from '../../../src/lib/ids.ts';

let db: Db;
let agents: ReturnType<typeof createAgentStore>;
beforeEach(() => {
  const storage = openSqliteStorage(':memory:');
  db = sqliteDatabase(storage);
  agents = createAgentStore({ storage, audit: createAuditLog(storage), clock: new ManualClock(), ids: createIdGenerator() });
});

describe('agent store', () => {
  it('issues prefixed random tokens that authenticate only their agent', async () => {
    const a = await agents.add('moltbot', 'hook:jit:moltbot');
    const b = await agents.add('other');
    expect(a.token).toMatch(/^jit_[0-9a-f]{16}_[A-Za-z0-9_-]{43}$/);
    expect(a.token).not.toBe(b.token);
    expect((await agents.authenticate(a.token))?.name).toBe('moltbot');
    expect((await agents.authenticate(b.token))?.name).toBe('other');
  });

  it('rejects near misses: right id with wrong secret, truncated, empty', async () => {
    const { token } = await agents.add('moltbot');
    const flipped = token.slice(0, -1) + (token.endsWith('A') ? 'B' : 'A');
    for (const bad of [flipped, token.slice(0, -1), '', 'jit__', `${token}x`]) {
      expect(await agents.authenticate(bad)).toBeUndefined();
    }
  });

  it('stores only a hash of the secret', async () => {
    const { token } = await agents.add('moltbot');
    const secret = token.split('_').slice(2).join('_');
    const row = db.prepare('SELECT * FROM agents').get() as Record<string, unknown>;
    expect(JSON.stringify(row)).not.toContain(secret);
    expect(row.token_hash).toMatch(/^[0-9a-f]{64}$/);
  });

  it('validates names, refuses duplicates, and forgets removed agents', async () => {
    await expect(agents.add('Bad Name')).rejects.toThrow(/agent name/);
    await agents.add('moltbot');
    await expect(agents.add('moltbot')).rejects.toThrow(/already exists/);
    const { token } = await agents.add('gone');
    expect(await agents.remove('gone')).toBe(true);
    expect(await agents.remove('gone')).toBe(false);
    expect(await agents.authenticate(token)).toBeUndefined();
    expect((await agents.list()).map((a) => a.name)).toEqual(['moltbot']);
  });
});
