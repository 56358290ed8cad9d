import { compactVerify, importJWK } from 'jose';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/config/config.ts';
import { createKeyRing, KeyRingError, type KeyRing } from '../../src/keys/key-ring.ts';
import { copyKeyFileToDatabase, openDatabaseKeyRing, openKeyRing, sealKeyFileInto, type DatabaseKeyRing } from '../../src/keys/key-ring-db.ts';
import { open as unseal } from '../../src/keys/key-seal.ts';
import { openPostgresStorage, postgresPool } from '../../src/storage/postgres/index.ts';
import { openSqliteStorage } from '../../src/storage/sqlite/index.ts';
import type { Storage } from '../../src/storage/storage.ts';
import { freshPostgresDatabase } from '../helpers/postgres.ts';

/**
 * The signing key ring kept in PostgreSQL (src/keys/key-ring-db.ts) on the
 * run's real server: two brokers' rings on one database (two storages, two
 * pools, as two processes have), the sealing of seeds, the compare-and-set.
 */
const KEK = randomBytes(32).toString('base64');
const OTHER_KEK = randomBytes(32).toString('base64');
const config = { keyEncryptionKey: KEK };

let url: string;
const opened: Storage[] = [];
const rings: KeyRing[] = [];
let dir: string;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'jit-pg-keys-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));
afterEach(async () => {
  for (const r of rings.splice(0)) r.stop();
  for (const s of opened.splice(0)) await s.close();
});

async function storageOn(u: string): Promise<Storage> {
  const s = await openPostgresStorage(u);
  opened.push(s);
  return s;
}

async function ringOn(s: Storage, extra: Partial<Parameters<typeof openDatabaseKeyRing>[0]> = {}): Promise<DatabaseKeyRing> {
  const r = await openDatabaseKeyRing({ keys: s.signingKeys!, config, ...extra });
  rings.push(r);
  return r;
}

/** Polls `check` until it holds, for at most `ms` (the ring looks about once a second). */
async function eventually(check: () => boolean, ms = 10_000): Promise<void> {
  const until = Date.now() + ms;
  while (!check()) {
    if (Date.now() > until) throw new Error(`not within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function verifies(ring: KeyRing, signer: KeyRing): Promise<string> {
  const s = signer.current();
  const header = Buffer.from(JSON.stringify({ alg: 'EdDSA', kid: s.kid })).toString('base64url');
  const payload = Buffer.from('{"sub":"x"}').toString('base64url');
  const sig = Buffer.from(s.sign(Buffer.from(`${header}.${payload}`))).toString('base64url');
  const jwk = ring.jwks().keys.find((k) => k.kid === s.kid);
  if (!jwk) throw new Error(`kid ${s.kid} not in the JWKS`);
  await compactVerify(`${header}.${payload}.${sig}`, await importJWK(jwk, 'EdDSA'));
  return s.kid;
}

describe('storage.signingKeys (PostgreSQL): compare-and-set', () => {
  it('of writers racing from one version exactly one wins; version 0 is "nothing written"; SQLite has none', async () => {
    const s = await storageOn(await freshPostgresDatabase('keys'));
    const repo = s.signingKeys!;
    expect(await repo.version()).toBe(0);
    expect(await repo.read()).toEqual({ version: 0, kek_check: null, keys: [] });
    const key = (kid: string) => ({ kid, x: 'x'.repeat(43), sealed_seed: null, source: 'env' as const, created_at: 1, retired_at: null, revoked_at: null });
    const first = await Promise.all([1, 2, 3].map((i) => repo.replace(0, { kek_check: `c${i}`, keys: [key(`k${i}`)] }, 10)));
    expect(first.filter((v) => v === 1)).toHaveLength(1);
    expect(first.filter((v) => v === undefined)).toHaveLength(2);
    const second = await Promise.all([4, 5, 6].map((i) => repo.replace(1, { kek_check: `c${i}`, keys: [key(`k${i}`), key(`j${i}`)] }, 20)));
    expect(second.filter((v) => v === 2)).toHaveLength(1);
    const winner = 4 + second.findIndex((v) => v === 2);
    expect(await repo.read()).toEqual({ version: 2, kek_check: `c${winner}`, keys: [key(`k${winner}`), key(`j${winner}`)] });
    expect(await repo.replace(1, { kek_check: 'late', keys: [] }, 30)).toBeUndefined();
    expect(await repo.version()).toBe(2);
    const sqlite = openSqliteStorage(':memory:');
    expect(sqlite.signingKeys).toBeUndefined();
    await sqlite.close();
  });
});

describe('key ring in PostgreSQL: several brokers', () => {
  beforeAll(async () => {
    url = await freshPostgresDatabase('keys');
  });

  it('two brokers starting on an empty database agree on one generated key and serve the same JWKS', async () => {
    const [a, b] = await Promise.all([storageOn(url), storageOn(url)]);
    const [ra, rb] = await Promise.all([ringOn(a), ringOn(b)]);
    expect(ra.location).toBe('database');
    expect(ra.current().kid).toBe(rb.current().kid);
    expect(rb.jwks()).toEqual(ra.jwks());
    expect(ra.jwks().keys).toHaveLength(1);
    // B's signature verifies against A's JWKS.
    expect(await verifies(ra, rb)).toBe(ra.current().kid);
  });

  it('a rotation on one broker is in force on the other within seconds (its 1 s version check), JWKS the same', async () => {
    const [a, b] = await Promise.all([storageOn(url), storageOn(url)]);
    const [ra, rb] = await Promise.all([ringOn(a), ringOn(b)]);
    const before = rb.current().kid;
    const started = Date.now();
    const { kid, retiredKid } = await ra.rotate();
    expect(retiredKid).toBe(before);
    await eventually(() => rb.current().kid === kid);
    const took = Date.now() - started;
    expect(took).toBeLessThan(5_000);
    expect(rb.jwks()).toEqual(ra.jwks());
    expect(rb.jwks().keys.map((k) => k.kid)).toEqual([kid, before]);
    expect(await verifies(ra, rb)).toBe(kid);
  });

  it('a revocation on one broker leaves the JWKS of the other within seconds; the other never signs with it again', async () => {
    const [a, b] = await Promise.all([storageOn(url), storageOn(url)]);
    const [ra, rb] = await Promise.all([ringOn(a), ringOn(b)]);
    const current = ra.current().kid;
    const result = await ra.revoke(current);
    expect(result).toMatchObject({ revoked: current, rotated: true, alreadyRevoked: false });
    await eventually(() => rb.isRevoked(current));
    expect(rb.current().kid).toBe(result.current);
    expect(rb.jwks().keys.map((k) => k.kid)).not.toContain(current);
    expect(rb.jwks()).toEqual(ra.jwks());
    expect(await ra.revoke(current)).toMatchObject({ alreadyRevoked: true });
  });

  it('two brokers rotating at once both rotate: no key is lost (compare-and-set, retried)', async () => {
    const [a, b] = await Promise.all([storageOn(url), storageOn(url)]);
    const [ra, rb] = await Promise.all([ringOn(a), ringOn(b)]);
    const before = ra.current().kid;
    const results = await Promise.all([ra.rotate(), rb.rotate(), ra.rotate(), rb.rotate()]);
    const kids = results.map((r) => r.kid);
    expect(new Set(kids).size).toBe(4);
    await ra.refresh();
    await rb.refresh();
    // Each rotation retired the key current when it wrote: one chain, every key but the last retired once.
    const last = ra.current().kid;
    expect(kids).toContain(last);
    expect(results.map((r) => r.retiredKid).sort()).toEqual([before, ...kids].filter((k) => k !== last).sort());
    const listed = ra.list().map((k) => k.kid);
    for (const k of [before, ...kids]) expect(listed).toContain(k);
    expect(ra.list().filter((k) => k.status === 'current')).toHaveLength(1);
    expect(rb.current().kid).toBe(ra.current().kid);
    expect(rb.jwks()).toEqual(ra.jwks());
  });

  it('the database never holds a seed in the clear: sealed under the KEK, bound to its kid', async () => {
    const s = await storageOn(url);
    const ring = await ringOn(s);
    const rows = (await postgresPool(s).query<{ kid: string; sealed_seed: string | null }>('SELECT kid, sealed_seed FROM signing_keys')).rows;
    const sealedRow = rows.find((r) => r.sealed_seed !== null)!;
    expect(sealedRow.kid).toBe(ring.current().kid);
    const seed = unseal(Buffer.from(KEK, 'base64'), { kind: 'signing-key', kid: sealedRow.kid }, sealedRow.sealed_seed!);
    expect(seed).toHaveLength(32);
    const dump = JSON.stringify((await postgresPool(s).query('SELECT * FROM signing_keys')).rows) + JSON.stringify((await postgresPool(s).query('SELECT * FROM signing_key_ring')).rows);
    for (const form of [seed.toString('base64url'), seed.toString('base64'), seed.toString('hex')]) expect(dump).not.toContain(form);
    // Moved to another row (another kid), the sealed seed does not open: the kid is its associated data.
    const other = rows.find((r) => r.kid !== sealedRow.kid)!;
    expect(() => unseal(Buffer.from(KEK, 'base64'), { kind: 'signing-key', kid: other.kid }, sealedRow.sealed_seed!)).toThrow(KeyRingError);
  });

  it('another key-encryption key cannot open the ring: ConfigError naming JIT_KEY_ENCRYPTION_KEY; none at all is refused the same way', async () => {
    const s = await storageOn(url);
    const wrong = openKeyRing({ config: { dbPath: join(dir, 'x.db'), keyEncryptionKey: OTHER_KEK }, store: s.signingKeys, noTimer: true });
    await expect(wrong).rejects.toThrow(ConfigError);
    await expect(wrong).rejects.toThrow(/^JIT_KEY_ENCRYPTION_KEY: does not open the signing keys stored in the database/);
    await expect(openKeyRing({ config: { dbPath: join(dir, 'x.db') }, store: s.signingKeys, noTimer: true })).rejects.toThrow(/^JIT_KEY_ENCRYPTION_KEY: required with JIT_DATABASE_URL/);
    // Public keys need no KEK (jit keys list, jit audit verify); such a ring cannot sign.
    const pub = await openKeyRing({ config: { dbPath: join(dir, 'x.db') }, store: s.signingKeys, publicOnly: true, noTimer: true });
    expect(pub.jwks().keys.length).toBeGreaterThan(0);
    expect(() => pub.current()).toThrow(KeyRingError);
  });

  it('a wrong KEK on an empty database is found by the check value stored with the first write', async () => {
    const fresh = await freshPostgresDatabase('keys');
    const s = await storageOn(fresh);
    await ringOn(s, { config: { keyEncryptionKey: KEK, signingKey: randomBytes(32).toString('base64') } }); // env key: no seed stored
    await expect(openKeyRing({ config: { dbPath: ':memory:', keyEncryptionKey: OTHER_KEK }, store: s.signingKeys, noTimer: true })).rejects.toThrow(/^JIT_KEY_ENCRYPTION_KEY: does not open/);
  });

  it('a broker whose database went away keeps signing with the ring as last read, and follows again once it is back', async () => {
    const s = await storageOn(url);
    const failing = { ...s.signingKeys!, version: async () => Promise.reject(new Error('connection refused')) };
    const logged: string[] = [];
    const log = { warn: () => {}, info: (_: object, m: string) => logged.push(m), error: (_: object, m: string) => logged.push(m) };
    const ring = await openDatabaseKeyRing({ keys: failing, config, log, noTimer: true });
    rings.push(ring);
    const kid = ring.current().kid;
    await ring.refresh();
    await ring.refresh();
    expect(ring.current().kid).toBe(kid);
    expect(logged.filter((m) => m.startsWith('cannot re-read'))).toHaveLength(1);
  });
});

describe('replacing the key-encryption key (JIT_KEY_ENCRYPTION_KEY_PREVIOUS)', () => {
  it('the first broker started with the new KEK and the previous one re-seals the ring; then the previous KEK no longer opens it', async () => {
    const s = await storageOn(await freshPostgresDatabase('keys'));
    const old = await ringOn(s);
    const kid = old.current().kid;
    const NEW = randomBytes(32).toString('base64');
    const logged: string[] = [];
    const log = { warn: () => {}, info: (_: object, m: string) => logged.push(m), error: (_: object, m: string) => logged.push(m) };
    const renewed = await ringOn(s, { config: { keyEncryptionKey: NEW, previousKeyEncryptionKey: KEK }, log });
    expect(renewed.current().kid).toBe(kid);
    expect(logged.join('\n')).toMatch(/re-sealed under the new key-encryption key/);
    // Again with both: already re-sealed, nothing written.
    const version = await s.signingKeys!.version();
    await ringOn(s, { config: { keyEncryptionKey: NEW, previousKeyEncryptionKey: KEK } });
    expect(await s.signingKeys!.version()).toBe(version);
    expect((await ringOn(s, { config: { keyEncryptionKey: NEW } })).current().kid).toBe(kid);
    await expect(openKeyRing({ config: { dbPath: ':memory:', keyEncryptionKey: KEK }, store: s.signingKeys, noTimer: true })).rejects.toThrow(/^JIT_KEY_ENCRYPTION_KEY: does not open/);
    // A broker still running with the old KEK keeps signing with the ring it holds, and cannot write.
    await old.refresh();
    expect(old.current().kid).toBe(kid);
    await expect(old.rotate()).rejects.toThrow(KeyRingError);
    const seed = (await postgresPool(s).query<{ sealed_seed: string }>('SELECT sealed_seed FROM signing_keys WHERE sealed_seed IS NOT NULL')).rows[0]!.sealed_seed;
    expect(() => unseal(Buffer.from(NEW, 'base64'), { kind: 'signing-key', kid }, seed)).not.toThrow();
  });
});

describe('sealKeyFileInto: an existing key file into an empty database ring (jit db copy)', () => {
  it('seals every entry (current, previous, revoked) so the database ring is the same ring; refuses a database that has one', async () => {
    const keyFile = join(dir, 'signing-keys.json');
    const fileRing = createKeyRing({ config: { dbPath: join(dir, 'jit.db') }, keyFile });
    const first = fileRing.current().kid;
    fileRing.rotate();
    const second = fileRing.current().kid;
    fileRing.rotate();
    fileRing.revoke(second);
    const f = JSON.parse(readFileSync(keyFile, 'utf8'));
    const seed = f.keys.find((k: { d?: string }) => k.d).d as string;

    const s = await storageOn(await freshPostgresDatabase('keys'));
    expect(await sealKeyFileInto(s.signingKeys!, f, KEK, Date.now())).toBe(3);
    const ring = await ringOn(s);
    expect(ring.current().kid).toBe(fileRing.current().kid);
    expect(ring.jwks()).toEqual(fileRing.jwks());
    expect(ring.list()).toEqual(fileRing.list());
    expect(ring.isRevoked(second)).toBe(true);
    expect(ring.list().map((k) => k.kid)).toContain(first);
    expect(await verifies(fileRing, ring)).toBe(fileRing.current().kid);
    const dump = JSON.stringify((await postgresPool(s).query('SELECT * FROM signing_keys')).rows);
    expect(dump).not.toContain(seed);
    expect(dump).not.toContain(Buffer.from(seed, 'base64url').toString('hex'));

    await expect(sealKeyFileInto(s.signingKeys!, f, KEK, Date.now())).rejects.toThrow(/already holds a signing key ring/);
    await expect(copyKeyFileToDatabase({ dbPath: join(dir, 'jit.db'), store: s.signingKeys!, keyEncryptionKey: KEK, now: Date.now() })).rejects.toThrow(/already holds/);
  });

  it('copyKeyFileToDatabase reads the key file next to the SQLite database; none there copies nothing', async () => {
    const sub = mkdtempSync(join(dir, 'copy-'));
    const s = await storageOn(await freshPostgresDatabase('keys'));
    expect(await copyKeyFileToDatabase({ dbPath: join(sub, 'jit.db'), store: s.signingKeys!, keyEncryptionKey: KEK, now: Date.now() })).toBe(0);
    expect(await s.signingKeys!.version()).toBe(0);
    const fileRing = createKeyRing({ config: { dbPath: join(sub, 'jit.db') } });
    expect(await copyKeyFileToDatabase({ dbPath: join(sub, 'jit.db'), store: s.signingKeys!, keyEncryptionKey: KEK, now: Date.now() })).toBe(1);
    expect((await ringOn(s)).current().kid).toBe(fileRing.current().kid);
  });
});
