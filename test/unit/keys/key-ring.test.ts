import * as ed from '@noble/ed25519';
import { compactVerify, importJWK } from 'jose';
import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ConfigError } from '../../../src/config/config.ts';
import { ManualClock } from '../../../src/lib/clock.ts';
import { createKeyRing, KEY_FILE_RECHECK_MS, keyId, KeyRingError, parseSigningKey } from '../../../src/keys/key-ring.ts';
import { signWebhook, verifyWebhook } from '../../../src/webhooks/sign.ts';

const DAY = 86_400_000;
let dir: string;
let clock: ManualClock;
const cfg = () => ({ dbPath: join(dir, 'jit.db') });
const keyFile = () => join(dir, 'signing-keys.json');
const mode = (p: string) => statSync(p).mode & 0o777;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'jit-keys-'));
  clock = new ManualClock();
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

describe('key ring: generated keys', () => {
  it('generates a key on first start into a 0600 file next to the database and keeps it', () => {
    const ring = createKeyRing({ config: cfg(), clock });
    const kid = ring.current().kid;
    expect(ring.location).toBe(keyFile());
    expect(mode(keyFile())).toBe(0o600);
    const again = createKeyRing({ config: cfg(), clock });
    expect(again.current().kid).toBe(kid);
    expect(again.jwks().keys.map((k) => k.kid)).toEqual([kid]);
  });

  it('derives kid from the public key and serves only public OKP JWKs', () => {
    const ring = createKeyRing({ config: cfg(), clock });
    const [jwk] = ring.jwks().keys;
    expect(jwk).toEqual({ kty: 'OKP', crv: 'Ed25519', x: expect.stringMatching(/^[A-Za-z0-9_-]{43}$/), kid: ring.current().kid, use: 'sig', alg: 'EdDSA' });
    expect(jwk!.kid).toBe(keyId(Buffer.from(jwk!.x, 'base64url')));
    expect(JSON.stringify(ring.jwks())).not.toMatch(/"d"/);
    expect(JSON.stringify(ring.list())).not.toContain(JSON.parse(readFileSync(keyFile(), 'utf8')).keys[0].d);
  });

  it('keeps keys in memory only for a :memory: database', () => {
    const ring = createKeyRing({ config: { dbPath: ':memory:' }, clock });
    expect(ring.location).toBe('memory');
    expect(ring.jwks().keys).toHaveLength(1);
  });

  it('signs generically: jose verifies an EdDSA JWS made with sign() against the JWKS key', async () => {
    const ring = createKeyRing({ config: cfg(), clock });
    const signer = ring.current();
    const header = Buffer.from(JSON.stringify({ alg: 'EdDSA', kid: signer.kid })).toString('base64url');
    const payload = Buffer.from(JSON.stringify({ sub: 'moltbot' })).toString('base64url');
    const sig = Buffer.from(signer.sign(Buffer.from(`${header}.${payload}`))).toString('base64url');
    const key = await importJWK(ring.jwks().keys[0]!, 'EdDSA');
    const { payload: out, protectedHeader } = await compactVerify(`${header}.${payload}.${sig}`, key);
    expect(protectedHeader.kid).toBe(signer.kid);
    expect(JSON.parse(Buffer.from(out).toString())).toEqual({ sub: 'moltbot' });
  });

  it('refuses a corrupt key file instead of silently replacing the key', () => {
    writeFileSync(keyFile(), '{"version":1,"keys":[{"kid":"x"}]}', { mode: 0o600 });
    expect(() => createKeyRing({ config: cfg(), clock })).toThrow(KeyRingError);
    expect(readFileSync(keyFile(), 'utf8')).toContain('"kid":"x"');
  });

  it('resets a key file readable by others to 0600, with a warning', () => {
    createKeyRing({ config: cfg(), clock });
    chmodSync(keyFile(), 0o644);
    const warnings: string[] = [];
    createKeyRing({ config: cfg(), clock, log: { warn: (_o, m) => warnings.push(m), info: () => {} } });
    expect(mode(keyFile())).toBe(0o600);
    expect(warnings.join()).toMatch(/0600/);
  });
});

describe('key ring: rotation', () => {
  it('rotates: new kid signs, JWKS lists both, old signatures still verify during the grace period', () => {
    const ring = createKeyRing({ config: cfg(), clock });
    const old = ring.current();
    const body = '{"type":"jit.request.approved"}';
    const ts = Math.floor(clock.now() / 1000);
    const oldHeaders = signWebhook(old, { id: 'evt_1', timestamp: ts, body });

    const { kid, retiredKid } = ring.rotate();
    expect(retiredKid).toBe(old.kid);
    expect(ring.current().kid).toBe(kid);
    expect(kid).not.toBe(old.kid);
    expect(ring.jwks().keys.map((k) => k.kid)).toEqual([kid, old.kid]);
    expect(mode(keyFile())).toBe(0o600);

    const now = clock.now();
    expect(verifyWebhook(oldHeaders, body, ring.jwks(), { now })).toMatchObject({ ok: true, kid: old.kid });
    const newHeaders = signWebhook(ring.current(), { id: 'evt_2', timestamp: ts, body });
    expect(verifyWebhook(newHeaders, body, ring.jwks(), { now })).toMatchObject({ ok: true, kid });
    // The new signature is not made with the old key.
    expect(verifyWebhook(newHeaders, body, { keys: ring.jwks().keys.filter((k) => k.kid === old.kid) }, { now }).ok).toBe(false);
  });

  it('erases the retired private key: only its public half stays on disk', () => {
    const ring = createKeyRing({ config: cfg(), clock });
    const seedBefore = JSON.parse(readFileSync(keyFile(), 'utf8')).keys[0].d as string;
    ring.rotate();
    const file = readFileSync(keyFile(), 'utf8');
    expect(file).not.toContain(seedBefore);
    const entries = JSON.parse(file).keys as { d?: string; retired_at?: string }[];
    expect(entries.filter((e) => e.d)).toHaveLength(1);
    expect(entries.find((e) => e.retired_at)?.d).toBeUndefined();
  });

  it('drops the previous key after the grace period (from the JWKS at once, from the file on the next load)', () => {
    const ring = createKeyRing({ config: cfg(), clock });
    const old = ring.current().kid;
    ring.rotate();
    clock.advance(7 * DAY - 1000);
    expect(ring.jwks().keys.map((k) => k.kid)).toContain(old);
    clock.advance(2000);
    expect(ring.jwks().keys.map((k) => k.kid)).not.toContain(old);
    createKeyRing({ config: cfg(), clock });
    expect(readFileSync(keyFile(), 'utf8')).not.toContain(old);
  });

  it('a service ring picks up a rotation made by another process (the CLI) within the re-check interval, without restarting', () => {
    const service = createKeyRing({ config: cfg(), clock });
    const old = service.current().kid;
    const cli = createKeyRing({ config: cfg(), clock });
    const { kid } = cli.rotate();
    // Until the interval has passed the service keeps the key it has (the old one still verifies: it is in the JWKS).
    clock.advance(KEY_FILE_RECHECK_MS - 1);
    expect(service.current().kid).toBe(old);
    expect(service.jwks().keys).toHaveLength(1);
    clock.advance(1);
    expect(service.current().kid).toBe(kid);
    expect(service.jwks().keys.map((k) => k.kid)).toEqual([kid, old]);
    const signed = signWebhook(service.current(), { id: 'evt_1', timestamp: Math.floor(clock.now() / 1000), body: '{}' });
    expect(verifyWebhook(signed, '{}', cli.jwks(), { now: clock.now() })).toMatchObject({ ok: true, kid });
  });

  it('looks at the key file at most once per re-check interval, and again at once after a failed read', () => {
    const service = createKeyRing({ config: cfg(), clock, recheckMs: 5_000 });
    const kid = service.current().kid;
    writeFileSync(keyFile(), 'not json', { mode: 0o600 });
    clock.advance(4_999);
    expect(service.current().kid).toBe(kid); // not looked at yet
    clock.advance(1);
    expect(() => service.current()).toThrow(KeyRingError);
    expect(() => service.current()).toThrow(KeyRingError); // a bad file is not cached as fine
    const cli = createKeyRing({ config: cfg(), clock: new ManualClock(clock.now()), keyFile: join(dir, 'other.json') });
    writeFileSync(keyFile(), readFileSync(join(dir, 'other.json')), { mode: 0o600 });
    expect(service.current().kid).toBe(cli.current().kid);
  });

  it('lists kids with status and ages, never private keys', () => {
    const ring = createKeyRing({ config: cfg(), clock });
    const first = ring.current().kid;
    clock.advance(DAY);
    ring.rotate();
    const list = ring.list();
    expect(list).toEqual([
      { kid: ring.current().kid, status: 'current', source: 'generated', createdAt: clock.now() },
      { kid: first, status: 'previous', source: 'generated', createdAt: clock.now() - DAY, retiredAt: clock.now(), dropsAt: clock.now() + 7 * DAY },
    ]);
  });
});

describe('key ring: revocation', () => {
  it('revoking a previous key drops it from the JWKS at once and for good, keeping its public half locally', () => {
    const ring = createKeyRing({ config: cfg(), clock });
    const old = ring.current();
    const signed = signWebhook(old, { id: 'evt_1', timestamp: Math.floor(clock.now() / 1000), body: '{}' });
    const { kid } = ring.rotate();
    expect(ring.revoke(old.kid)).toEqual({ revoked: old.kid, current: kid, rotated: false, alreadyRevoked: false });
    expect(ring.jwks().keys.map((k) => k.kid)).toEqual([kid]);
    expect(verifyWebhook(signed, '{}', ring.jwks(), { now: clock.now() }).ok).toBe(false);
    expect(ring.isRevoked(old.kid)).toBe(true);
    expect(ring.isRevoked(kid)).toBe(false);
    // Listed as revoked, and its public key stays available (not published) for checking old signatures.
    expect(ring.list().find((k) => k.kid === old.kid)).toMatchObject({ status: 'revoked', revokedAt: clock.now() });
    expect(ring.list().find((k) => k.kid === old.kid)).toEqual({ kid: old.kid, status: 'revoked', source: 'generated', createdAt: expect.any(Number), retiredAt: expect.any(Number), revokedAt: clock.now() });
    expect(ring.jwks().keys.map((k) => k.kid)).not.toContain(old.kid);
    const kept = (JSON.parse(readFileSync(keyFile(), 'utf8')).keys as { kid: string; x: string; d?: string }[]).find((k) => k.kid === old.kid);
    expect(kept).toMatchObject({ x: old.publicJwk.x });
    expect(kept).not.toHaveProperty('d');
    // Long after the grace period it is still known as revoked, on disk and after a reload.
    clock.advance(30 * DAY);
    const again = createKeyRing({ config: cfg(), clock });
    expect(again.isRevoked(old.kid)).toBe(true);
    expect(again.jwks().keys.map((k) => k.kid)).toEqual([kid]);
    expect(again.list().map((k) => [k.kid, k.status])).toEqual([[kid, 'current'], [old.kid, 'revoked']]);
    // Revoking again changes nothing.
    expect(again.revoke(old.kid)).toMatchObject({ revoked: old.kid, alreadyRevoked: true });
  });

  it('revoking the current key first rotates to a new key in the same write, so signing never stops', () => {
    const service = createKeyRing({ config: cfg(), clock });
    const compromised = service.current().kid;
    const cli = createKeyRing({ config: cfg(), clock });
    const result = cli.revoke(compromised);
    expect(result).toMatchObject({ revoked: compromised, rotated: true, alreadyRevoked: false });
    expect(result.current).not.toBe(compromised);
    const onDisk = JSON.parse(readFileSync(keyFile(), 'utf8')).keys as { kid: string; d?: string; revoked_at?: string }[];
    expect(onDisk.find((k) => k.kid === compromised)).toMatchObject({ revoked_at: expect.any(String) });
    expect(onDisk.find((k) => k.kid === compromised)?.d).toBeUndefined();
    // The running service follows within the re-check interval: it signs (webhooks, gate credentials) with the new key.
    clock.advance(KEY_FILE_RECHECK_MS);
    expect(service.current().kid).toBe(result.current);
    expect(service.jwks().keys.map((k) => k.kid)).toEqual([result.current]);
  });

  it('refuses an unknown kid and never brings a revoked key back', () => {
    const ring = createKeyRing({ config: cfg(), clock });
    expect(() => ring.revoke('no-such-kid')).toThrow(/no key no-such-kid/);
    const seed = new Uint8Array(32).fill(9);
    const envKid = keyId(ed.getPublicKey(seed));
    const withEnv = createKeyRing({ config: { ...cfg(), signingKey: Buffer.from(seed).toString('base64') }, clock });
    // The current key comes from JIT_SIGNING_KEY: the ring cannot replace it, so it refuses.
    expect(() => withEnv.revoke(envKid)).toThrow(/JIT_SIGNING_KEY/);
    // Once the environment moves on, the old environment key can be revoked, and setting it again is refused.
    createKeyRing({ config: cfg(), clock }).revoke(envKid);
    expect(() => createKeyRing({ config: { ...cfg(), signingKey: Buffer.from(seed).toString('base64') }, clock })).toThrow(/revoked/);
  });

  it('a read-only ring (the CLI) revokes without replacing a current key it cannot hold', () => {
    const seed = new Uint8Array(32).fill(5);
    const envKid = keyId(ed.getPublicKey(seed));
    createKeyRing({ config: { ...cfg(), signingKey: Buffer.from(seed).toString('base64') }, clock });
    const before = readFileSync(keyFile(), 'utf8');
    // Opened without the service's JIT_SIGNING_KEY: nothing is generated or written at load,
    // and the service's current key cannot be revoked from here (it would have no key to sign with).
    const cli = createKeyRing({ config: cfg(), clock, readOnly: true });
    expect(readFileSync(keyFile(), 'utf8')).toBe(before);
    expect(() => cli.revoke(envKid)).toThrow(/JIT_SIGNING_KEY/);
    expect(readFileSync(keyFile(), 'utf8')).toBe(before);
    const generated = createKeyRing({ config: cfg(), clock }).current().kid; // the environment moved on
    const result = createKeyRing({ config: cfg(), clock, readOnly: true }).revoke(generated);
    expect(result).toMatchObject({ revoked: generated, rotated: true });
    expect(createKeyRing({ config: cfg(), clock }).isRevoked(generated)).toBe(true);
  });
});

describe('key ring: JIT_SIGNING_KEY', () => {
  const seed = new Uint8Array(32).fill(7);
  const b64 = Buffer.from(seed).toString('base64');
  const expectedKid = keyId(ed.getPublicKey(seed));

  it.each([
    ['base64 seed', b64],
    ['base64url seed', Buffer.from(seed).toString('base64url')],
    ['whsk_ prefix', `whsk_${b64}`],
    ['64-byte seed+public', Buffer.concat([seed, ed.getPublicKey(seed)]).toString('base64')],
    ['PKCS#8 DER', Buffer.concat([Buffer.from('302e020100300506032b657004220420', 'hex'), seed]).toString('base64')],
  ])('accepts %s', (_name, value) => {
    expect(parseSigningKey(value)).toEqual(seed);
  });

  it.each([['not base64', '!!!'], ['wrong length', Buffer.alloc(31).toString('base64')], ['mismatched public half', Buffer.concat([seed, Buffer.alloc(32)]).toString('base64')]])(
    'rejects %s with an error naming the variable but not the value',
    (_name, value) => {
      let err: unknown;
      try {
        parseSigningKey(value);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(ConfigError);
      expect((err as ConfigError).variable).toBe('JIT_SIGNING_KEY');
      expect((err as Error).message).not.toContain(value);
    },
  );

  it('uses the configured key, stores no private key anywhere, and refuses rotate', () => {
    const ring = createKeyRing({ config: { ...cfg(), signingKey: b64 }, clock });
    expect(ring.current().kid).toBe(expectedKid);
    const file = readFileSync(keyFile(), 'utf8');
    expect(file).not.toContain(b64);
    expect(file).not.toContain(Buffer.from(seed).toString('base64url'));
    expect(() => ring.rotate()).toThrow(/JIT_SIGNING_KEY/);
  });

  it('keeps working (with a warning) when the key history cannot be written', () => {
    writeFileSync(join(dir, 'not-a-dir'), '');
    const warnings: string[] = [];
    const ring = createKeyRing({
      config: { dbPath: join(dir, 'not-a-dir', 'jit.db'), signingKey: b64 },
      clock,
      log: { warn: (_o, m) => warnings.push(m), info: () => {} },
    });
    expect(ring.current().kid).toBe(expectedKid);
    ring.current();
    expect(warnings).toHaveLength(1);
  });

  it('switching from a generated key to JIT_SIGNING_KEY keeps the old public key published for the grace period', () => {
    const generated = createKeyRing({ config: cfg(), clock }).current().kid;
    const ring = createKeyRing({ config: { ...cfg(), signingKey: b64 }, clock });
    expect(ring.jwks().keys.map((k) => k.kid)).toEqual([expectedKid, generated]);
    expect(JSON.parse(readFileSync(keyFile(), 'utf8')).keys.some((k: { d?: string }) => k.d)).toBe(false);
  });
});
