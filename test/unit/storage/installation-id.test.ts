import { describe, expect, it } from 'vitest';
import { acquireGrantPolicy, policyPrefix } from '../../../src/broker/grant-policies.ts';
import { migrate, openDatabase } from '../../../src/storage/sqlite/open.ts';
import { createSqliteStorage } from '../../../src/storage/sqlite/index.ts';

const idOf = (db: ReturnType<typeof openDatabase>) => db.prepare(`SELECT value FROM settings WHERE key = 'installation_id'`).pluck().get() as string;

describe('installation id (migration 0011)', () => {
  it('is made once per database: 16 hex digits, different for each database, the prefix of its policy names', async () => {
    const a = openDatabase(':memory:');
    const b = openDatabase(':memory:');
    expect(idOf(a)).toMatch(/^[0-9a-f]{16}$/);
    expect(idOf(a)).not.toBe(idOf(b));
    expect(await policyPrefix(createSqliteStorage(a))).toBe(`jit-${idOf(a)}-`);
    const before = idOf(a);
    migrate(a);
    expect(idOf(a)).toBe(before);
  });

  it('on upgrade, marks every shared grant policy unwritten (its name changes with the prefix)', async () => {
    const db = openDatabase(':memory:');
    // A database as versions before 0011 left it: no id, a grant policy written a moment ago.
    db.exec(`DELETE FROM settings WHERE key = 'installation_id'; DELETE FROM schema_migrations WHERE version = 11; DROP INDEX credentials_legacy_policy`);
    db.prepare(`INSERT INTO grant_policies (grant_hash, generation, written, updated_at) VALUES (?, 3, 1, ?)`).run('a'.repeat(64), Date.now());
    migrate(db);
    const storage = createSqliteStorage(db);
    const grant = await storage.transaction((tx) => acquireGrantPolicy(storage, tx, 'a'.repeat(64), Date.now()));
    expect(grant).toEqual({ name: `jit-${idOf(db)}-grant-${'a'.repeat(64)}-3`, generation: 3, written: false });
  });
});

describe('legacy policy names', () => {
  it('are looked up through their own index, which the policy-holder count does not take', async () => {
    const db = openDatabase(':memory:');
    const plan = (sql: string, ...args: unknown[]) => (db.prepare(`EXPLAIN QUERY PLAN ${sql}`).all(...args) as { detail: string }[]).map((r) => r.detail).join(' | ');
    expect(plan(`SELECT 1 FROM credentials WHERE vault_policy = ? AND substr(vault_policy, 1, 8) = 'jit-req_' LIMIT 1`, 'jit-req_x')).toMatch(/USING (COVERING )?INDEX credentials_legacy_policy/);
    expect(plan(`SELECT COUNT(*) FROM credentials WHERE vault_policy = ? AND state IN ('minting', 'live', 'ending') AND id != ?`, 'p', 'c')).toMatch(/USING INDEX credentials_policy_holders/);
    expect(await createSqliteStorage(db).credentials.namesLegacyVaultPolicy('jit-req_cred_x')).toBe(false);
  });
});

describe('policy names', () => {
  it('parses shared grant names of both prefixes, and nothing else', async () => {
    const { grantPolicyName, installationPolicyPrefix, parseGrantPolicyName } = await import('../../../src/broker/vault-grant.ts');
    const hash = 'b'.repeat(64);
    const prefix = installationPolicyPrefix('0123456789abcdef');
    expect(parseGrantPolicyName(grantPolicyName(prefix, hash, 7))).toEqual({ hash, generation: 7 });
    expect(parseGrantPolicyName(`jit-req_grant-${hash}-2`)).toEqual({ hash, generation: 2 });
    expect(parseGrantPolicyName(`jit-req_cred_x`)).toBeUndefined();
    expect(parseGrantPolicyName(`jit-0123456789abcdeX-grant-${hash}-2`)).toBeUndefined();
    expect(() => installationPolicyPrefix('REQ_')).toThrow(/16 lowercase hex digits/);
  });
});
